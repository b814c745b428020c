// Shared between the socket engines; not part of the replicator's public API.
#pragma once

#include <sys/uio.h>

#include <memory>

#include "common/fd.h"
#include "replicator/transport.h"

namespace tandem::replicator {

// Waits for `events` on fd. Ok when ready (or hung up: the next call reports it), Timeout otherwise.
Status PollFor(int fd, short events, int timeout_ms, const char* what);

// Consumes n sent bytes from iov[*first..count), advancing *first past exhausted entries.
void AdvanceIov(iovec* iov, size_t count, size_t* first, size_t n);

// `fd` is non-blocking already.
std::unique_ptr<Transport> MakePollTransport(UniqueFd fd);

// Waits (polling SIOCOUTQ every millisecond) until the socket's send queue is empty: what both engines'
// WaitSent() means by "the bytes have left".
Status WaitSendQueueEmpty(int fd, int timeout_ms);
// SIOCOUTQ: what QueuedBytes() returns for a socket (0 when the ioctl fails).
uint64_t SendQueueBytes(int fd);
// io_uring engine; when it cannot be set up (old kernel, RLIMIT_MEMLOCK) logs why and returns the poll engine,
// unless `required`, in which case the error is returned.
Result<std::unique_ptr<Transport>> MakeUringTransportOrFallback(UniqueFd fd, bool required);

}  // namespace tandem::replicator
