// Wakes a thread blocked in poll(): an eventfd that Wake() makes readable and Drain() empties again.
#pragma once

#include "common/fd.h"
#include "common/status.h"

namespace tandem {

class Waker {
 public:
  // Creates the eventfd (non-blocking, close-on-exec). `what` names the owner in the error.
  Status Open(const char* what);
  bool valid() const { return fd_.valid(); }
  // The descriptor to poll for POLLIN (-1 before Open).
  int fd() const { return fd_.get(); }
  // Safe from any thread; a no-op before Open.
  void Wake();
  // Consumes every pending wake-up, so the next poll blocks again.
  void Drain();
  void Close() { fd_.reset(); }

 private:
  UniqueFd fd_;
};

}  // namespace tandem
