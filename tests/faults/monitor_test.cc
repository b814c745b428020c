// The invariant monitor against two real QEMUs (the bare-metal test guest under TCG: no KVM or root needed), each
// with an observer QMP socket for the monitor and a control socket for the test: it must count two running VMs as
// split brain, and must not count a clean handover (one stopped, then the other continued) however close.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>

#include "qemu-integration/qemu_process.h"
#include "qemu-integration/qmp.h"
#include "tests/faults/monitor.h"
#include "tests/support/temp_dir.h"

namespace tandem::faults {
namespace {

using ::tandem::testing::TempDir;

struct Vm {
  std::unique_ptr<qemu::QemuProcess> process;
  std::unique_ptr<qemu::QmpClient> control;
  std::string observer, status;
};

class MonitorTest : public ::testing::Test {
 protected:
  void TearDown() override { vms_.clear(); }

  // A VM named `name`, running unless `paused` (-S).
  Vm& Start(const std::string& name, bool paused) {
    Vm vm;
    auto binary = qemu::FindQemuBinary();
    EXPECT_TRUE(binary.ok());
    vm.observer = dir_ + "/" + name + ".obs";
    vm.status = dir_ + "/" + name + ".json";
    const std::string control = dir_ + "/" + name + ".ctl";
    std::vector<std::string> argv = {*binary, "-machine", "q35,accel=tcg", "-m", "32M", "-nodefaults", "-vga", "none",
                                     "-display", "none", "-kernel", TANDEM_TEST_GUEST, "-serial",
                                     "file:" + dir_ + "/" + name + ".serial", "-qmp",
                                     "unix:" + vm.observer + ",server=on,wait=off", "-qmp",
                                     "unix:" + control + ",server=on,wait=off"};
    if (paused) argv.push_back("-S");
    auto p = qemu::QemuProcess::Spawn(argv, dir_ + "/" + name + ".log");
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    vm.process = std::move(p).value();
    auto c = qemu::QmpClient::Connect(control, 10000);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    vm.control = std::move(c).value();
    vms_.push_back(std::move(vm));
    return vms_.back();
  }

  void WriteTerm(const Vm& vm, uint64_t term) {
    std::ofstream(vm.status + ".tmp") << "{\"state\":\"x\",\"term\":" << term << "}";
    std::filesystem::rename(vm.status + ".tmp", vm.status);
  }

  // Waits until the monitor took `samples` samples of every VM.
  void Settle(InvariantMonitor& m, uint64_t samples) {
    for (int i = 0; i < 500; ++i) {
      const MonitorReport r = m.Report();
      bool all = true;
      for (const auto& role : r.roles) all = all && role.samples >= samples;
      if (all) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    FAIL() << "the monitor does not sample: " << m.Report().Summary();
  }

  TempDir scratch_;
  const std::string dir_ = scratch_.path();
  std::deque<Vm> vms_;  // references stay valid as VMs are added
};

TEST_F(MonitorTest, TwoRunningVmsAreSplitBrainOneRunningIsNot) {
  Vm& a = Start("a", /*paused=*/false);
  Vm& b = Start("b", /*paused=*/true);
  InvariantMonitor m({{"a", a.observer, a.status}, {"b", b.observer, b.status}});
  m.Start();
  Settle(m, 40);
  EXPECT_EQ(m.Report().split_brain, 0u) << m.Report().Summary();
  EXPECT_GT(m.Report().role("a")->running_samples, 30u);
  EXPECT_EQ(m.Report().role("b")->running_samples, 0u);
  // b runs too: split brain.
  ASSERT_TRUE(b.control->Execute("cont").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  m.Stop();
  const MonitorReport r = m.Report();
  EXPECT_GT(r.split_brain, 10u) << r.Summary();
  EXPECT_NE(r.first_violation.find("SPLIT BRAIN"), std::string::npos);
  ASSERT_EQ(r.role("b")->resume_events_ms.size(), 1u) << r.Summary();
}

TEST_F(MonitorTest, HandoverWithoutOverlapIsNotSplitBrain) {
  Vm& a = Start("a", /*paused=*/false);
  Vm& b = Start("b", /*paused=*/true);
  InvariantMonitor m({{"a", a.observer, a.status}, {"b", b.observer, b.status}});
  m.Start();
  Settle(m, 40);
  // Back and forth, each handover as tight as two QMP round trips: stop one, then continue the other.
  for (int i = 0; i < 10; ++i) {
    Vm& from = i % 2 == 0 ? a : b;
    Vm& to = i % 2 == 0 ? b : a;
    ASSERT_TRUE(from.control->Execute("stop").ok());
    ASSERT_TRUE(to.control->Execute("cont").ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
  }
  m.Stop();
  const MonitorReport r = m.Report();
  EXPECT_EQ(r.split_brain, 0u) << r.Summary();
  EXPECT_GT(r.role("a")->running_samples, 20u);
  EXPECT_GT(r.role("b")->running_samples, 20u);
  EXPECT_EQ(r.role("b")->resume_events_ms.size(), 5u) << r.Summary();
}

TEST_F(MonitorTest, TermGoingBackwardsIsCountedKilledVmIsNotRunning) {
  Vm& a = Start("a", /*paused=*/false);
  WriteTerm(a, 3);
  InvariantMonitor m({{"a", a.observer, a.status}});
  m.Start();
  Settle(m, 20);
  WriteTerm(a, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(m.Report().term_regressions(), 0u);
  WriteTerm(a, 2);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  MonitorReport r = m.Report();
  EXPECT_EQ(r.term_regressions(), 1u) << r.Summary();
  EXPECT_EQ(r.role("a")->max_term, 4u);
  EXPECT_NE(r.first_violation.find("TERM WENT BACKWARDS"), std::string::npos);
  // A killed QEMU stops counting as running.
  a.process->Kill(SIGKILL);
  ASSERT_TRUE(a.process->Wait(5000).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const uint64_t running = m.Report().role("a")->running_samples;
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(m.Report().role("a")->running_samples, running);
  m.Stop();
}

}  // namespace
}  // namespace tandem::faults
