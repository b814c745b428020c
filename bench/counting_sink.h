#pragma once

#include "replicator/transport.h"

namespace tandem::bench {

// Counts what the encoder hands over, like a sink in front of an infinitely fast network.
class CountingSink final : public replicator::EpochSink {
 public:
  Status WriteRecord(std::span<const uint8_t> record) override {
    bytes += record.size();
    return Status::Ok();
  }
  Status Flush() override { return Status::Ok(); }
  uint64_t bytes = 0;
};

}  // namespace tandem::bench
