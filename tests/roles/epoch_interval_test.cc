#include "roles/epoch_interval.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

namespace tandem::roles {
namespace {

// A guest that rewrites a working set: in an interval of T ms it dirties working_set x (1 - e^(-rate T /
// working_set)) pages (a page rewritten twice in one epoch is sent once), and a checkpoint pauses it for
// fixed + per_page x pages.
struct Workload {
  double working_set_pages = 20000;
  double pages_per_ms = 200;
  double fixed_pause_ms = 0.5;
  double pause_ms_per_page = 0.002;
  double wire_ratio = 0.3;
  uint64_t link_bytes_per_s = 0;

  double Pages(double interval_ms) const {
    return working_set_pages * (1 - std::exp(-pages_per_ms * interval_ms / working_set_pages));
  }
  EpochSample Run(int interval_ms) const {
    const double pages = Pages(interval_ms);
    EpochSample s;
    s.interval_ns = int64_t(interval_ms) * 1'000'000;
    s.pause_ns = int64_t((fixed_pause_ms + pause_ms_per_page * pages) * 1e6);
    s.raw_bytes = uint64_t(pages * 4096);
    s.wire_ratio = wire_ratio;
    s.link_bytes_per_s = link_bytes_per_s;
    return s;
  }
  double PausedPercent(int interval_ms) const {
    return 100.0 * (fixed_pause_ms + pause_ms_per_page * Pages(interval_ms)) / interval_ms;
  }
  double WirePerSecond(int interval_ms) const { return Pages(interval_ms) * 4096 * wire_ratio * 1e3 / interval_ms; }
};

// Runs `epochs` epochs of `w` under `c`, each at the interval the previous one chose.
int Settle(EpochIntervalController& c, const Workload& w, int epochs = 80) {
  int interval = c.interval_ms();
  for (int i = 0; i < epochs; ++i) interval = c.Next(w.Run(interval));
  return interval;
}

TEST(EpochIntervalTest, AnIdleGuestRunsAtTheShortestIntervalAllowed) {
  EpochIntervalController c({.min_ms = 10, .max_ms = 1000, .start_ms = 100});
  Workload idle;
  idle.pages_per_ms = 0.05;
  idle.fixed_pause_ms = 0.2;
  EXPECT_EQ(Settle(c, idle), 10);
  EXPECT_EQ(c.reason(), IntervalReason::kMin);
}

TEST(EpochIntervalTest, ABusyGuestGetsTheShortestIntervalThatKeepsThePausedShareUnderItsLimit) {
  EpochIntervalController c({.min_ms = 10, .max_ms = 1000, .start_ms = 10, .max_paused_percent = 5});
  Workload busy;
  const int interval = Settle(c, busy);
  EXPECT_EQ(c.reason(), IntervalReason::kPaused) << c.Describe();
  EXPECT_LE(busy.PausedPercent(interval), 5.3) << interval;
  // The shortest such interval: 15% shorter would pause the VM more than the limit allows.
  EXPECT_GT(busy.PausedPercent(int(interval * 0.85)), 5.0) << interval;
  // At the 10 ms it started from, the same guest was paused far more.
  EXPECT_GT(busy.PausedPercent(10), 20.0);
}

TEST(EpochIntervalTest, TheLatencyLimitCapsTheIntervalAboveThePausedShare) {
  Workload busy;
  EpochIntervalController paused_only({.start_ms = 50, .max_paused_percent = 2});
  const int without_cap = Settle(paused_only, busy);
  EpochIntervalController capped({.start_ms = 50, .max_paused_percent = 2, .max_output_latency_ms = 60});
  const int interval = Settle(capped, busy);
  EXPECT_GT(without_cap, 60);
  EXPECT_EQ(capped.reason(), IntervalReason::kLatency) << capped.Describe();
  // interval + pause (no link measured: nothing on it) within the limit.
  const EpochSample s = busy.Run(interval);
  EXPECT_LE(interval + s.pause_ns / 1e6, 60.5);
  EXPECT_GE(interval + s.pause_ns / 1e6, 55.0);
}

TEST(EpochIntervalTest, ALinkThatCannotCarryTheEpochsLengthensTheIntervalEvenPastTheLatencyLimit) {
  Workload busy;
  busy.working_set_pages = 2000;    // 8 MiB rewritten over and over: ~2.3 MiB/s on the wire at 1 s epochs
  busy.link_bytes_per_s = 8 << 20;  // 8 MiB/s: at 50 ms the epochs need ~47 MiB/s
  ASSERT_GT(busy.WirePerSecond(50), 0.8 * busy.link_bytes_per_s);
  EpochIntervalController c({.start_ms = 50, .max_paused_percent = 100, .max_output_latency_ms = 60});
  const int interval = Settle(c, busy, 200);
  EXPECT_EQ(c.reason(), IntervalReason::kKeepUp) << c.Describe();
  EXPECT_LE(busy.WirePerSecond(interval), 0.8 * busy.link_bytes_per_s) << interval;
  EXPECT_GT(interval, 60);
}

TEST(EpochIntervalTest, ABandwidthLimitKeepsTheEpochsBytesPerSecondUnderIt) {
  Workload busy;
  busy.working_set_pages = 2000;
  const uint64_t limit = 4 << 20;
  ASSERT_GT(busy.WirePerSecond(20), double(limit));
  EpochIntervalController c({.start_ms = 20, .max_paused_percent = 100, .max_link_bytes_per_s = limit});
  int interval = c.interval_ms();
  int over = 0;
  for (int i = 0; i < 200; ++i) {
    interval = c.Next(busy.Run(interval));
    if (i >= 100 && busy.WirePerSecond(interval) > double(limit)) ++over;
  }
  EXPECT_EQ(over, 0) << c.Describe();
  EXPECT_EQ(c.reason(), IntervalReason::kBandwidth) << c.Describe();
}

TEST(EpochIntervalTest, TheIntervalMovesAtMostTwofoldPerEpochAndStaysWithinItsBounds) {
  EpochIntervalController c({.min_ms = 10, .max_ms = 300, .start_ms = 10, .max_paused_percent = 1});
  Workload heavy;
  heavy.fixed_pause_ms = 20;  // wants 2 s at 1% paused
  int previous = c.interval_ms();
  for (int i = 0; i < 20; ++i) {
    const int next = c.Next(heavy.Run(previous));
    EXPECT_LE(next, 2 * previous);
    EXPECT_LE(next, 300);
    previous = next;
  }
  EXPECT_EQ(previous, 300);
  EXPECT_EQ(c.reason(), IntervalReason::kMax);
}

TEST(EpochIntervalTest, TheIntervalComesBackDownWhenTheGuestCalms) {
  EpochIntervalController c({.min_ms = 10, .max_ms = 1000, .start_ms = 10, .max_link_bytes_per_s = 4 << 20});
  Workload busy, idle;
  idle.pages_per_ms = 0.05;
  idle.fixed_pause_ms = 0.2;
  EXPECT_GT(Settle(c, busy, 100), 40);
  EXPECT_EQ(Settle(c, idle, 100), 10) << c.Describe();
}

}  // namespace
}  // namespace tandem::roles
