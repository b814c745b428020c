#include "heartbeat/udp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <unistd.h>

#include <cerrno>

namespace tandem::heartbeat {

Result<SocketAddress> ParseAddress(const std::string& text, bool allow_port_zero) {
  TANDEM_ASSIGN_OR_RETURN(const NetAddress parsed, ParseNetAddress(text));
  if (parsed.is_unix || parsed.host.empty()) return Status::InvalidArgument("address '" + text + "' is not ip:port");
  if (parsed.port == 0 && !allow_port_zero) return Status::InvalidArgument("bad port in '" + text + "'");
  return ResolveInet(parsed, /*passive=*/false, /*allow_names=*/false);
}

std::string FormatAddress(const sockaddr_storage& s) { return FormatSocketAddress(s); }

Result<UniqueFd> OpenUdpSocket(const SocketAddress& local, const std::string& what) {
  UniqueFd fd(socket(local.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno(what + ": socket", errno);
  const int tos = 0xC0;
  if (local.family() == AF_INET) {
    setsockopt(fd.get(), IPPROTO_IP, IP_TOS, &tos, sizeof(tos));
  } else {
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_TCLASS, &tos, sizeof(tos));
  }
  if (bind(fd.get(), local.get(), local.len) != 0) {
    return Status::FromErrno(what + ": bind " + FormatAddress(local.storage), errno);
  }
  return fd;
}

int BoundPort(int fd) {
  sockaddr_storage s{};
  socklen_t len = sizeof(s);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&s), &len) != 0) return 0;
  if (s.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&s)->sin_port);
  if (s.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&s)->sin6_port);
  return 0;
}


}  // namespace tandem::heartbeat
