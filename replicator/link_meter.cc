#include "replicator/link_meter.h"

namespace tandem::replicator {

ShipSample LinkMeter::EpochWritten(uint64_t raw_bytes, uint64_t wire_bytes, uint64_t send_ns, uint64_t busy_ns,
                                   uint64_t queued_before, uint64_t queued_after, int64_t now) {
  ShipSample sample;
  sample.raw_bytes = raw_bytes;
  sample.wire_bytes = wire_bytes;
  sample.send_ns = send_ns;
  sample.encode_ns = busy_ns > send_ns ? busy_ns - send_ns : 0;
  // Only the sender adds to the send queue. Still non-empty when this epoch started, so it never emptied since
  // the last epoch was written: the link was busy all that time, and what it drained is its rate. An emptied
  // queue says only that the link is faster than what it was given: no sample.
  const uint64_t queued_then = queued_after_last_epoch_ + wire_bytes;
  if (last_epoch_sent_ns_ != 0 && queued_before > 0 && queued_after > 0 && queued_then > queued_after &&
      now > last_epoch_sent_ns_) {
    sample.link_bytes_per_s = (queued_then - queued_after) * 1'000'000'000 / uint64_t(now - last_epoch_sent_ns_);
  }
  // Else the rate PollDrain measured after the epoch before, if it did: a link that idles between epochs.
  if (sample.link_bytes_per_s == 0) sample.link_bytes_per_s = drained_bytes_per_s_;
  drained_bytes_per_s_ = 0;
  last_epoch_sent_ns_ = now;
  queued_after_last_epoch_ = queued_after;
  timing_drain_ = queued_after >= kMinUnsentToTime;
  return sample;
}

// A slow link that idles between epochs: the queue empties before the next epoch, so EpochWritten sees no rate,
// yet the standby waited on the link for the part of each epoch still unsent when its sends were done. The time
// that part takes to leave says how fast the link is: the sender looks at the queue every kDrainPoll while it
// waits for the next epoch (only then: when the next epoch comes first, EpochWritten measures).
void LinkMeter::PollDrain(uint64_t queued_now, int64_t now) {
  if (queued_now > 0) return;
  timing_drain_ = false;
  const int64_t took = now - last_epoch_sent_ns_;
  if (took >= kMinDrainNs) drained_bytes_per_s_ = queued_after_last_epoch_ * 1'000'000'000 / uint64_t(took);
}

}  // namespace tandem::replicator
