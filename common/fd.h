// Small owning wrappers and byte helpers shared by every module.
#pragma once

#include <unistd.h>

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>

#include "common/status.h"

namespace tandem {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Blocking full read/write helpers (retry on EINTR and short transfers). ReadFull returns Closed on EOF.
Status WriteFull(int fd, const void* data, size_t len);
Status ReadFull(int fd, void* data, size_t len);

// Big-endian (QEMU's wire) and little-endian (tandem's wire) loads and stores.
inline uint16_t LoadBe16(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint32_t LoadBe32(const uint8_t* p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
}
inline uint64_t LoadBe64(const uint8_t* p) { return uint64_t(LoadBe32(p)) << 32 | LoadBe32(p + 4); }
inline void StoreBe32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24), p[1] = uint8_t(v >> 16), p[2] = uint8_t(v >> 8), p[3] = uint8_t(v);
}
inline void StoreBe64(uint8_t* p, uint64_t v) { StoreBe32(p, uint32_t(v >> 32)), StoreBe32(p + 4, uint32_t(v)); }

// Little-endian: memcpy (no alignment or aliasing assumptions), swapped only on a big-endian host.
template <typename T>
inline T LittleEndian(T v) {
  if constexpr (std::endian::native == std::endian::big) {
    if constexpr (sizeof(T) == 8) return T(__builtin_bswap64(v));
    if constexpr (sizeof(T) == 4) return T(__builtin_bswap32(v));
  }
  return v;
}
inline uint32_t LoadLe32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, sizeof(v));
  return LittleEndian(v);
}
inline uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
  return LittleEndian(v);
}
inline void StoreLe32(uint8_t* p, uint32_t v) {
  v = LittleEndian(v);
  memcpy(p, &v, sizeof(v));
}
inline void StoreLe64(uint8_t* p, uint64_t v) {
  v = LittleEndian(v);
  memcpy(p, &v, sizeof(v));
}

}  // namespace tandem
