// The host environment behind a seam, so tests can drive time (LevelDB's Env, reduced to what tandem needs).
#pragma once

#include <atomic>
#include <cstdint>

namespace tandem {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds; never goes backwards.
  virtual int64_t NowNanos() = 0;
  // Wall-clock nanoseconds since the epoch (for logs and heartbeat timestamps only, never for timeouts).
  virtual int64_t WallNanos() = 0;
  virtual void SleepNanos(int64_t ns) = 0;

  int64_t NowMillis() { return NowNanos() / 1'000'000; }
};

// The process-wide real clock (CLOCK_BOOTTIME: monotonic, and counts suspend / CLOCK_REALTIME).
Clock* SystemClock();

// A clock that only moves when told to; SleepNanos advances it. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_ns = 1'000'000'000) : now_(start_ns) {}
  int64_t NowNanos() override { return now_.load(); }
  int64_t WallNanos() override { return now_.load(); }
  void SleepNanos(int64_t ns) override { now_.fetch_add(ns); }
  void Advance(int64_t ns) { now_.fetch_add(ns); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace tandem
