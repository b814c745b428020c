#include "common/fd.h"

#include <cerrno>

namespace tandem {

Status WriteFull(int fd, const void* data, size_t len) {
  auto* p = static_cast<const uint8_t*>(data);
  while (len > 0) {
    ssize_t n = ::write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EPIPE || errno == ECONNRESET) return Status::Closed("peer closed the connection");
      return Status::FromErrno("write", errno);
    }
    p += n;
    len -= size_t(n);
  }
  return Status::Ok();
}

Status ReadFull(int fd, void* data, size_t len) {
  auto* p = static_cast<uint8_t*>(data);
  while (len > 0) {
    ssize_t n = ::read(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ECONNRESET) return Status::Closed("connection reset by peer");
      return Status::FromErrno("read", errno);
    }
    if (n == 0) return Status::Closed("end of stream");
    p += n;
    len -= size_t(n);
  }
  return Status::Ok();
}

}  // namespace tandem
