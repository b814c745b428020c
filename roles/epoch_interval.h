// epoch_ms = "auto": the primary chooses the checkpoint interval per epoch from what it measures.
//
// Every interval is a trade: a short one loses less on a failover (the recovery point is at most one interval
// plus the time to ship it) and holds the guest's output for less time (output commit releases a frame only
// when its epoch is acknowledged), a long one pauses the VM less often and ships less (a page rewritten ten
// times in an epoch is sent once). The controller takes the SHORTEST interval that keeps every limit:
//
//   paused      the share of time the VM stands paused for checkpoints   <= max_paused_percent
//               a checkpoint's pause grows with the pages it carries, but more slowly than the interval
//               (pages rewritten within an epoch count once), so   interval >= pause / max_paused_fraction
//   bandwidth   the wire bytes per second the epochs cost                  <= max_link_mib_s (if set)
//   keep-up     the link carries each epoch within the next interval      wire bytes/s <= 0.8 x link rate
//               (else the unacknowledged epochs pile up: the recovery point and the output latency grow
//               without bound); bytes per second fall as the interval grows, so both are lower bounds,
//               found by feedback (the interval grows while they are exceeded, shrinks back while they are
//               well under)
//   latency     a frame waits at most one interval + the pause + the epoch's time on the link
//               <= max_output_latency_ms (if set): an upper bound
//
// When the limits conflict, keep-up wins (without it every other figure degrades without bound), then the
// latency limit (a promise to the guest's clients), then bandwidth and pause. Measurements are smoothed
// (EWMA) and the interval moves at most x2 or /2 per epoch, always within [min_ms, max_ms].
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "common/env.h"
#include "common/status.h"

namespace tandem::roles {

struct AdaptiveEpochOptions {
  int min_ms = 10;
  int max_ms = 1000;
  int start_ms = 50;               // the first epochs' interval, before anything is measured
  double max_paused_percent = 5;   // always a limit (100: none)
  int max_output_latency_ms = 0;   // 0: none
  uint64_t max_link_bytes_per_s = 0;  // 0: none
};

// What one epoch cost, as the primary's checkpoint loop measured it.
struct EpochSample {
  int64_t interval_ns = 0;  // from the previous checkpoint's trigger to this one's (run time + pause)
  int64_t pause_ns = 0;     // the VM stood paused for it
  uint64_t raw_bytes = 0;   // pages x 4096 + device state
  double wire_ratio = 1;    // wire bytes / raw bytes of the epochs shipped so far (the codec's ratio)
  uint64_t link_bytes_per_s = 0;  // the link's drain rate when last seen busy (0: never busy, unknown)
};

// Which limit set the interval last (for the log line and `tandem status`).
enum class IntervalReason { kStart, kPaused, kBandwidth, kKeepUp, kLatency, kMin, kMax };
const char* IntervalReasonName(IntervalReason reason);

class EpochIntervalController {
 public:
  explicit EpochIntervalController(const AdaptiveEpochOptions& options);

  // Folds in one epoch and returns the interval for the next one, in ms.
  int Next(const EpochSample& sample);
  int interval_ms() const { return interval_ms_; }
  IntervalReason reason() const { return reason_; }
  // e.g. "80 ms (paused 6.2%, limit 5%)": why the interval is what it is.
  std::string Describe() const;

 private:
  // Feedback on a bytes-per-second limit: a lower bound on the interval that grows while `rate` exceeds
  // `limit` and relaxes while it is well under.
  static double Feedback(double bound_ms, double rate, double limit, double interval_ms);

  const AdaptiveEpochOptions o_;
  int interval_ms_;
  IntervalReason reason_ = IntervalReason::kStart;
  bool seen_ = false;
  double pause_ms_ = 0;         // EWMA
  double wire_bytes_ = 0;       // EWMA, per epoch
  double wire_per_s_ = 0;       // EWMA, wire bytes per second of interval
  double bandwidth_floor_ms_ = 0;
  double keep_up_floor_ms_ = 0;
  double last_paused_percent_ = 0, last_latency_ms_ = 0;
  uint64_t link_bytes_per_s_ = 0;
};

// Starts the checkpoints of epoch_ms = "auto" (QEMU's own timer keeps one interval). QEMU 7.2 checkpoints at
// once when x-checkpoint-delay is set while in COLO, and re-arms its timer to that many ms later: the pacer sets
// it when a checkpoint is due, to a backstop (2 x max_ms) that fires only if this loop stalls. A checkpoint is
// triggered only after the previous one resumed the VM, so no trigger lands inside a checkpoint (where QEMU
// would count it for the next one and checkpoint twice in a row).
class CheckpointPacer {
 public:
  CheckpointPacer(const AdaptiveEpochOptions& options, Clock* clock);

  // QEMU's x-checkpoint-delay: when the migration starts and at every trigger.
  int qemu_delay_ms() const { return 2 * max_ms_; }
  // The VM runs towards its first checkpoint from now (CHECKPOINT_READY).
  void Started();
  // Waits until the next checkpoint is due or one was asked for early, calling `stop` every few ms (true:
  // return without triggering), then `trigger(qemu_delay_ms())`.
  // The VM must be running (its last checkpoint resumed): a checkpoint QEMU started on its own would keep the VM
  // paused through this wait.
  Status WaitAndTrigger(const std::function<bool()>& stop, const std::function<Status(int delay_ms)>& trigger);
  // The checkpoint just triggered resumed the VM after `pause_ns`; it carried `raw_bytes`. Picks the next
  // interval; true when it changed enough to be worth a log line (Describe()).
  bool Observe(int64_t pause_ns, uint64_t raw_bytes, double wire_ratio, uint64_t link_bytes_per_s);
  // From any thread (the disk's, when an epoch's writes fill their buffer): the next checkpoint at once. A
  // request that comes while a checkpoint is already under way still starts one more right after it (a short
  // epoch, never a trigger inside a checkpoint).
  void RequestEarly() { early_.store(true); }
  int interval_ms() const { return controller_.interval_ms(); }
  std::string Describe() const { return controller_.Describe(); }

 private:
  EpochIntervalController controller_;
  Clock* clock_;
  const int max_ms_;
  std::atomic<bool> early_{false};
  int64_t last_trigger_ns_ = 0, previous_trigger_ns_ = 0;
  int logged_ms_ = 0;
  IntervalReason logged_reason_ = IntervalReason::kStart;
};

}  // namespace tandem::roles
