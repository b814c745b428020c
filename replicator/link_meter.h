// How fast the link to the standby drains what the shipper writes, from the socket's send queue: the rate the
// CompressionGovernor weighs against the encoder's. Pure bookkeeping over the numbers it is given (the caller
// reads the queue and the clock), one per connection, sender thread only.
#pragma once

#include <chrono>
#include <cstdint>

#include "replicator/compression_governor.h"

namespace tandem::replicator {

class LinkMeter {
 public:
  // Epochs that leave fewer bytes unsent are not watched while the link drains them (see PollDrain).
  static constexpr uint64_t kMinUnsentToTime = 64 << 10;
  // How often the sender looks at the send queue while it drains, and the shortest drain it times (5 polls: the
  // rate it finds is off by under a fifth).
  static constexpr auto kDrainPoll = std::chrono::milliseconds(1);
  static constexpr int64_t kMinDrainNs = 5'000'000;

  // An epoch of `raw_bytes` was just written: `wire_bytes` in `send_ns` of sends, `busy_ns` since its encoding
  // started, with `queued_before` / `queued_after` bytes in the send queue before and after, at `now_ns`.
  ShipSample EpochWritten(uint64_t raw_bytes, uint64_t wire_bytes, uint64_t send_ns, uint64_t busy_ns,
                          uint64_t queued_before, uint64_t queued_after, int64_t now_ns);
  // While the sender waits for the next epoch and draining() is true: the send queue holds `queued_now` bytes.
  void PollDrain(uint64_t queued_now, int64_t now_ns);
  bool draining() const { return timing_drain_; }

 private:
  int64_t last_epoch_sent_ns_ = 0;  // when the last epoch was written
  uint64_t queued_after_last_epoch_ = 0;  // the send queue then
  bool timing_drain_ = false;        // watching that queue empty (PollDrain)
  uint64_t drained_bytes_per_s_ = 0;  // what PollDrain found, for the next epoch's sample; 0 = nothing
};

}  // namespace tandem::replicator
