// End to end: real tandem processes, real QEMU under KVM running the project's bare-metal guest, real kill -9.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include "tests/integration/cluster.h"
#include "tests/integration/resume_checks.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

#define REQUIRE_KVM() TANDEM_REQUIRE_KVM()

// The bare-metal guest's firmware boot takes seconds under this machine's nested KVM: wait until it prints.
void WaitForGuestCounters(const Cluster& c, const char* role, size_t lines) {
  for (int i = 0; i < 400 && c.Counters(role).size() < lines; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_GE(c.Counters(role).size(), lines) << role << " guest prints no counters" << c.Diagnostics();
}

// Starts standby then primary and waits until `epochs` epochs were applied on the standby.
void StartProtected(Cluster& c, uint64_t epochs = 10) {
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 15000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  c.StartPrimary();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [&](const json& s) { return s.value("last_applied", 0u) >= epochs; }))
      << c.Diagnostics();
  WaitForGuestCounters(c, "primary", 3);
}

pid_t QemuPid(const Cluster& c, const char* role) { return pid_t(c.StatusNumber(role, "qemu_pid")); }

TEST(FailoverTest, PrimaryKill9ResumesGuestFromLastAppliedEpoch) {
  REQUIRE_KVM();
  Cluster c;
  StartProtected(c, 20);
  const uint64_t applied_before = c.StatusNumber("standby", "last_applied");
  const pid_t primary = pid_t(c.Status("primary")["pid"].get<int>());
  c.Kill9(QemuPid(c, "primary"));
  c.Kill9(primary);
  std::vector<CounterLine> before = c.Counters("primary");
  ASSERT_GE(before.size(), 2u) << c.Diagnostics();
  for (const CounterLine& l : before) ASSERT_TRUE(l.ok) << c.Diagnostics();
  ExpectResumedConsistently(c, before.back().counter, PrintStep(before));
  const json s = c.Status("standby");
  EXPECT_GE(s["resumed_epoch"].get<uint64_t>(), applied_before);
  EXPECT_EQ(s["resumed_epoch"].get<uint64_t>(), s["last_applied"].get<uint64_t>());
  EXPECT_GT(s["resume_ms"].get<double>(), 0.0);
  EXPECT_NE(c.Log("standby").find("resume_ms="), std::string::npos);
}

// Epochs of 20 ms: shorter than the 30 ms PIT window the guest once calibrated its clock with, which QEMU
// restarts at every checkpoint (the guest never got past it). It boots, runs and fails over as at 50 ms.
TEST(FailoverTest, TwentyMillisecondEpochsBootRunAndFailOver) {
  REQUIRE_KVM();
  Cluster c("", 20);
  StartProtected(c, 20);
  const pid_t primary = pid_t(c.Status("primary")["pid"].get<int>());
  c.Kill9(QemuPid(c, "primary"));
  c.Kill9(primary);
  std::vector<CounterLine> before = c.Counters("primary");
  ASSERT_GE(before.size(), 2u) << c.Diagnostics();
  ExpectResumedConsistently(c, before.back().counter, PrintStep(before));
}

TEST(FailoverTest, PrimaryKilledMidEpochResumesFromPreviousCompleteEpoch) {
  REQUIRE_KVM();
  // The primary SIGKILLs itself (and so its QEMU) half way through shipping epoch 400 (20 s at 50 ms epochs:
  // after the guest's slow firmware boot here).
  Cluster c("[debug]\ndie_mid_epoch = 400\n");
  StartProtected(c, 5);
  ASSERT_TRUE(c.WaitFor("standby", 40000, [](const json& s) { return s.value("state", "") == "active"; }))
      << c.Diagnostics();
  const json s = c.Status("standby");
  EXPECT_EQ(s["resumed_epoch"].get<uint64_t>(), 399u) << c.Diagnostics();
  std::vector<CounterLine> before = c.Counters("primary");
  ASSERT_GE(before.size(), 1u) << c.Diagnostics();
  ExpectResumedConsistently(c, before.back().counter, PrintStep(before));
}

TEST(FailoverTest, CorruptedEpochIsRejectedNeverAppliedAndReplicationRecovers) {
  REQUIRE_KVM();
  Cluster c("[debug]\ncorrupt_epoch = 12\n");
  StartProtected(c, 5);
  // The standby refuses epoch 12, the primary resyncs, and epochs keep being applied after it.
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) {
    return s.value("epochs_rejected", 0u) >= 1 && s.value("last_applied", 0u) >= 20;
  })) << c.Diagnostics();
  EXPECT_NE(c.Log("standby").find("epoch 12"), std::string::npos) << c.Diagnostics();
  EXPECT_NE(c.Log("primary").find("12"), std::string::npos) << "primary was not told why" << c.Diagnostics();
  // And the replica is still consistent: fail over and check the guest.
  const pid_t primary = pid_t(c.Status("primary")["pid"].get<int>());
  c.Kill9(QemuPid(c, "primary"));
  c.Kill9(primary);
  std::vector<CounterLine> before = c.Counters("primary");
  ASSERT_GE(before.size(), 1u);
  ExpectResumedConsistently(c, before.back().counter, PrintStep(before));
}

TEST(FailoverTest, StandbyKilledPrimaryKeepsRunningUnprotectedThenReprotects) {
  REQUIRE_KVM();
  Cluster c;
  StartProtected(c, 5);
  const pid_t standby = pid_t(c.Status("standby")["pid"].get<int>());
  c.Kill9(QemuPid(c, "standby"));
  c.Kill9(standby);
  ASSERT_TRUE(c.WaitFor("primary", 15000, [](const json& s) { return !s.value("protected", true); }))
      << c.Diagnostics();
  const size_t counters_then = c.Counters("primary").size();
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_GT(c.Counters("primary").size(), counters_then) << "primary guest stopped running" << c.Diagnostics();
  EXPECT_NE(c.Log("primary").find("UNPROTECTED"), std::string::npos) << c.Diagnostics();
  // A standby that comes back is resynced in full and protection resumes.
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("primary", 30000, [](const json& s) { return s.value("protected", false); }))
      << c.Diagnostics();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("last_applied", 0u) > 0; }))
      << c.Diagnostics();
}

TEST(FailoverTest, GuestCrashIsReportedAndIsNoReasonToFailOver) {
  REQUIRE_KVM();
  // The guest reports a panic on the pvpanic port 4 s after its boot.
  Cluster c("[vm]\nappend = \"pages=64 rate=2000 panic_after=4\"\n");
  StartProtected(c, 5);
  ASSERT_TRUE(c.WaitFor("primary", 30000, [](const json& s) {
    return s.contains("vm_liveness") && s["vm_liveness"].value("guest", "") == "panicked";
  })) << c.Diagnostics();
  EXPECT_NE(c.Serial("primary").find("PANIC on purpose"), std::string::npos) << c.Diagnostics();
  EXPECT_NE(c.Log("primary").find("GUEST_PANICKED"), std::string::npos) << c.Diagnostics();
  // The primary tandem and its QEMU stay up, so the standby never takes over the crashed guest.
  std::this_thread::sleep_for(std::chrono::seconds(2));
  EXPECT_EQ(c.Status("standby").value("state", ""), "standby") << c.Diagnostics();
  EXPECT_EQ(c.Status("primary").value("state", ""), "running") << c.Diagnostics();
  EXPECT_EQ(c.Log("standby").find("RUNNING on this host"), std::string::npos) << c.Diagnostics();
}

}  // namespace
}  // namespace tandem::testing
