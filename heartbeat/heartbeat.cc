#include "heartbeat/heartbeat.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>

#include "common/fd.h"
#include "common/key_file.h"
#include "common/log.h"
#include "common/random.h"
#include "common/waker.h"
#include "heartbeat/detector.h"
#include "heartbeat/udp.h"

namespace tandem::heartbeat {
namespace {

constexpr const char* kLog = "heartbeat";
constexpr int64_t kRejectLogPeriodNs = 10'000'000'000;  // at most one rejection line per link per 10 s
constexpr int kMaxDatagramsPerWake = 64;                  // per link, so a flood on one link cannot starve others

}  // namespace

struct HeartbeatService::Impl {
  struct Link {
    std::string local_text, peer_text;
    UniqueFd fd;
    SocketAddress peer;
    uint64_t next_seq = 1;
    bool blocked = false;  // guarded by mu
    // Rejection log throttling (thread only).
    bool reject_logged = false;
    int64_t last_reject_log_ns = 0;
    uint64_t rejects_since_log = 0;
  };

  Impl(HeartbeatOptions o, Clock* c) : options(std::move(o)), clock(c), incarnation(RandomNonZeroId(c)) {}

  Status Validate() const;
  Status Open();
  void Run();
  void SendAll(int64_t now_ns);
  void Drain(size_t index);
  void NoteRejection(size_t index, const sockaddr_storage& from, const char* reason, int64_t now_ns);
  void Dispatch(const DetectorEvents& events);

  const HeartbeatOptions options;
  Clock* const clock;
  const uint64_t incarnation;
  std::optional<MacKey> key;  // used by the thread only (after Start)
  std::vector<Link> links;
  Waker wake;
  std::thread thread;
  std::atomic<bool> stop{false};
  bool started = false;
  Message outgoing;  // thread only: the fixed fields set once

  mutable std::mutex mu;
  std::unique_ptr<PeerDetector> detector;  // guarded by mu
  LocalState local;                        // guarded by mu
  bool send_now = false;                   // guarded by mu
  std::function<void()> on_lost, on_recovered, on_restarted;  // guarded by mu
};

Status HeartbeatService::Impl::Validate() const {
  if (options.psk.empty()) {
    return Status::InvalidArgument("heartbeat: a pre-shared key is required (heartbeat.psk or heartbeat.psk_file)");
  }
  TANDEM_RETURN_IF_ERROR(CheckKeyLength(options.psk, "heartbeat: the pre-shared key"));
  if (!ValidNodeName(options.node_name) || !ValidNodeName(options.peer_name)) {
    return Status::InvalidArgument("heartbeat: node and peer names must be 1..32 bytes");
  }
  if (options.node_name == options.peer_name) {
    return Status::InvalidArgument("heartbeat: node and peer names must differ");
  }
  if (options.links.empty() || options.links.size() > kMaxLinks) {
    return Status::InvalidArgument("heartbeat: 1.." + std::to_string(kMaxLinks) + " links required");
  }
  if (options.interval_ms < 1 || options.timeout_ms <= options.interval_ms) {
    return Status::InvalidArgument("heartbeat: need interval_ms >= 1 and timeout_ms > interval_ms");
  }
  if (options.promise_ms < 0) return Status::InvalidArgument("heartbeat: promise_ms must be >= 0");
  return Status::Ok();
}

Status HeartbeatService::Impl::Open() {
  for (size_t i = 0; i < options.links.size(); ++i) {
    const LinkConfig& cfg = options.links[i];
    auto local_parsed = ParseAddress(cfg.local_address);
    if (!local_parsed.ok()) return local_parsed.status().WithContext("heartbeat");
    auto peer_parsed = ParseAddress(cfg.peer_address);
    if (!peer_parsed.ok()) return peer_parsed.status().WithContext("heartbeat");
    const SocketAddress local_addr = *local_parsed, peer_addr = *peer_parsed;
    if (local_addr.family() != peer_addr.family()) {
      return Status::InvalidArgument("heartbeat: link " + std::to_string(i) + " mixes IPv4 and IPv6");
    }
    Link link;
    link.local_text = cfg.local_address;
    link.peer_text = cfg.peer_address;
    link.peer = peer_addr;
    link.fd = UniqueFd(socket(local_addr.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!link.fd.valid()) return Status::FromErrno("heartbeat: socket", errno);
    // Network-control class (CS6) so congested queues drop data before heartbeats; best effort.
    const int tos = 0xC0;
    if (local_addr.family() == AF_INET) {
      setsockopt(link.fd.get(), IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
    } else {
      setsockopt(link.fd.get(), IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
    }
    if (bind(link.fd.get(), local_addr.get(), local_addr.len) != 0) {
      return Status::FromErrno("heartbeat: bind " + cfg.local_address, errno);
    }
    links.push_back(std::move(link));
  }
  return wake.Open("heartbeat");
}

void HeartbeatService::Impl::SendAll(int64_t now_ns) {
  uint8_t buf[kMessageSize];
  std::lock_guard<std::mutex> lock(mu);
  outgoing.role = local.role;
  outgoing.term = local.term;
  outgoing.last_epoch = local.last_epoch;
  outgoing.promise_ms = local.role == Role::kStandby ? uint32_t(options.promise_ms) : 0;
  outgoing.send_ns = now_ns;
  for (size_t i = 0; i < links.size(); ++i) {
    Link& link = links[i];
    if (link.blocked) continue;
    outgoing.link_index = uint8_t(i);
    outgoing.sequence = link.next_seq++;
    detector->FillEcho(i, now_ns, &outgoing);
    if (Status st = EncodeMessage(outgoing, *key, buf); !st.ok()) {
      TLOG_ERROR(kLog, "link %s: %s", link.local_text.c_str(), st.ToString().c_str());
      detector->OnSendError(i);
      continue;
    }
    ssize_t n;
    do {
      n = sendto(link.fd.get(), buf, sizeof(buf), MSG_DONTWAIT, link.peer.get(), link.peer.len);
    } while (n < 0 && errno == EINTR);
    if (n == ssize_t(sizeof(buf))) {
      detector->OnSent(i);
    } else {
      detector->OnSendError(i);
    }
  }
}

void HeartbeatService::Impl::NoteRejection(size_t index, const sockaddr_storage& from, const char* reason,
                                           int64_t now_ns) {
  Link& link = links[index];
  link.rejects_since_log++;
  if (link.reject_logged && now_ns - link.last_reject_log_ns < kRejectLogPeriodNs) return;
  TLOG_WARN(kLog, "link %s: rejected datagram from %s: %s (%" PRIu64 " rejected since the last report)",
            link.local_text.c_str(), FormatAddress(from).c_str(), reason, link.rejects_since_log);
  link.reject_logged = true;
  link.last_reject_log_ns = now_ns;
  link.rejects_since_log = 0;
}

void HeartbeatService::Impl::Drain(size_t index) {
  Link& link = links[index];
  // One byte more than a message, with MSG_TRUNC reporting the real length, so longer datagrams are refused.
  uint8_t buf[kMessageSize + 1];
  for (int n = 0; n < kMaxDatagramsPerWake; ++n) {
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    const ssize_t got =
        recvfrom(link.fd.get(), buf, sizeof(buf), MSG_TRUNC | MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (got < 0) {
      if (errno == EINTR) continue;
      // EAGAIN: drained. Anything else (e.g. a queued ICMP error) is not about the peer's liveness.
      return;
    }
    const int64_t now = clock->NowNanos();
    // A longer datagram arrives cut to kMessageSize + 1 bytes: still refused as a bad length.
    const size_t len = std::min<size_t>(size_t(got), sizeof(buf));
    auto decoded = DecodeAuthenticatedMessage(std::span<const uint8_t>(buf, len), *key);
    DetectorEvents events;
    Verdict verdict = Verdict::kAccepted;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (link.blocked) continue;
      if (!decoded.ok()) {
        detector->OnMalformed(index);
      } else {
        verdict = detector->OnMessage(index, *decoded, now, &events);
      }
    }
    if (!decoded.ok()) {
      NoteRejection(index, from, decoded.status().message().c_str(), now);
    } else if (verdict == Verdict::kUnconfirmedIncarnation) {
      TLOG_DEBUG(kLog, "link %s: peer incarnation %016" PRIx64 " not yet confirmed (no fresh echo)",
                 link.local_text.c_str(), decoded->incarnation);
    } else if (verdict != Verdict::kAccepted) {
      NoteRejection(index, from, VerdictName(verdict), now);
    }
    if (events.any()) Dispatch(events);
  }
}

void HeartbeatService::Impl::Dispatch(const DetectorEvents& events) {
  for (size_t i = 0; i < links.size(); ++i) {
    if (events.links_up & (1u << i)) {
      TLOG_INFO(kLog, "link %s -> %s up", links[i].local_text.c_str(), links[i].peer_text.c_str());
    }
    if (events.links_down & (1u << i)) {
      TLOG_WARN(kLog, "link %s -> %s down (silent for %d ms)", links[i].local_text.c_str(),
                links[i].peer_text.c_str(), options.timeout_ms);
    }
  }
  if (events.peer_restarted) {
    TLOG_WARN(kLog, "peer %s restarted: incarnation %016" PRIx64 " replaced %016" PRIx64, options.peer_name.c_str(),
              events.new_incarnation, events.old_incarnation);
  }
  if (events.peer_found) {
    TLOG_INFO(kLog, "peer %s heard (incarnation %016" PRIx64 ")", options.peer_name.c_str(), events.new_incarnation);
  }
  if (events.peer_lost) {
    TLOG_WARN(kLog, "peer %s LOST: every link silent for %d ms", options.peer_name.c_str(), options.timeout_ms);
  }
  if (events.peer_recovered) TLOG_INFO(kLog, "peer %s recovered", options.peer_name.c_str());

  std::function<void()> lost, recovered, restarted;
  {
    std::lock_guard<std::mutex> lock(mu);
    if (events.peer_lost) lost = on_lost;
    if (events.peer_recovered) recovered = on_recovered;
    if (events.peer_restarted) restarted = on_restarted;
  }
  // Order matters to a reader of the callbacks: a restart that also revives the peer is a restart first.
  if (restarted) restarted();
  if (lost) lost();
  if (recovered) recovered();
}

void HeartbeatService::Impl::Run() {
  const int64_t interval_ns = int64_t(options.interval_ms) * 1'000'000;
  std::vector<pollfd> fds(links.size() + 1);
  for (size_t i = 0; i < links.size(); ++i) fds[i] = {links[i].fd.get(), POLLIN, 0};
  fds.back() = {wake.fd(), POLLIN, 0};
  int64_t next_send = clock->NowNanos();
  while (!stop.load()) {
    const int64_t now = clock->NowNanos();
    bool send = now >= next_send;
    {
      std::lock_guard<std::mutex> lock(mu);
      send = send || std::exchange(send_now, false);
    }
    if (send) SendAll(now);
    if (now >= next_send) {
      next_send += interval_ns;
      if (next_send <= now) next_send = now + interval_ns;  // we fell behind: do not burst to catch up
    }
    DetectorEvents events;
    int64_t deadline;
    {
      std::lock_guard<std::mutex> lock(mu);
      events = detector->Tick(now);
      deadline = std::min(detector->NextDeadline(), next_send);
    }
    if (events.any()) Dispatch(events);
    // Bounded by one interval so that a FakeClock moved by a test is noticed without a wake-up.
    const int64_t wait_ns = std::clamp<int64_t>(deadline - clock->NowNanos(), 0, interval_ns);
    timespec ts{time_t(wait_ns / 1'000'000'000), long(wait_ns % 1'000'000'000)};
    const int ready = ppoll(fds.data(), fds.size(), &ts, nullptr);
    if (ready < 0) {
      if (errno != EINTR) {
        TLOG_ERROR(kLog, "ppoll: %s", strerror(errno));
        clock->SleepNanos(1'000'000);
      }
      continue;
    }
    if (stop.load()) break;
    for (size_t i = 0; i < links.size(); ++i) {
      if (fds[i].revents != 0) Drain(i);
    }
    if (fds.back().revents & POLLIN) wake.Drain();
  }
}

HeartbeatService::HeartbeatService(HeartbeatOptions options, Clock* clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}

HeartbeatService::~HeartbeatService() { Stop(); }

Status HeartbeatService::Start() {
  Impl& s = *impl_;
  if (s.started) return Status::InvalidArgument("heartbeat: already started");
  TANDEM_RETURN_IF_ERROR(s.Validate());
  auto key = MacKey::Create(s.options.psk);
  if (!key.ok()) return key.status();
  s.key.emplace(std::move(key).value());
  if (Status st = s.Open(); !st.ok()) {
    s.links.clear();
    s.wake.Close();
    return st;
  }
  s.outgoing.sender.Set(s.options.node_name);
  s.outgoing.receiver.Set(s.options.peer_name);
  s.outgoing.incarnation = s.incarnation;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.detector = std::make_unique<PeerDetector>(s.options.node_name, s.options.peer_name, s.links.size(),
                                                int64_t(s.options.timeout_ms) * 1'000'000, s.clock->NowNanos(),
                                                int64_t(s.options.promise_ms) * 1'000'000);
    s.detector->SetLocalTerm(s.local.term);
  }
  s.started = true;
  TLOG_INFO(kLog, "%s (incarnation %016" PRIx64 ") watching %s on %zu link(s), interval %d ms, timeout %d ms",
            s.options.node_name.c_str(), s.incarnation, s.options.peer_name.c_str(), s.links.size(),
            s.options.interval_ms, s.options.timeout_ms);
  s.thread = std::thread([&s] { s.Run(); });
  pthread_setname_np(s.thread.native_handle(), "tandem-heartbeat");
  return Status::Ok();
}

void HeartbeatService::SetLocalState(LocalState state) {
  Impl& s = *impl_;
  bool urgent;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    urgent = state.role != s.local.role || state.term != s.local.term;
    s.local = state;
    if (s.detector) s.detector->SetLocalTerm(state.term);
    if (urgent) s.send_now = true;
  }
  if (urgent) s.wake.Wake();
}

PeerStatus HeartbeatService::peer() const {
  const Impl& s = *impl_;
  PeerStatus status;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.detector) {
      status = s.detector->Snapshot(s.clock->NowNanos());
    } else {
      status.links.resize(s.options.links.size());
      for (LinkStatus& l : status.links) l.loss = 1.0;
    }
  }
  for (size_t i = 0; i < status.links.size() && i < s.options.links.size(); ++i) {
    status.links[i].local_address = s.options.links[i].local_address;
    status.links[i].peer_address = s.options.links[i].peer_address;
  }
  return status;
}

void HeartbeatService::OnPeerLost(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->on_lost = std::move(callback);
}

void HeartbeatService::OnPeerRecovered(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->on_recovered = std::move(callback);
}

void HeartbeatService::OnPeerRestarted(std::function<void()> callback) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->on_restarted = std::move(callback);
}

void HeartbeatService::Stop() {
  Impl& s = *impl_;
  s.stop.store(true);
  s.wake.Wake();
  if (!s.thread.joinable() || s.thread.get_id() == std::this_thread::get_id()) return;
  s.thread.join();
  // Close the sockets now: a stopped service must look dead to its peer and free its ports for a successor.
  std::lock_guard<std::mutex> lock(s.mu);
  s.links.clear();
  TLOG_INFO(kLog, "%s stopped", s.options.node_name.c_str());
}

uint64_t HeartbeatService::incarnation() const { return impl_->incarnation; }

void HeartbeatService::SetLinkBlockedForTesting(size_t link, bool blocked) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (link < impl_->links.size()) impl_->links[link].blocked = blocked;
}

}  // namespace tandem::heartbeat
