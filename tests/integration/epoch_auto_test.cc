// epoch_ms = "auto" with a real QEMU: tandem, not QEMU's timer, starts each checkpoint (by setting
// x-checkpoint-delay while QEMU is in COLO, which QEMU 7.2 answers with a checkpoint at once; its own timer is
// left 2 x max_ms away as a backstop), and the standby can resume from what such a checkpoint shipped.
// Under TCG QEMU's COLO takes only the first checkpoint before it deadlocks (shared notes:
// qemu-colo-stream.md): there the test checks that tandem triggered that one, long before QEMU's timer would
// have, and that the standby resumes from it; with KVM it also checks that the checkpoints go on at the
// intervals tandem picks.
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "tests/integration/cluster.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

TEST(EpochAutoTest, TandemStartsTheCheckpointsLongBeforeQemusOwnTimerAndTheStandbyResumesFromThem) {
  if (access(TANDEM_TEST_GUEST, R_OK) != 0) GTEST_SKIP() << "!!! SKIPPED: the test guest is not built";
  const bool kvm = KvmUnusableReason().empty();
  if (!kvm) {
    fprintf(stderr, "\n!!! PARTLY SKIPPED: no usable KVM (%s): QEMU's COLO under TCG takes one checkpoint, so only "
                    "the first trigger and a failover from it are checked, not the intervals that follow\n",
            KvmUnusableReason().c_str());
  }
  // QEMU's own timer: 2 x max_ms = 60 s. Under TCG the resync must be read before the first checkpoint
  // (reprotect_test.cc), so the shortest interval is 2 s there.
  Cluster c(std::string("[vm]\naccel = \"") + (kvm ? "kvm" : "tcg") + "\"\nepoch_ms = \"auto\"\n[epoch]\nmin_ms = " +
            (kvm ? "20" : "2000") + "\nmax_ms = 30000\nmax_paused_percent = 5\n");
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  c.StartPrimary();
  const auto started = std::chrono::steady_clock::now();
  // 45 s: a QEMU hung in the checkpoint under TCG is reported after ten intervals (20 s), QEMU's own timer
  // would checkpoint after 60 s.
  if (!c.WaitFor("standby", 45000, [](const json& s) { return s.value("last_applied", 0u) >= 1; })) {
    TANDEM_SKIP_IF_TCG_COLO_HUNG(c);
    FAIL() << "no checkpoint within 45 s: QEMU's own timer would take 60 s" << c.Diagnostics();
  }
  const auto first_applied_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  fprintf(stderr, "first epoch applied on the standby %.1f s after the primary started\n", first_applied_s);
  if (kvm) {
    ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("last_applied", 0u) >= 30; }))
        << "the checkpoints did not go on" << c.Diagnostics();
  }
  EXPECT_NE(c.Status("primary").value("epoch_interval", "").find("(epoch_ms = auto)"), std::string::npos)
      << c.Status("primary").dump();

  const json primary = c.Status("primary");
  c.Kill9(pid_t(primary.value("qemu_pid", 0)));
  c.Kill9(pid_t(primary.value("pid", 0)));
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("state", "") == "active"; }))
      << c.Diagnostics();
  EXPECT_GE(c.StatusNumber("standby", "resumed_epoch"), 1u) << c.Diagnostics();
  EXPECT_EQ(c.Serial("standby").find("tandem-guest boot"), std::string::npos) << "the guest rebooted";
}

}  // namespace
}  // namespace tandem::testing
