#include "common/log.h"
#include "replicator/transport_internal.h"

namespace tandem::replicator {

Result<std::unique_ptr<Transport>> MakeUringTransportOrFallback(UniqueFd fd, bool required) {
  if (required) return Status::Unsupported("the io_uring engine is not built yet");
  return MakePollTransport(std::move(fd));
}

}  // namespace tandem::replicator
