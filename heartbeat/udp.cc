#include "heartbeat/udp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>

namespace tandem::heartbeat {

Result<SocketAddress> ParseAddress(const std::string& text, bool allow_port_zero) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return Status::InvalidArgument("address '" + text + "' is not ip:port");
  }
  std::string host = text.substr(0, colon);
  const std::string port_text = text.substr(colon + 1);
  int port = 0;
  for (char c : port_text) {
    if (c < '0' || c > '9' || port > 65535) return Status::InvalidArgument("bad port in '" + text + "'");
    port = port * 10 + (c - '0');
  }
  if (port > 65535 || (port == 0 && !allow_port_zero)) return Status::InvalidArgument("bad port in '" + text + "'");
  SocketAddress addr;
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&addr.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(uint16_t(port));
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &in6->sin6_addr) != 1) {
      return Status::InvalidArgument("bad IPv6 address in '" + text + "'");
    }
    addr.len = sizeof(sockaddr_in6);
  } else {
    auto* in4 = reinterpret_cast<sockaddr_in*>(&addr.storage);
    in4->sin_family = AF_INET;
    in4->sin_port = htons(uint16_t(port));
    if (inet_pton(AF_INET, host.c_str(), &in4->sin_addr) != 1) {
      return Status::InvalidArgument("bad IPv4 address in '" + text + "' (numeric ip:port expected)");
    }
    addr.len = sizeof(sockaddr_in);
  }
  return addr;
}

std::string FormatAddress(const sockaddr_storage& s) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (s.ss_family == AF_INET) {
    const auto* in4 = reinterpret_cast<const sockaddr_in*>(&s);
    inet_ntop(AF_INET, &in4->sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(in4->sin_port));
  }
  if (s.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&s);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "?";
}

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

uint64_t RandomIncarnation(Clock* clock) {
  uint64_t v = 0;
  for (int attempt = 0; attempt < 4 && v == 0; ++attempt) {
    if (getrandom(&v, sizeof(v), 0) != ssize_t(sizeof(v))) v = 0;
  }
  if (v == 0) {
    // No entropy source: still unique enough per start (pid and time), never 0.
    v = uint64_t(clock->WallNanos()) * 0x9E3779B97F4A7C15ull ^ uint64_t(getpid());
    if (v == 0) v = 1;
  }
  return v;
}

}  // namespace tandem::heartbeat
