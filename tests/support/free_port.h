// A port the kernel just handed out on `ip` (free now; the test binds it right after). For tests that must write
// a port into a configuration before the process that binds it starts.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "common/fd.h"

namespace tandem::testing {

inline int FreePort(int type, const char* ip = "127.0.0.1") {
  UniqueFd fd(socket(AF_INET, type, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  inet_pton(AF_INET, ip, &addr.sin_addr);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return 0;
  socklen_t len = sizeof(addr);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

inline int FreeUdpPort(const char* ip) { return FreePort(SOCK_DGRAM, ip); }

}  // namespace tandem::testing
