// The one grammar for the addresses tandem is given (replication streams, heartbeats, the witness):
//
//   "unix:/path.sock"  a unix stream socket; the path is at most 107 bytes (sun_path holds 108 with its NUL)
//   "host:port"        host: empty or "*" (any address / loopback), an IPv4 literal, or a name
//   "[v6]:port"        an IPv6 literal
//
// port is 1 to 5 decimal digits up to 65535. Whether names, port 0 or unix sockets are acceptable is the
// caller's to say: ParseNetAddress only checks the grammar, ResolveInet turns a host into a socket address.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace tandem {

struct NetAddress {
  bool is_unix = false;
  std::string path;   // is_unix: the socket path
  std::string host;   // otherwise: as written, without brackets; empty for "" and "*"
  bool ipv6 = false;  // host was a bracketed IPv6 literal
  uint16_t port = 0;
};

bool IsUnixAddress(std::string_view text);
// InvalidArgument naming `text` and what is wrong with it.
Result<NetAddress> ParseNetAddress(std::string_view text);

// The sockaddr_un of a socket path: InvalidArgument when it is empty, has a NUL, or does not fit.
Status MakeUnixSockaddr(std::string_view path, sockaddr_un* out);

struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t len = 0;
  int family() const { return storage.ss_family; }
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
};

// The socket address of an inet NetAddress. An empty host is the any address when `passive` (to bind), else
// loopback. Names are looked up (IPv4) only when `allow_names`: heartbeats never wait on DNS.
Result<SocketAddress> ResolveInet(const NetAddress& address, bool passive, bool allow_names);
// "1.2.3.4:80", "[::1]:80".
std::string FormatSocketAddress(const sockaddr_storage& address);

}  // namespace tandem
