// tandem-fault-relay: a UDP and TCP forwarder that delays traffic, for fault tests on a kernel without netem.
//
//   tandem-fault-relay --control PATH --bind IP [--udp PORT=IP:PORT]... [--tcp PORT=IP:PORT]...
//                      [--delay MS] [--jitter MS] [--drop PCT] [--queue N] [--seed N]
//
// For each --udp/--tcp mapping it listens on IP:PORT (the test DNATs the real destination to it) and forwards to
// the target. Every UDP datagram is held delay ± jitter ms (uniform, independently, so jittered datagrams may be
// reordered as on a real network) and dropped with probability drop%. TCP bytes are held delay ± jitter per chunk
// read, in order (a chunk never overtakes the previous one). Queues are bounded: at most --queue datagrams
// (overflow is dropped and counted) and 1 MiB per TCP direction (the relay stops reading: backpressure).
//
// Control (unix stream socket PATH, one line per connection, answered "ok ..." or "error ..."):
//   set delay_ms=20 jitter_ms=10 drop_pct=30     (any subset)
//   stats                                         -> ok udp_in=.. udp_out=.. udp_dropped=.. queue_full=.. ...
// Single-threaded: epoll + an absolute CLOCK_MONOTONIC timerfd armed for the next due packet.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/net_address.h"

namespace {

constexpr size_t kTcpQueueLimit = 1 << 20;
constexpr size_t kMaxUdpSessions = 256;
constexpr int64_t kUdpSessionIdleNs = 60'000'000'000;

int64_t NowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

[[noreturn]] void Die(const char* what) {
  fprintf(stderr, "relay: %s: %s\n", what, strerror(errno));
  exit(1);
}

bool ParseAddr(const std::string& text, sockaddr_in* out) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return false;
  *out = {};
  out->sin_family = AF_INET;
  out->sin_port = htons(uint16_t(atoi(text.c_str() + colon + 1)));
  return inet_pton(AF_INET, text.substr(0, colon).c_str(), &out->sin_addr) == 1;
}

std::string AddrText(const sockaddr_in& a) {
  char buf[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &a.sin_addr, buf, sizeof(buf));
  return std::string(buf) + ":" + std::to_string(ntohs(a.sin_port));
}

uint64_t AddrKey(const sockaddr_in& a) { return uint64_t(a.sin_addr.s_addr) << 16 | a.sin_port; }

struct Params {
  int delay_ms = 0, jitter_ms = 0, drop_pct = 0;
};

struct Stats {
  uint64_t udp_in = 0, udp_out = 0, udp_dropped = 0, queue_full = 0, send_errors = 0;
  uint64_t tcp_accepted = 0, tcp_bytes = 0, tcp_closed = 0;
  size_t max_queue = 0;
};

enum class Kind { kUdpListen, kUdpUpstream, kTcpListen, kTcpConn, kTimer, kControl };

struct Handler {
  Kind kind;
  void* ptr;
};

struct UdpMap;
struct UdpSession {
  UdpMap* map = nullptr;
  int up_fd = -1;
  sockaddr_in client{};
  int64_t last_ns = 0;
};

struct UdpMap {
  int listen_fd = -1;
  sockaddr_in target{};
  std::map<uint64_t, std::unique_ptr<UdpSession>> sessions;
};

struct Datagram {
  int64_t release_ns;
  uint64_t seq;
  int fd;
  sockaddr_in to;
  std::vector<uint8_t> data;
};
struct Later {
  bool operator()(const Datagram* a, const Datagram* b) const {
    return a->release_ns != b->release_ns ? a->release_ns > b->release_ns : a->seq > b->seq;
  }
};

struct Chunk {
  int64_t release_ns;
  std::vector<uint8_t> data;
  size_t offset = 0;
};

struct Pipe {
  std::deque<Chunk> queue;
  size_t bytes = 0;
  bool eof = false;       // the source said it has nothing more to send
  bool shut = false;      // we passed the EOF on (shutdown(SHUT_WR) of the destination)
  int64_t last_release = 0;
};

struct TcpConn {
  int client_fd = -1, up_fd = -1;
  bool connected = false;  // upstream connect finished
  bool dead = false;
  Pipe c2u, u2c;
};

struct TcpMap {
  int listen_fd = -1;
  sockaddr_in target{};
};

class Relay {
 public:
  Relay(std::string control, std::string bind_ip, Params p, size_t max_queue, uint64_t seed)
      : control_path_(std::move(control)), bind_ip_(std::move(bind_ip)), params_(p), max_queue_(max_queue),
        rng_(seed) {}

  void AddUdp(int port, const sockaddr_in& target) {
    auto m = std::make_unique<UdpMap>();
    m->listen_fd = BoundSocket(SOCK_DGRAM, port);
    m->target = target;
    Watch(m->listen_fd, EPOLLIN, {Kind::kUdpListen, m.get()});
    fprintf(stderr, "relay: udp %s:%d -> %s\n", bind_ip_.c_str(), port, AddrText(target).c_str());
    udp_.push_back(std::move(m));
  }

  void AddTcp(int port, const sockaddr_in& target) {
    auto m = std::make_unique<TcpMap>();
    m->listen_fd = BoundSocket(SOCK_STREAM, port);
    if (listen(m->listen_fd, 64) != 0) Die("listen");
    m->target = target;
    Watch(m->listen_fd, EPOLLIN, {Kind::kTcpListen, m.get()});
    fprintf(stderr, "relay: tcp %s:%d -> %s\n", bind_ip_.c_str(), port, AddrText(target).c_str());
    tcp_.push_back(std::move(m));
  }

  void Init() {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) Die("epoll_create1");
    timer_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (timer_ < 0) Die("timerfd_create");
    Watch(timer_, EPOLLIN, {Kind::kTimer, nullptr});
    control_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un addr;
    if (!tandem::MakeUnixSockaddr(control_path_, &addr).ok()) Die("control socket path");
    unlink(control_path_.c_str());
    if (bind(control_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) Die("bind control");
    if (listen(control_, 8) != 0) Die("listen control");
    Watch(control_, EPOLLIN, {Kind::kControl, nullptr});
  }

  [[noreturn]] void Run() {
    epoll_event events[64];
    for (;;) {
      ArmTimer();
      int n = epoll_wait(epoll_, events, 64, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        Die("epoll_wait");
      }
      for (int i = 0; i < n; ++i) {
        auto it = handlers_.find(events[i].data.fd);
        if (it == handlers_.end()) continue;  // closed earlier in this batch
        const Handler h = it->second;
        switch (h.kind) {
          case Kind::kUdpListen: OnUdpListen(static_cast<UdpMap*>(h.ptr)); break;
          case Kind::kUdpUpstream: OnUdpUpstream(static_cast<UdpSession*>(h.ptr)); break;
          case Kind::kTcpListen: OnTcpListen(static_cast<TcpMap*>(h.ptr)); break;
          case Kind::kTcpConn: {
            auto* c = static_cast<TcpConn*>(h.ptr);
            Service(c);
            // Error, or hung up both ways: nothing more can move on this connection.
            if (events[i].events & (EPOLLERR | EPOLLHUP)) c->dead = true;
            break;
          }
          case Kind::kTimer: {
            uint64_t expirations;
            ssize_t r = read(timer_, &expirations, sizeof(expirations));
            (void)r;
            break;
          }
          case Kind::kControl: OnControl(); break;
        }
      }
      FlushDatagrams();
      for (auto& c : conns_) Service(c.get());
      Reap();
    }
  }

 private:
  int BoundSocket(int type, int port) {
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) Die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (type == SOCK_DGRAM) {
      int big = 4 << 20;
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    }
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(uint16_t(port));
    if (inet_pton(AF_INET, bind_ip_.c_str(), &a.sin_addr) != 1) Die("bad --bind address");
    if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) Die("bind");
    return fd;
  }

  void Watch(int fd, uint32_t events, Handler h) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) Die("epoll_ctl add");
    handlers_[fd] = h;
  }

  void Rewatch(int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_, EPOLL_CTL_MOD, fd, &ev);
  }

  void Unwatch(int fd) {
    if (fd < 0) return;
    epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
    handlers_.erase(fd);
    close(fd);
  }

  int64_t DrawDelayNs() {
    int64_t ms_lo = params_.delay_ms - params_.jitter_ms, ms_hi = params_.delay_ms + params_.jitter_ms;
    if (ms_hi <= 0) return 0;
    std::uniform_int_distribution<int64_t> d(ms_lo * 1000, ms_hi * 1000);  // microsecond resolution
    return std::max<int64_t>(0, d(rng_)) * 1000;
  }

  bool DrawDrop() {
    if (params_.drop_pct <= 0) return false;
    std::uniform_int_distribution<int> d(0, 99);
    return d(rng_) < params_.drop_pct;
  }

  void Enqueue(int fd, const sockaddr_in& to, const uint8_t* data, size_t len) {
    if (DrawDrop()) {
      ++stats_.udp_dropped;
      return;
    }
    if (heap_.size() >= max_queue_) {
      ++stats_.queue_full;
      return;
    }
    auto* d = new Datagram{NowNs() + DrawDelayNs(), next_seq_++, fd, to, std::vector<uint8_t>(data, data + len)};
    heap_.push(d);
    stats_.max_queue = std::max(stats_.max_queue, heap_.size());
  }

  void FlushDatagrams() {
    const int64_t now = NowNs();
    while (!heap_.empty() && heap_.top()->release_ns <= now) {
      std::unique_ptr<Datagram> d(heap_.top());
      heap_.pop();
      ssize_t r = sendto(d->fd, d->data.data(), d->data.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&d->to),
                         sizeof(d->to));
      if (r < 0) {
        ++stats_.send_errors;
      } else {
        ++stats_.udp_out;
      }
    }
  }

  void OnUdpListen(UdpMap* m) {
    uint8_t buf[65536];
    for (;;) {
      sockaddr_in from{};
      socklen_t len = sizeof(from);
      ssize_t n = recvfrom(m->listen_fd, buf, sizeof(buf), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) return;
      ++stats_.udp_in;
      UdpSession* s = Session(m, from);
      if (s) Enqueue(s->up_fd, m->target, buf, size_t(n));
    }
  }

  UdpSession* Session(UdpMap* m, const sockaddr_in& client) {
    const int64_t now = NowNs();
    auto it = m->sessions.find(AddrKey(client));
    if (it != m->sessions.end()) {
      it->second->last_ns = now;
      return it->second.get();
    }
    // Idle sessions go first; a full table drops the oldest.
    for (auto i = m->sessions.begin(); i != m->sessions.end();) {
      if (now - i->second->last_ns > kUdpSessionIdleNs) {
        Unwatch(i->second->up_fd);
        i = m->sessions.erase(i);
      } else {
        ++i;
      }
    }
    if (m->sessions.size() >= kMaxUdpSessions) {
      auto oldest = std::min_element(m->sessions.begin(), m->sessions.end(),
                                     [](auto& a, auto& b) { return a.second->last_ns < b.second->last_ns; });
      Unwatch(oldest->second->up_fd);
      m->sessions.erase(oldest);
    }
    auto s = std::make_unique<UdpSession>();
    s->map = m;
    s->client = client;
    s->last_ns = now;
    s->up_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->up_fd < 0) return nullptr;
    int big = 4 << 20;
    setsockopt(s->up_fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    // Sessions are evicted only when idle for a minute (far longer than any delay) or when the table is full.
    Watch(s->up_fd, EPOLLIN, {Kind::kUdpUpstream, s.get()});
    UdpSession* raw = s.get();
    m->sessions[AddrKey(client)] = std::move(s);
    return raw;
  }

  void OnUdpUpstream(UdpSession* s) {
    uint8_t buf[65536];
    for (;;) {
      ssize_t n = recv(s->up_fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) return;
      ++stats_.udp_in;
      s->last_ns = NowNs();
      Enqueue(s->map->listen_fd, s->client, buf, size_t(n));
    }
  }

  void OnTcpListen(TcpMap* m) {
    for (;;) {
      int c = accept4(m->listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;
      int up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (up < 0) {
        close(c);
        continue;
      }
      int one = 1;
      setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      auto conn = std::make_unique<TcpConn>();
      conn->client_fd = c;
      conn->up_fd = up;
      int r = connect(up, reinterpret_cast<const sockaddr*>(&m->target), sizeof(m->target));
      if (r != 0 && errno != EINPROGRESS) {
        close(c), close(up);
        continue;
      }
      conn->connected = r == 0;
      ++stats_.tcp_accepted;
      Watch(c, EPOLLIN, {Kind::kTcpConn, conn.get()});
      Watch(up, EPOLLOUT, {Kind::kTcpConn, conn.get()});
      conns_.push_back(std::move(conn));
    }
  }

  // Reads what may be read, writes what is due, then sets interests. Closes both ends on any error.
  void Service(TcpConn* c) {
    if (c->dead) return;
    if (!c->connected) {
      int err = 0;
      socklen_t len = sizeof(err);
      if (getsockopt(c->up_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || (err != 0 && err != EINPROGRESS)) {
        c->dead = true;
        return;
      }
      sockaddr_in peer{};
      socklen_t plen = sizeof(peer);
      if (getpeername(c->up_fd, reinterpret_cast<sockaddr*>(&peer), &plen) == 0) c->connected = true;
    }
    if (!Pump(c->client_fd, c->up_fd, &c->c2u, c->connected) || !Pump(c->up_fd, c->client_fd, &c->u2c, true)) {
      c->dead = true;
      return;
    }
    if (c->c2u.shut && c->u2c.shut) {
      c->dead = true;
      return;
    }
    auto interest = [](const Pipe& in, const Pipe& out, bool can_read) {
      uint32_t ev = 0;
      if (can_read && !in.eof && in.bytes < kTcpQueueLimit) ev |= EPOLLIN;
      if (!out.queue.empty() && out.queue.front().release_ns <= NowNs()) ev |= EPOLLOUT;
      return ev;
    };
    // client fd: reads feed c2u, writes drain u2c.
    Rewatch(c->client_fd, interest(c->c2u, c->u2c, true));
    uint32_t up_ev = c->connected ? interest(c->u2c, c->c2u, true) : EPOLLOUT;
    Rewatch(c->up_fd, up_ev);
  }

  // from -> pipe -> to. Returns false when the connection must close.
  bool Pump(int from, int to, Pipe* p, bool can_write) {
    uint8_t buf[65536];
    while (!p->eof && p->bytes < kTcpQueueLimit) {
      ssize_t n = recv(from, buf, sizeof(buf), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        if (errno == EINTR) continue;
        return false;
      }
      if (n == 0) {
        p->eof = true;
        break;
      }
      const int64_t release = std::max(p->last_release, NowNs() + DrawDelayNs());
      p->last_release = release;
      p->queue.push_back({release, std::vector<uint8_t>(buf, buf + n)});
      p->bytes += size_t(n);
    }
    if (!can_write) return true;
    const int64_t now = NowNs();
    while (!p->queue.empty() && p->queue.front().release_ns <= now) {
      Chunk& ch = p->queue.front();
      ssize_t n = send(to, ch.data.data() + ch.offset, ch.data.size() - ch.offset, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        if (errno == EINTR) continue;
        return false;
      }
      ch.offset += size_t(n);
      stats_.tcp_bytes += uint64_t(n);
      if (ch.offset == ch.data.size()) {
        p->bytes -= ch.data.size();
        p->queue.pop_front();
      }
    }
    if (p->eof && p->queue.empty() && !p->shut) {
      shutdown(to, SHUT_WR);
      p->shut = true;
    }
    return true;
  }

  void Reap() {
    for (auto it = conns_.begin(); it != conns_.end();) {
      if ((*it)->dead) {
        Unwatch((*it)->client_fd);
        Unwatch((*it)->up_fd);
        ++stats_.tcp_closed;
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void ArmTimer() {
    int64_t next = INT64_MAX;
    if (!heap_.empty()) next = heap_.top()->release_ns;
    for (auto& c : conns_) {
      for (const Pipe* p : {&c->c2u, &c->u2c}) {
        if (!p->queue.empty()) next = std::min(next, p->queue.front().release_ns);
      }
    }
    itimerspec its{};
    if (next != INT64_MAX) {
      next = std::max<int64_t>(next, 1);
      its.it_value.tv_sec = next / 1'000'000'000;
      its.it_value.tv_nsec = next % 1'000'000'000;
    }
    timerfd_settime(timer_, TFD_TIMER_ABSTIME, &its, nullptr);
  }

  void OnControl() {
    for (;;) {
      int c = accept4(control_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      timeval tv{1, 0};
      setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::string line;
      char ch;
      while (line.size() < 512 && read(c, &ch, 1) == 1 && ch != '\n') line += ch;
      std::string reply = Command(line) + "\n";
      ssize_t w = write(c, reply.data(), reply.size());
      (void)w;
      close(c);
    }
  }

  std::string Command(const std::string& line) {
    if (line.rfind("set", 0) == 0) {
      Params p = params_;
      size_t pos = 3;
      while (pos < line.size()) {
        while (pos < line.size() && line[pos] == ' ') ++pos;
        size_t end = line.find(' ', pos);
        std::string kv = line.substr(pos, end == std::string::npos ? std::string::npos : end - pos);
        pos = end == std::string::npos ? line.size() : end;
        if (kv.empty()) continue;
        size_t eq = kv.find('=');
        if (eq == std::string::npos) return "error bad token " + kv;
        const std::string key = kv.substr(0, eq);
        const int value = atoi(kv.c_str() + eq + 1);
        if (value < 0) return "error negative " + key;
        if (key == "delay_ms") {
          p.delay_ms = value;
        } else if (key == "jitter_ms") {
          p.jitter_ms = value;
        } else if (key == "drop_pct") {
          p.drop_pct = std::min(value, 100);
        } else {
          return "error unknown key " + key;
        }
      }
      params_ = p;
      fprintf(stderr, "relay: delay %d ms +- %d ms, drop %d%%\n", p.delay_ms, p.jitter_ms, p.drop_pct);
      return "ok " + StatsText();
    }
    if (line == "stats") return "ok " + StatsText();
    return "error unknown command";
  }

  std::string StatsText() {
    char buf[512];
    snprintf(buf, sizeof(buf),
             "delay_ms=%d jitter_ms=%d drop_pct=%d udp_in=%llu udp_out=%llu udp_dropped=%llu queue_full=%llu "
             "send_errors=%llu max_queue=%zu tcp_accepted=%llu tcp_bytes=%llu tcp_closed=%llu",
             params_.delay_ms, params_.jitter_ms, params_.drop_pct, (unsigned long long)stats_.udp_in,
             (unsigned long long)stats_.udp_out, (unsigned long long)stats_.udp_dropped,
             (unsigned long long)stats_.queue_full, (unsigned long long)stats_.send_errors, stats_.max_queue,
             (unsigned long long)stats_.tcp_accepted, (unsigned long long)stats_.tcp_bytes,
             (unsigned long long)stats_.tcp_closed);
    return buf;
  }

  std::string control_path_, bind_ip_;
  Params params_;
  size_t max_queue_;
  std::mt19937_64 rng_;
  int epoll_ = -1, timer_ = -1, control_ = -1;
  std::unordered_map<int, Handler> handlers_;
  std::vector<std::unique_ptr<UdpMap>> udp_;
  std::vector<std::unique_ptr<TcpMap>> tcp_;
  std::vector<std::unique_ptr<TcpConn>> conns_;
  std::priority_queue<Datagram*, std::vector<Datagram*>, Later> heap_;
  uint64_t next_seq_ = 0;
  Stats stats_;
};

int Usage() {
  fprintf(stderr,
          "usage: tandem-fault-relay --control PATH --bind IP [--udp PORT=IP:PORT]... [--tcp PORT=IP:PORT]...\n"
          "                          [--delay MS] [--jitter MS] [--drop PCT] [--queue N] [--seed N]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  std::string control, bind_ip;
  Params p;
  size_t max_queue = 10000;
  uint64_t seed = uint64_t(NowNs()) ^ uint64_t(getpid());
  std::vector<std::pair<int, sockaddr_in>> udp, tcp;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    std::string v = argv[++i];
    if (a == "--control") {
      control = v;
    } else if (a == "--bind") {
      bind_ip = v;
    } else if (a == "--udp" || a == "--tcp") {
      const size_t eq = v.find('=');
      sockaddr_in target{};
      if (eq == std::string::npos || !ParseAddr(v.substr(eq + 1), &target)) return Usage();
      (a == "--udp" ? udp : tcp).push_back({atoi(v.substr(0, eq).c_str()), target});
    } else if (a == "--delay") {
      p.delay_ms = atoi(v.c_str());
    } else if (a == "--jitter") {
      p.jitter_ms = atoi(v.c_str());
    } else if (a == "--drop") {
      p.drop_pct = atoi(v.c_str());
    } else if (a == "--queue") {
      max_queue = size_t(std::max(1, atoi(v.c_str())));
    } else if (a == "--seed") {
      seed = strtoull(v.c_str(), nullptr, 10);
    } else {
      return Usage();
    }
  }
  if (control.empty() || bind_ip.empty() || (udp.empty() && tcp.empty())) return Usage();
  Relay relay(control, bind_ip, p, max_queue, seed);
  relay.Init();
  for (auto& [port, target] : udp) relay.AddUdp(port, target);
  for (auto& [port, target] : tcp) relay.AddTcp(port, target);
  fprintf(stderr, "relay: ready\n");
  relay.Run();
}
