// Re-protection end to end: real tandem processes (both hosts and the witness), real QEMU, real kill -9. After a
// failover the VM's new host checkpoints the VM it resumed and ships it to the old primary's host, whose tandem,
// started again, learns from the witness that it lost its term and rejoins as the standby; then the VM fails
// back, and so on. Runs under TCG too: QEMU's COLO there takes the precopy and the first checkpoint (enough for
// a resume point) before it deadlocks, and every failover here starts from such a point. But QEMU's dirty
// tracking under TCG misses pages in a COLO checkpoint (shared notes: qemu-colo-stream.md), so a guest resumed
// under TCG may find its memory inconsistent: the guest's own verdict (INVARIANT BROKEN, counter continuity) is
// checked with KVM only; under TCG the test checks what tandem does (roles, terms, rejoin, resync, no reboot).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <utility>

#include "tests/integration/cluster.h"
#include "tests/support/free_port.h"
#include "tests/support/text_file.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

class ReprotectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(TANDEM_TEST_GUEST, R_OK) != 0) GTEST_SKIP() << "!!! SKIPPED: the test guest is not built";
  }
  // Both hosts replicate to each other: [primary] replication is where the first host listens as a standby.
  static std::string Reprotecting(bool kvm) {
    return "[vm]\naccel = \"" + std::string(kvm ? "kvm" : "tcg") + "\"\n[primary]\nreplication = \"127.0.0.1:" +
           std::to_string(FreePort(SOCK_STREAM)) + "\"\n";
  }
};

// The host (its state directory) is the standby and holds an epoch it can resume.
bool HoldsAResumePoint(const json& s) {
  return s.value("role", "") == "standby" && s.contains("resume_epoch") && s["resume_epoch"].is_number();
}

// Runs the VM: as its primary, or promoted and waiting for the other host to re-protect to it.
bool RunsTheVm(const json& s) { return s.value("role", "") == "primary" || s.value("state", "") == "active"; }

void Restart(Cluster& c, const std::string& host) {
  if (host == "primary") {
    c.StartPrimary();
  } else {
    c.StartStandby();
  }
}

TEST_F(ReprotectTest, FailoverAndFailbackFiveRoundTripsWithTheGuestGoingOnAndNoReboot) {
  const bool kvm = KvmUnusableReason().empty();
  if (!kvm) {
    fprintf(stderr, "\n!!! PARTLY SKIPPED: no usable KVM (%s): the guest's own consistency checks after each "
                    "failover need it; roles, terms, rejoin, resync and no-reboot are checked under TCG\n",
            KvmUnusableReason().c_str());
  }
  // Under TCG the resync must be read before the first checkpoint (a live resync that spans it settles only at
  // the second, which never comes there): long epochs.
  Cluster c(Reprotecting(kvm), kvm ? 300 : 2000);
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  c.StartPrimary();
  std::string holder = "primary", other = "standby";
  uint64_t highest_seen = 0;
  for (int failover = 1; failover <= 10; ++failover) {
    SCOPED_TRACE("failover " + std::to_string(failover) + " from " + holder);
    if (!c.WaitFor(other, 90000, HoldsAResumePoint)) {
      TANDEM_SKIP_IF_TCG_COLO_HUNG(c);
      FAIL() << c.Diagnostics();
    }
    const json running = c.Status(holder);
    ASSERT_TRUE(RunsTheVm(running)) << running.dump() << c.Diagnostics();
    const std::vector<CounterLine> other_before = c.Counters(other);
    c.Kill9(pid_t(running.value("qemu_pid", 0)));
    c.Kill9(pid_t(running.value("pid", 0)));
    // What the world saw of the guest before the kill: the lost host's released console output.
    const std::vector<CounterLine> before = c.Counters(holder);
    ASSERT_FALSE(before.empty()) << c.Diagnostics();
    highest_seen = std::max(highest_seen, before.back().counter);

    ASSERT_TRUE(c.WaitFor(other, 30000, RunsTheVm)) << "not promoted and re-protecting" << c.Diagnostics();
    EXPECT_GT(c.StatusNumber(other, "term"), running.value("term", 0u)) << "one new term per failover";
    Restart(c, holder);
    if (!c.WaitFor(holder, 90000, HoldsAResumePoint)) {
      TANDEM_SKIP_IF_TCG_COLO_HUNG(c);
      FAIL() << "the lost host did not rejoin" << c.Diagnostics();
    }
    ASSERT_TRUE(RunsTheVm(c.Status(other))) << "the rejoining host must never run the VM" << c.Diagnostics();

    // The guest runs on the new host (resumed, not booted: checked at the end).
    std::vector<CounterLine> after = c.Counters(other);
    ASSERT_GT(after.size(), other_before.size()) << "the resumed guest printed nothing" << c.Diagnostics();
    after.erase(after.begin(), after.begin() + long(other_before.size()));
    if (kvm) {  // and where the world last saw it, consistently
      for (const CounterLine& line : after) ASSERT_TRUE(line.ok) << "INVARIANT BROKEN" << c.Diagnostics();
      EXPECT_GE(after.front().counter, before.back().counter) << "behind what the world saw" << c.Diagnostics();
    }
    std::swap(holder, other);
  }
  EXPECT_EQ(c.Serial("standby").find("tandem-guest boot"), std::string::npos) << "the guest rebooted";
  const std::string first_host = c.Serial("primary");
  EXPECT_EQ(first_host.find("tandem-guest boot", first_host.find("tandem-guest boot") + 1), std::string::npos)
      << "the guest booted more than once";
  EXPECT_GT(highest_seen, 0u);
}

// `tandem switchover` on this machine; its answer line and exit code.
std::pair<int, std::string> Switchover(const Cluster& c) {
  const std::string out = c.dir() + "/switchover.out";
  const std::string command = std::string(TANDEM_BINARY) + " switchover --config " + c.config_path() + " > " + out + " 2>&1";
  const int status = system(command.c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, ReadWholeFile(out)};
}

bool Alive(pid_t pid) { return pid > 0 && kill(pid, 0) == 0; }

TEST_F(ReprotectTest, SwitchoverMovesTheVmAndTheOldPrimaryBecomesItsStandby) {
  const bool kvm = KvmUnusableReason().empty();
  Cluster c(Reprotecting(kvm), kvm ? 300 : 2000);
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  c.StartPrimary();
  // Under TCG only the first checkpoint comes: ask while the standby applied the first sync and waits for it.
  if (!c.WaitFor("standby", 30000, [](const json& s) { return s.value("epochs_applied", 0) >= 1; })) {
    TANDEM_SKIP_IF_TCG_COLO_HUNG(c);
    FAIL() << c.Diagnostics();
  }
  const json before = c.Status("primary");
  const auto [code, answer] = Switchover(c);
  EXPECT_EQ(code, 0) << answer << c.Diagnostics();
  EXPECT_EQ(answer.rfind("ok: the standby holds epoch ", 0), 0u) << answer;
  ASSERT_TRUE(c.WaitFor("standby", 30000, RunsTheVm)) << c.Diagnostics();
  EXPECT_FALSE(Alive(pid_t(before.value("qemu_pid", 0)))) << "two VMs: the old primary's QEMU still runs";
  if (!c.WaitFor("primary", 90000, HoldsAResumePoint)) {
    TANDEM_SKIP_IF_TCG_COLO_HUNG(c);
    FAIL() << "the old primary did not rejoin" << c.Diagnostics();
  }
  EXPECT_EQ(c.StatusNumber("standby", "term"), before.value("term", 0u) + 1) << "the term increases once";
  // Resumed from exactly the epoch the old primary stopped at: nothing the VM did is lost.
  const std::string final_epoch = answer.substr(sizeof("ok: the standby holds epoch ") - 1,
                                                answer.find(' ', sizeof("ok: the standby holds epoch ") - 1) -
                                                    (sizeof("ok: the standby holds epoch ") - 1));
  EXPECT_NE(c.Log("standby").find("RUNNING on this host from epoch " + final_epoch + ":"), std::string::npos)
      << answer << c.Diagnostics();
  EXPECT_EQ(c.Serial("standby").find("tandem-guest boot"), std::string::npos) << "resumed, not booted";
}

TEST_F(ReprotectTest, SwitchoverWithoutAStandbyIsRefusedAndTheVmKeepsRunning) {
  Cluster c(Reprotecting(KvmUnusableReason().empty()), 2000);
  c.StartPrimary();
  ASSERT_TRUE(c.WaitFor("primary", 30000, RunsTheVm)) << c.Diagnostics();
  const pid_t qemu = pid_t(c.StatusNumber("primary", "qemu_pid"));
  const auto [code, answer] = Switchover(c);
  EXPECT_EQ(code, 1);
  EXPECT_EQ(answer.rfind("refused: no standby holds a copy of VM ", 0), 0u) << answer;
  EXPECT_TRUE(Alive(qemu)) << c.Diagnostics();
  EXPECT_TRUE(RunsTheVm(c.Status("primary"))) << c.Diagnostics();
}

TEST_F(ReprotectTest, StandbyKilledDuringASwitchoverRefusesItAndTheVmStaysOnThePrimary) {
  const bool kvm = KvmUnusableReason().empty();
  Cluster c(Reprotecting(kvm), kvm ? 300 : 2000);
  const pid_t standby = c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  c.StartPrimary();
  if (!c.WaitFor("standby", 30000, [](const json& s) { return s.value("epochs_applied", 0) >= 1; })) {
    TANDEM_SKIP_IF_TCG_COLO_HUNG(c);
    FAIL() << c.Diagnostics();
  }
  const json primary = c.Status("primary");
  std::pair<int, std::string> result;
  std::thread ask([&] { result = Switchover(c); });
  // Asked: the primary waits for its next checkpoint and the standby's ack of it. The standby dies meanwhile.
  for (int i = 0; i < 200 && c.Log("primary").find("control: request: switchover") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  const pid_t standby_qemu = pid_t(c.StatusNumber("standby", "qemu_pid"));
  c.Kill9(standby_qemu);
  c.Kill9(standby);
  ask.join();
  EXPECT_EQ(result.first, 1) << result.second << c.Diagnostics();
  EXPECT_EQ(result.second.rfind("refused: ", 0), 0u) << result.second;
  EXPECT_NE(result.second.find("keeps running here"), std::string::npos) << result.second;
  // Exactly one VM: the primary's, still its role's.
  EXPECT_TRUE(Alive(pid_t(primary.value("qemu_pid", 0)))) << c.Diagnostics();
  EXPECT_TRUE(RunsTheVm(c.Status("primary"))) << c.Status("primary").dump();
}

}  // namespace
}  // namespace tandem::testing
