#include "common/net_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstring>

namespace tandem {
namespace {

constexpr std::string_view kUnixPrefix = "unix:";

Status Bad(std::string_view text, const std::string& what) {
  return Status::InvalidArgument("address '" + std::string(text) + "' " + what);
}

}  // namespace

bool IsUnixAddress(std::string_view text) { return text.substr(0, kUnixPrefix.size()) == kUnixPrefix; }

Status MakeUnixSockaddr(std::string_view path, sockaddr_un* out) {
  if (path.empty()) return Status::InvalidArgument("empty socket path");
  *out = {};
  out->sun_family = AF_UNIX;
  if (path.size() >= sizeof(out->sun_path)) {
    return Status::InvalidArgument("socket path is " + std::to_string(path.size()) + " bytes, longer than the " +
                                   std::to_string(sizeof(out->sun_path) - 1) + " a unix socket address holds");
  }
  if (path.find('\0') != std::string_view::npos) return Status::InvalidArgument("socket path has a NUL");
  memcpy(out->sun_path, path.data(), path.size());
  return Status::Ok();
}

Result<NetAddress> ParseNetAddress(std::string_view text) {
  NetAddress a;
  if (IsUnixAddress(text)) {
    a.is_unix = true;
    a.path = std::string(text.substr(kUnixPrefix.size()));
    sockaddr_un check;
    if (Status st = MakeUnixSockaddr(a.path, &check); !st.ok()) {
      return Status::InvalidArgument("address '" + std::string(text) + "': " + st.message());
    }
    return a;
  }
  size_t colon;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return Bad(text, "is not [ipv6]:port");
    }
    a.host = std::string(text.substr(1, close - 1));
    a.ipv6 = true;
    colon = close + 1;
  } else {
    colon = text.rfind(':');
    if (colon == std::string_view::npos) return Bad(text, "is not host:port");
    a.host = std::string(text.substr(0, colon));
    if (a.host.find(':') != std::string::npos) return Bad(text, "has an IPv6 host without [brackets]");
    if (a.host == "*") a.host.clear();
  }
  const std::string_view port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5) return Bad(text, "has a bad port");
  uint32_t value = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return Bad(text, "has a bad port");
    value = value * 10 + uint32_t(c - '0');
  }
  if (value > 65535) return Bad(text, "has a bad port");
  a.port = uint16_t(value);
  return a;
}

Result<SocketAddress> ResolveInet(const NetAddress& address, bool passive, bool allow_names) {
  SocketAddress out;
  if (address.ipv6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&out.storage);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(address.port);
    if (inet_pton(AF_INET6, address.host.c_str(), &in6->sin6_addr) != 1) {
      return Status::InvalidArgument("bad IPv6 address '" + address.host + "'");
    }
    out.len = sizeof(sockaddr_in6);
    return out;
  }
  auto* in4 = reinterpret_cast<sockaddr_in*>(&out.storage);
  in4->sin_family = AF_INET;
  in4->sin_port = htons(address.port);
  out.len = sizeof(sockaddr_in);
  if (address.host.empty()) {
    in4->sin_addr.s_addr = passive ? htonl(INADDR_ANY) : htonl(INADDR_LOOPBACK);
    return out;
  }
  if (inet_pton(AF_INET, address.host.c_str(), &in4->sin_addr) == 1) return out;
  if (!allow_names) {
    return Status::InvalidArgument("bad IPv4 address '" + address.host + "' (numeric ip:port expected)");
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(address.host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return Status::InvalidArgument("cannot resolve " + address.host + ": " + gai_strerror(rc));
  }
  in4->sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
  freeaddrinfo(res);
  return out;
}

std::string FormatSocketAddress(const sockaddr_storage& s) {
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

}  // namespace tandem
