#include "replicator/transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>

#include "replicator/format.h"
#include "replicator/messages.h"
#include "replicator/transport_internal.h"

namespace tandem::replicator {
namespace {

constexpr size_t kMaxIov = 16;
constexpr size_t kCoalesceBytes = 256 * 1024;

// Waits for `events` on fd. Ok when ready (or hung up: the next call reports it), Timeout otherwise.
Status PollFor(int fd, short events, int timeout_ms, const char* what) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return Status::Ok();
    if (n == 0) return Status::Timeout(std::string(what) + ": no progress for " + std::to_string(timeout_ms) + " ms");
    if (errno != EINTR) return Status::FromErrno(what, errno);
  }
}

// Non-blocking socket + poll(2): the portable engine.
class PollTransport final : public Transport {
 public:
  explicit PollTransport(UniqueFd fd) : fd_(std::move(fd)) {}

  Status Send(std::span<const iovec> iov_in, int timeout_ms) override {
    iovec iov[kMaxIov];
    size_t count = std::min(iov_in.size(), kMaxIov);
    std::copy_n(iov_in.begin(), count, iov);
    size_t first = 0;
    while (first < count) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      msghdr msg{};
      msg.msg_iov = iov + first;
      msg.msg_iovlen = count - first;
      ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          TANDEM_RETURN_IF_ERROR(PollFor(fd_.get(), POLLOUT, timeout_ms, "send"));
          continue;
        }
        if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) return Status::Closed("peer closed the connection");
        return Status::FromErrno("send", errno);
      }
      AdvanceIov(iov, count, &first, size_t(n));
    }
    if (count < iov_in.size()) return Send(iov_in.subspan(count), timeout_ms);
    return Status::Ok();
  }

  Status Recv(void* buf, size_t len, int timeout_ms) override {
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    while (got < len) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      ssize_t n = ::recv(fd_.get(), p + got, len - got, MSG_DONTWAIT);
      if (n > 0) {
        got += size_t(n);
        continue;
      }
      if (n == 0) return got == 0 ? Status::Closed("end of stream") : Status::Closed("stream truncated mid-read");
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        TANDEM_RETURN_IF_ERROR(PollFor(fd_.get(), POLLIN, timeout_ms, "receive"));
        continue;
      }
      if (errno == ECONNRESET) return Status::Closed("connection reset by peer");
      return Status::FromErrno("recv", errno);
    }
    return Status::Ok();
  }

  Status WaitReadable(int timeout_ms) override {
    if (shut_.load()) return Status::Aborted("transport shut down");
    return PollFor(fd_.get(), POLLIN, timeout_ms, "wait for data");
  }

  Status WaitSent(int timeout_ms) override { return WaitSendQueueEmpty(fd_.get(), timeout_ms); }
  uint64_t QueuedBytes() const override { return SendQueueBytes(fd_.get()); }

  void Shutdown() override {
    // shutdown(2) wakes a poll blocked in another thread (the fd itself stays open until destruction, so it
    // cannot be reused under that thread's feet).
    if (!shut_.exchange(true)) ::shutdown(fd_.get(), SHUT_RDWR);
  }

  const char* engine_name() const override { return "poll"; }

 private:
  UniqueFd fd_;
  std::atomic<bool> shut_{false};
};

// Regular file: blocking read/write, no timeouts.
class FileTransport final : public Transport {
 public:
  explicit FileTransport(UniqueFd fd) : fd_(std::move(fd)) {}
  Status Send(std::span<const iovec> iov, int) override {
    if (shut_.load()) return Status::Aborted("transport shut down");
    for (const iovec& v : iov) TANDEM_RETURN_IF_ERROR(WriteFull(fd_.get(), v.iov_base, v.iov_len));
    return Status::Ok();
  }
  Status Recv(void* buf, size_t len, int) override {
    if (shut_.load()) return Status::Aborted("transport shut down");
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    while (got < len) {
      ssize_t n = ::read(fd_.get(), p + got, len - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno("read stream file", errno);
      if (n == 0) return got == 0 ? Status::Closed("end of stream") : Status::Closed("stream truncated mid-read");
      got += size_t(n);
    }
    return Status::Ok();
  }
  Status WaitReadable(int) override { return shut_.load() ? Status::Aborted("transport shut down") : Status::Ok(); }
  void Shutdown() override { shut_.store(true); }
  const char* engine_name() const override { return "file"; }

 private:
  UniqueFd fd_;
  std::atomic<bool> shut_{false};
};

class MemoryTransport final : public Transport {
 public:
  explicit MemoryTransport(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  Status Send(std::span<const iovec>, int) override { return Status::InvalidArgument("memory transport is read-only"); }
  Status Recv(void* buf, size_t len, int) override {
    if (shut_.load()) return Status::Aborted("transport shut down");
    size_t n = std::min(len, bytes_.size() - pos_);
    if (n > 0) memcpy(buf, bytes_.data() + pos_, n);
    pos_ += n;
    if (n < len) return n == 0 ? Status::Closed("end of stream") : Status::Closed("stream truncated mid-read");
    return Status::Ok();
  }
  Status WaitReadable(int) override { return shut_.load() ? Status::Aborted("transport shut down") : Status::Ok(); }
  void Shutdown() override { shut_.store(true); }
  const char* engine_name() const override { return "memory"; }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  std::atomic<bool> shut_{false};
};

Status ResolveIpv4(const std::string& host, bool passive, in_addr* out) {
  if (host.empty() || host == "*") {
    out->s_addr = passive ? htonl(INADDR_ANY) : htonl(INADDR_LOOPBACK);
    return Status::Ok();
  }
  if (inet_pton(AF_INET, host.c_str(), out) == 1) return Status::Ok();
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) return Status::InvalidArgument("cannot resolve " + host + ": " + gai_strerror(rc));
  *out = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
  freeaddrinfo(res);
  return Status::Ok();
}

}  // namespace

void AdvanceIov(iovec* iov, size_t count, size_t* first, size_t n) {
  while (n > 0 && *first < count) {
    iovec& v = iov[*first];
    if (n >= v.iov_len) {
      n -= v.iov_len;
      v.iov_len = 0;
      ++*first;
    } else {
      v.iov_base = static_cast<uint8_t*>(v.iov_base) + n;
      v.iov_len -= n;
      n = 0;
    }
  }
  while (*first < count && iov[*first].iov_len == 0) ++*first;
}

uint64_t SendQueueBytes(int fd) {
  // TCP: the bytes not sent yet (SIOCOUTQNSD), not SIOCOUTQ, which also counts bytes in flight and so stays
  // non-zero for a delayed ACK's 40 ms after the peer has read everything. Unix sockets know only SIOCOUTQ.
  int queued = 0;
  if (ioctl(fd, SIOCOUTQNSD, &queued) != 0 && ioctl(fd, SIOCOUTQ, &queued) != 0) return 0;
  return queued > 0 ? uint64_t(queued) : 0;
}

Status WaitSendQueueEmpty(int fd, int timeout_ms) {
  // A unix socket's bytes are in the peer's receive queue as soon as send returns (and stay readable when the
  // sender dies); its SIOCOUTQ counts what the peer has not read yet, which is not this question.
  int domain = 0;
  socklen_t len = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX) return Status::Ok();
  for (int waited = 0; waited <= timeout_ms; ++waited) {
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) != 0) return Status::FromErrno("SIOCOUTQ", errno);
    if (queued == 0) return Status::Ok();
    usleep(1000);
  }
  return Status::Timeout("send queue did not drain");
}

std::unique_ptr<Transport> MakePollTransport(UniqueFd fd) { return std::make_unique<PollTransport>(std::move(fd)); }

Result<IoEngine> ParseIoEngine(std::string_view name) {
  if (name == "auto") return IoEngine::kAuto;
  if (name == "io_uring") return IoEngine::kIoUring;
  if (name == "epoll" || name == "poll") return IoEngine::kPoll;
  return Status::InvalidArgument("unknown I/O engine '" + std::string(name) + "' (auto, io_uring, epoll)");
}

const char* IoEngineName(IoEngine engine) {
  switch (engine) {
    case IoEngine::kAuto: return "auto";
    case IoEngine::kIoUring: return "io_uring";
    case IoEngine::kPoll: return "poll";
  }
  return "?";
}

Result<std::unique_ptr<Transport>> MakeSocketTransport(UniqueFd socket, IoEngine engine) {
  int flags = fcntl(socket.get(), F_GETFL);
  if (flags < 0 || fcntl(socket.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::FromErrno("make socket non-blocking", errno);
  }
  int domain = 0;
  socklen_t len = sizeof(domain);
  if (getsockopt(socket.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && (domain == AF_INET || domain == AF_INET6)) {
    int one = 1;
    setsockopt(socket.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  if (engine == IoEngine::kPoll) return MakePollTransport(std::move(socket));
  return MakeUringTransportOrFallback(std::move(socket), engine == IoEngine::kIoUring);
}

std::unique_ptr<Transport> MakeFileTransport(UniqueFd file) { return std::make_unique<FileTransport>(std::move(file)); }

std::unique_ptr<Transport> MakeMemoryTransport(std::span<const uint8_t> bytes) {
  return std::make_unique<MemoryTransport>(bytes);
}

Status ParseHostPort(const std::string& address, std::string* host, uint16_t* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("address '" + address + "' is not host:port");
  const std::string port_text = address.substr(colon + 1);
  char* end = nullptr;
  errno = 0;
  unsigned long p = strtoul(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || errno != 0 || p > 65535) {
    return Status::InvalidArgument("address '" + address + "' has a bad port");
  }
  *host = address.substr(0, colon);
  *port = uint16_t(p);
  return Status::Ok();
}

namespace {

constexpr std::string_view kUnixPrefix = "unix:";

// The sockaddr_un of a "unix:" address; InvalidArgument named after what is wrong with it.
Status UnixSockaddr(const std::string& address, sockaddr_un* out) {
  const std::string path = address.substr(kUnixPrefix.size());
  if (path.empty()) return Status::InvalidArgument("address '" + address + "' has an empty socket path");
  *out = {};
  out->sun_family = AF_UNIX;
  if (path.size() >= sizeof(out->sun_path)) {
    return Status::InvalidArgument("socket path of '" + address + "' is " + std::to_string(path.size()) +
                                   " bytes, longer than the " + std::to_string(sizeof(out->sun_path) - 1) +
                                   " a unix socket address holds");
  }
  if (path.find('\0') != std::string::npos) return Status::InvalidArgument("socket path of '" + address + "' has a NUL");
  memcpy(out->sun_path, path.data(), path.size());
  return Status::Ok();
}

Result<UniqueFd> ListenUnix(const std::string& address) {
  sockaddr_un addr;
  TANDEM_RETURN_IF_ERROR(UnixSockaddr(address, &addr));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EADDRINUSE) return Status::FromErrno("bind " + address, errno);
    // A file is there. Replace it only if it is a socket nobody listens on any more (a listener that died).
    struct stat st;
    if (lstat(addr.sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) return Status::FromErrno("bind " + address, EADDRINUSE);
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe.valid()) return Status::FromErrno("socket", errno);
    if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 || errno != ECONNREFUSED) {
      return Status::FromErrno("bind " + address + " (another listener has it)", EADDRINUSE);
    }
    ::unlink(addr.sun_path);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return Status::FromErrno("bind " + address, errno);
    }
  }
  if (::listen(fd.get(), 8) != 0) return Status::FromErrno("listen " + address, errno);
  return fd;
}

Result<UniqueFd> ConnectUnix(const std::string& address, int timeout_ms) {
  sockaddr_un addr;
  TANDEM_RETURN_IF_ERROR(UnixSockaddr(address, &addr));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  // A unix connect completes at once or waits only for room in the listener's backlog, and that wait honours
  // SO_SNDTIMEO (a non-blocking connect would say EAGAIN and leave nothing to poll for).
  if (timeout_ms >= 0) {
    timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  }
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    if (errno == EAGAIN || errno == EINPROGRESS) {
      return Status::Timeout("connect " + address + ": no room in the listener's backlog for " +
                             std::to_string(timeout_ms) + " ms");
    }
    return Status::FromErrno("connect " + address, errno);
  }
  timeval none{};
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &none, sizeof(none));
  return fd;
}

}  // namespace

bool IsUnixAddress(std::string_view address) { return address.substr(0, kUnixPrefix.size()) == kUnixPrefix; }

Status CheckStreamAddress(const std::string& address) {
  if (IsUnixAddress(address)) {
    sockaddr_un addr;
    return UnixSockaddr(address, &addr);
  }
  std::string host;
  uint16_t port = 0;
  return ParseHostPort(address, &host, &port);
}

void RemoveUnixSocket(const std::string& address) {
  sockaddr_un addr;
  struct stat st;
  if (!IsUnixAddress(address) || !UnixSockaddr(address, &addr).ok()) return;
  if (lstat(addr.sun_path, &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(addr.sun_path);
}

Result<UniqueFd> ListenStream(const std::string& address, int* port) {
  *port = 0;
  if (IsUnixAddress(address)) return ListenUnix(address);
  std::string host;
  uint16_t want = 0;
  TANDEM_RETURN_IF_ERROR(ParseHostPort(address, &host, &want));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(want);
  TANDEM_RETURN_IF_ERROR(ResolveIpv4(host, true, &addr.sin_addr));
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::FromErrno("bind " + address, errno);
  }
  if (::listen(fd.get(), 8) != 0) return Status::FromErrno("listen " + address, errno);
  socklen_t len = sizeof(addr);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return Status::FromErrno("getsockname", errno);
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

Result<UniqueFd> ConnectStream(const std::string& address, int timeout_ms) {
  if (IsUnixAddress(address)) return ConnectUnix(address, timeout_ms);
  std::string host;
  uint16_t port = 0;
  TANDEM_RETURN_IF_ERROR(ParseHostPort(address, &host, &port));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  TANDEM_RETURN_IF_ERROR(ResolveIpv4(host, false, &addr.sin_addr));
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EINPROGRESS) return Status::FromErrno("connect " + address, errno);
    TANDEM_RETURN_IF_ERROR(PollFor(fd.get(), POLLOUT, timeout_ms, "connect"));
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return Status::FromErrno("connect " + address, err);
  }
  int flags = fcntl(fd.get(), F_GETFL);
  fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

TransportSink::TransportSink(Transport* transport, int timeout_ms) : transport_(transport), timeout_ms_(timeout_ms) {
  buffer_.reserve(kCoalesceBytes);
}

Status TransportSink::WriteRecord(std::span<const uint8_t> record) {
  if (buffer_.size() + record.size() <= kCoalesceBytes) {
    buffer_.insert(buffer_.end(), record.begin(), record.end());
    return Status::Ok();
  }
  // Too big to coalesce: the buffered records and this one leave in a single gather send.
  iovec iov[2] = {{buffer_.data(), buffer_.size()}, {const_cast<uint8_t*>(record.data()), record.size()}};
  TANDEM_RETURN_IF_ERROR(Send({iov, 2}));
  bytes_sent_ += buffer_.size() + record.size();
  buffer_.clear();
  return Status::Ok();
}

Status TransportSink::Flush() {
  if (buffer_.empty()) return Status::Ok();
  iovec iov{buffer_.data(), buffer_.size()};
  TANDEM_RETURN_IF_ERROR(Send({&iov, 1}));
  bytes_sent_ += buffer_.size();
  buffer_.clear();
  return Status::Ok();
}

Status TransportSink::Send(std::span<const iovec> iov) {
  const auto start = std::chrono::steady_clock::now();
  Status st = transport_->Send(iov, timeout_ms_);
  send_ns_ += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
                           .count());
  return st;
}

Status RecordReader::Next(int idle_timeout_ms, int io_timeout_ms, RecordView* record) {
  uint8_t header[kRecordHeaderSize];
  TANDEM_RETURN_IF_ERROR(transport_->WaitReadable(idle_timeout_ms));
  TANDEM_RETURN_IF_ERROR(transport_->Recv(header, sizeof(header), io_timeout_ms));
  const uint32_t type = LoadLe32(header);
  const uint32_t length = LoadLe32(header + 4);
  if (length > kMaxRecordPayload) {
    return Status::Corruption("record " + std::string(RecordTypeName(type)) + " claims a length of " +
                              std::to_string(length) + " bytes (limit " + std::to_string(kMaxRecordPayload) + ")");
  }
  if (payload_.size() < length) payload_.resize(length);
  if (length > 0) {
    Status st = transport_->Recv(payload_.data(), length, io_timeout_ms);
    if (st.IsClosed()) return Status::Closed("truncated record: stream ended inside a " + std::string(RecordTypeName(type)));
    TANDEM_RETURN_IF_ERROR(st);
  }
  bytes_read_ += kRecordHeaderSize + length;
  const uint64_t expected = LoadLe64(header + kRecordChecksumOffset);
  const uint64_t actual = RecordChecksum(header, {payload_.data(), length});
  if (expected != actual) {
    return Status::Corruption("checksum mismatch in a record of type " + std::string(RecordTypeName(type)) +
                              " and length " + std::to_string(length));
  }
  record->type = type;
  record->checksum = actual;
  record->payload = {payload_.data(), length};
  return Status::Ok();
}

}  // namespace tandem::replicator
