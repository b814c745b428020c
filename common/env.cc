#include "common/env.h"

#include <time.h>

namespace tandem {
namespace {

int64_t ReadClock(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

class RealClock final : public Clock {
 public:
  // BOOTTIME keeps counting while the host is suspended: a primary that wakes from suspend must see that its
  // lease ran out meanwhile (MONOTONIC would stop and let it believe the lease is still valid).
  int64_t NowNanos() override { return ReadClock(CLOCK_BOOTTIME); }
  int64_t WallNanos() override { return ReadClock(CLOCK_REALTIME); }
  void SleepNanos(int64_t ns) override {
    if (ns <= 0) return;
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
};

}  // namespace

Clock* SystemClock() {
  static RealClock clock;
  return &clock;
}

}  // namespace tandem
