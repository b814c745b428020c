#include "roles/epoch_interval.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace tandem::roles {
namespace {

constexpr double kSmoothing = 0.25;  // EWMA weight of the newest epoch
// Keep-up: the link must carry an epoch in this share of the interval, leaving room for bursts and acks.
constexpr double kLinkShare = 0.8;
// A bytes-per-second floor relaxes (by kRelax per epoch) only while the rate is under this share of its limit:
// between the two it holds, so that the interval does not flap around the limit.
constexpr double kRelaxBelow = 0.7;
constexpr double kRelax = 0.9;

double Smooth(double average, double sample) { return average + kSmoothing * (sample - average); }

}  // namespace

const char* IntervalReasonName(IntervalReason reason) {
  switch (reason) {
    case IntervalReason::kStart: return "start";
    case IntervalReason::kPaused: return "paused";
    case IntervalReason::kBandwidth: return "bandwidth";
    case IntervalReason::kKeepUp: return "keep-up";
    case IntervalReason::kLatency: return "latency";
    case IntervalReason::kMin: return "min";
    case IntervalReason::kMax: return "max";
  }
  return "?";
}

EpochIntervalController::EpochIntervalController(const AdaptiveEpochOptions& options)
    : o_(options), interval_ms_(std::clamp(options.start_ms, options.min_ms, options.max_ms)) {}

double EpochIntervalController::Feedback(double bound_ms, double rate, double limit, double interval_ms) {
  if (rate > limit) return std::max(bound_ms, interval_ms * std::min(2.0, 1.25 * rate / limit));
  if (rate < kRelaxBelow * limit) return bound_ms * kRelax;
  return bound_ms;
}

int EpochIntervalController::Next(const EpochSample& sample) {
  const double interval = double(sample.interval_ns) / 1e6, pause = double(sample.pause_ns) / 1e6;
  const double wire = double(sample.raw_bytes) * sample.wire_ratio;
  const double wire_per_s = interval > 0 ? wire * 1e3 / interval : 0;
  if (!seen_) {
    pause_ms_ = pause, wire_bytes_ = wire, wire_per_s_ = wire_per_s;
    seen_ = true;
  } else {
    pause_ms_ = Smooth(pause_ms_, pause);
    wire_bytes_ = Smooth(wire_bytes_, wire);
    wire_per_s_ = Smooth(wire_per_s_, wire_per_s);
  }
  if (sample.link_bytes_per_s > 0) link_bytes_per_s_ = sample.link_bytes_per_s;
  last_paused_percent_ = interval > 0 ? 100.0 * pause / interval : 0;

  // Lower bounds: the shortest interval each limit allows.
  double target = o_.min_ms;
  IntervalReason reason = IntervalReason::kMin;
  if (o_.max_paused_percent < 100) {
    const double floor = pause_ms_ * 100.0 / o_.max_paused_percent;
    if (floor > target) target = floor, reason = IntervalReason::kPaused;
  }
  if (o_.max_link_bytes_per_s > 0) {
    bandwidth_floor_ms_ = Feedback(bandwidth_floor_ms_, wire_per_s_, double(o_.max_link_bytes_per_s), interval);
    if (bandwidth_floor_ms_ > target) target = bandwidth_floor_ms_, reason = IntervalReason::kBandwidth;
  }
  // The upper bound: a held frame's longest wait.
  const double ship_ms = link_bytes_per_s_ > 0 ? wire_bytes_ * 1e3 / double(link_bytes_per_s_) : 0;
  last_latency_ms_ = interval + pause_ms_ + ship_ms;
  if (o_.max_output_latency_ms > 0) {
    const double cap = double(o_.max_output_latency_ms) - pause_ms_ - ship_ms;
    if (target > cap) target = cap, reason = IntervalReason::kLatency;
  }
  // Keep-up overrides the latency cap: an epoch the link cannot carry in time delays every later one.
  if (link_bytes_per_s_ > 0) {
    keep_up_floor_ms_ = Feedback(keep_up_floor_ms_, wire_per_s_, kLinkShare * double(link_bytes_per_s_), interval);
    if (keep_up_floor_ms_ > target) target = keep_up_floor_ms_, reason = IntervalReason::kKeepUp;
  }
  if (target < o_.min_ms) target = o_.min_ms, reason = IntervalReason::kMin;
  if (target > o_.max_ms) target = o_.max_ms, reason = IntervalReason::kMax;
  target = std::clamp(target, interval_ms_ / 2.0, interval_ms_ * 2.0);
  interval_ms_ = std::clamp(int(std::lround(target)), o_.min_ms, o_.max_ms);
  reason_ = reason;
  return interval_ms_;
}

std::string EpochIntervalController::Describe() const {
  char why[160];
  switch (reason_) {
    case IntervalReason::kPaused:
      std::snprintf(why, sizeof why, "paused %.1f%%, limit %g%%", last_paused_percent_, o_.max_paused_percent);
      break;
    case IntervalReason::kBandwidth:
      std::snprintf(why, sizeof why, "%.1f MiB/s on the link, limit %.1f", wire_per_s_ / 1048576.0,
                    double(o_.max_link_bytes_per_s) / 1048576.0);
      break;
    case IntervalReason::kKeepUp:
      std::snprintf(why, sizeof why, "%.1f MiB/s of epochs, the link carries %.1f", wire_per_s_ / 1048576.0,
                    double(link_bytes_per_s_) / 1048576.0);
      break;
    case IntervalReason::kLatency:
      std::snprintf(why, sizeof why, "output latency %.0f ms, limit %d", last_latency_ms_, o_.max_output_latency_ms);
      break;
    default:
      std::snprintf(why, sizeof why, "%s", IntervalReasonName(reason_));
  }
  return std::to_string(interval_ms_) + " ms (" + why + ")";
}

CheckpointPacer::CheckpointPacer(const AdaptiveEpochOptions& options, Clock* clock)
    : controller_(options), clock_(clock), max_ms_(options.max_ms), logged_ms_(controller_.interval_ms()) {}

void CheckpointPacer::Started() { last_trigger_ns_ = previous_trigger_ns_ = clock_->NowNanos(); }

Status CheckpointPacer::WaitAndTrigger(const std::function<bool()>& stop,
                                       const std::function<Status(int delay_ms)>& trigger) {
  constexpr int64_t kSliceNs = 20'000'000;
  const int64_t due = last_trigger_ns_ + int64_t(controller_.interval_ms()) * 1'000'000;
  for (int64_t left = due - clock_->NowNanos(); left > 0 && !early_.exchange(false); left = due - clock_->NowNanos()) {
    if (stop()) return Status::Ok();
    clock_->SleepNanos(std::min(left, kSliceNs));
  }
  early_.store(false);  // this checkpoint answers every request so far
  previous_trigger_ns_ = last_trigger_ns_;
  last_trigger_ns_ = clock_->NowNanos();
  return trigger(qemu_delay_ms());
}

bool CheckpointPacer::Observe(int64_t pause_ns, uint64_t raw_bytes, double wire_ratio, uint64_t link_bytes_per_s) {
  EpochSample sample;
  sample.interval_ns = last_trigger_ns_ - previous_trigger_ns_;
  sample.pause_ns = pause_ns;
  sample.raw_bytes = raw_bytes;
  sample.wire_ratio = wire_ratio;
  sample.link_bytes_per_s = link_bytes_per_s;
  if (sample.interval_ns <= 0) return false;  // nothing was triggered since Started()
  const int next = controller_.Next(sample);
  // One line per change of state: a new reason, or the interval moved by a quarter since the last line.
  if (controller_.reason() == logged_reason_ && 4 * std::abs(next - logged_ms_) < logged_ms_) return false;
  logged_ms_ = next;
  logged_reason_ = controller_.reason();
  return true;
}

}  // namespace tandem::roles
