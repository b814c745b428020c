#include "common/waker.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>

namespace tandem {

Status Waker::Open(const char* what) {
  fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  return fd_.valid() ? Status::Ok() : Status::FromErrno(std::string(what) + ": eventfd", errno);
}

void Waker::Wake() {
  if (!fd_.valid()) return;
  const uint64_t one = 1;
  ssize_t ignored = ::write(fd_.get(), &one, sizeof(one));
  (void)ignored;  // EAGAIN: the counter is saturated, the thread is woken anyway
}

void Waker::Drain() {
  if (!fd_.valid()) return;
  uint64_t drained;
  while (::read(fd_.get(), &drained, sizeof(drained)) > 0) {
  }
}

}  // namespace tandem
