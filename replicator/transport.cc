// Socket transports: picking an engine, and the stream addresses (common/net_address.h) they listen and connect on.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include "common/net_address.h"
#include "replicator/transport_internal.h"

namespace tandem::replicator {

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
  if (getsockopt(socket.get(), SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
      (domain == AF_INET || domain == AF_INET6)) {
    int one = 1;
    setsockopt(socket.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  if (engine == IoEngine::kPoll) return MakePollTransport(std::move(socket));
  return MakeUringTransportOrFallback(std::move(socket), engine == IoEngine::kIoUring);
}

namespace {

Result<UniqueFd> ListenUnix(const std::string& address, const sockaddr_un& addr) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    if (errno != EADDRINUSE) return Status::FromErrno("bind " + address, errno);
    // A file is there. Replace it only if it is a socket nobody listens on any more (a listener that died).
    struct stat st;
    if (lstat(addr.sun_path, &st) != 0 || !S_ISSOCK(st.st_mode)) {
      return Status::FromErrno("bind " + address, EADDRINUSE);
    }
    UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe.valid()) return Status::FromErrno("socket", errno);
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0 || errno != ECONNREFUSED) {
      return Status::FromErrno("bind " + address + " (another listener has it)", EADDRINUSE);
    }
    ::unlink(addr.sun_path);
    if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
      return Status::FromErrno("bind " + address, errno);
    }
  }
  if (::listen(fd.get(), 8) != 0) return Status::FromErrno("listen " + address, errno);
  return fd;
}

Result<UniqueFd> ConnectUnix(const std::string& address, const sockaddr_un& addr, int timeout_ms) {
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
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
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

// The sockaddr_un of a parsed "unix:" address (ParseNetAddress checked that it fits).
sockaddr_un UnixSockaddr(const NetAddress& address) {
  sockaddr_un addr;
  MakeUnixSockaddr(address.path, &addr).ok();
  return addr;
}

int BoundPort(const sockaddr_storage& s) {
  if (s.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&s)->sin_port);
  if (s.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&s)->sin6_port);
  return 0;
}

}  // namespace

Status CheckStreamAddress(const std::string& address) { return ParseNetAddress(address).status(); }

void RemoveUnixSocket(const std::string& address) {
  auto parsed = ParseNetAddress(address);
  if (!parsed.ok() || !parsed->is_unix) return;
  struct stat st;
  if (lstat(parsed->path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) ::unlink(parsed->path.c_str());
}

Result<UniqueFd> ListenStream(const std::string& address, int* port) {
  *port = 0;
  TANDEM_ASSIGN_OR_RETURN(const NetAddress parsed, ParseNetAddress(address));
  if (parsed.is_unix) return ListenUnix(address, UnixSockaddr(parsed));
  TANDEM_ASSIGN_OR_RETURN(SocketAddress addr, ResolveInet(parsed, /*passive=*/true, /*allow_names=*/true));
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (::bind(fd.get(), addr.get(), addr.len) != 0) return Status::FromErrno("bind " + address, errno);
  if (::listen(fd.get(), 8) != 0) return Status::FromErrno("listen " + address, errno);
  socklen_t len = sizeof(addr.storage);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr.storage), &len) != 0) {
    return Status::FromErrno("getsockname", errno);
  }
  *port = BoundPort(addr.storage);
  return fd;
}

Result<UniqueFd> ConnectStream(const std::string& address, int timeout_ms) {
  TANDEM_ASSIGN_OR_RETURN(const NetAddress parsed, ParseNetAddress(address));
  if (parsed.is_unix) return ConnectUnix(address, UnixSockaddr(parsed), timeout_ms);
  TANDEM_ASSIGN_OR_RETURN(const SocketAddress addr, ResolveInet(parsed, /*passive=*/false, /*allow_names=*/true));
  UniqueFd fd(::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd.valid()) return Status::FromErrno("socket", errno);
  if (::connect(fd.get(), addr.get(), addr.len) != 0) {
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
}  // namespace tandem::replicator
