// What every failover test checks of the guest the standby resumed.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include "tests/integration/cluster.h"

namespace tandem::testing {

// Largest step between consecutive counter lines: how far the counter moves between two prints.
inline uint64_t PrintStep(const std::vector<CounterLine>& lines) {
  uint64_t step = 1;
  for (size_t i = 1; i < lines.size(); ++i) step = std::max(step, lines[i].counter - lines[i - 1].counter);
  return step;
}

inline void ExpectResumedConsistently(const Cluster& c, uint64_t counter_before, uint64_t step) {
  ASSERT_TRUE(c.WaitFor("standby", 20000, [](const nlohmann::json& s) { return s.value("state", "") == "active"; }))
      << c.Diagnostics();
  std::vector<CounterLine> after;
  for (int i = 0; i < 100 && after.size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = c.Counters("standby");
  }
  ASSERT_GE(after.size(), 3u) << "resumed guest prints no counters" << c.Diagnostics();
  const std::string serial = c.Serial("standby");
  EXPECT_EQ(serial.find("tandem-guest boot"), std::string::npos) << "resumed guest rebooted" << c.Diagnostics();
  EXPECT_EQ(serial.find("INVARIANT BROKEN"), std::string::npos) << "mixed-epoch state" << c.Diagnostics();
  for (size_t i = 1; i < after.size(); ++i) EXPECT_GT(after[i].counter, after[i - 1].counter);
  // The first counter after resume continues from where the primary was, give or take one print interval on
  // each side (the guest prints a few times a second; an epoch is far shorter than that).
  EXPECT_GE(after[0].counter + 2 * step, counter_before) << c.Diagnostics();
  EXPECT_LE(after[0].counter, counter_before + 2 * step) << c.Diagnostics();
}

}  // namespace tandem::testing
