// Shared by the output-commit tests: a private directory and a stand-in for QEMU's end of the NIC socket.
#pragma once

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/net_address.h"
#include "tests/support/temp_dir.h"

namespace tandem::output_commit {

using ::tandem::testing::TempDir;

inline sockaddr_un UnixAddr(const std::string& path) {
  sockaddr_un a;
  if (!MakeUnixSockaddr(path, &a).ok()) a = sockaddr_un{};
  return a;
}

// A unix datagram socket bound at `path`, non-blocking (what QEMU's dgram netdev is).
inline UniqueFd BoundDgram(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un a = UnixAddr(path);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) fd.reset();
  return fd;
}

// A frame whose first 4 bytes carry `id`, padded to `len` bytes.
inline std::vector<uint8_t> Frame(uint32_t id, size_t len = 64) {
  std::vector<uint8_t> f(len, 0xab);
  std::memcpy(f.data(), &id, sizeof(id));
  return f;
}

// Sends `frame` from `fd` to `path`; returns 0 or errno (EAGAIN when the receiver's queue is full).
inline int SendTo(int fd, const std::string& path, const std::vector<uint8_t>& frame) {
  sockaddr_un a = UnixAddr(path);
  if (::sendto(fd, frame.data(), frame.size(), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0)
    return errno;
  return 0;
}

// Every datagram waiting on `fd` (non-blocking), as the ids Frame() wrote.
inline std::vector<uint32_t> ReceiveIds(int fd) {
  std::vector<uint32_t> ids;
  uint8_t buf[70000];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 4) return ids;
    uint32_t id;
    std::memcpy(&id, buf, sizeof(id));
    ids.push_back(id);
  }
}

}  // namespace tandem::output_commit
