// QmpClient and QemuProcess against a real QEMU under TCG (no KVM needed).
#include "qemu-integration/qmp.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/fd.h"
#include "qemu-integration/qemu_args.h"
#include "qemu-integration/qemu_process.h"
#include "tests/qemu/qemu_test_util.h"

namespace tandem::qemu {
namespace {

using testing::TempDir;

struct Qemu {
  std::unique_ptr<QemuProcess> process;
  std::unique_ptr<QmpClient> qmp;
};

// A bare QEMU that never starts a guest (-S): enough for QMP.
Qemu StartBareQemu(const TempDir& dir) {
  Qemu q;
  auto binary = FindQemuBinary();
  EXPECT_TRUE(binary.ok()) << binary.status().ToString();
  if (!binary.ok()) return q;
  auto p = QemuProcess::Spawn({*binary, "-machine", "q35,accel=tcg", "-nodefaults", "-display", "none", "-S", "-qmp",
                               "unix:" + (dir / "qmp.sock") + ",server=on,wait=off"},
                              dir / "qemu.log");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  if (!p.ok()) return q;
  q.process = std::move(p).value();
  // QEMU creates the socket some time after exec: Connect must retry until it exists.
  auto qmp = QmpClient::Connect(dir / "qmp.sock", 20000);
  EXPECT_TRUE(qmp.ok()) << qmp.status().ToString() << "\n" << testing::ReadFileOrEmpty(dir / "qemu.log");
  if (qmp.ok()) q.qmp = std::move(qmp).value();
  return q;
}

TEST(QmpTest, QueryStatusOnRealQemu) {
  TempDir dir;
  Qemu q = StartBareQemu(dir);
  ASSERT_TRUE(q.qmp);
  EXPECT_EQ(q.qmp->greeting()["version"]["qemu"]["major"], 7);
  auto status = q.qmp->Execute("query-status");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ((*status)["status"], "prelaunch");
  EXPECT_EQ((*status)["running"], false);
}

TEST(QmpTest, CommandErrorCarriesClassAndDescription) {
  TempDir dir;
  Qemu q = StartBareQemu(dir);
  ASSERT_TRUE(q.qmp);
  auto r = q.qmp->Execute("no-such-command");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("CommandNotFound"), std::string::npos) << r.status().ToString();
  auto bad_args = q.qmp->Execute("migrate-set-parameters", {{"x-checkpoint-delay", "soon"}});
  ASSERT_FALSE(bad_args.ok());
  EXPECT_NE(bad_args.status().message().find("GenericError"), std::string::npos) << bad_args.status().ToString();
  // The connection is still usable after errors.
  EXPECT_TRUE(q.qmp->Execute("query-status").ok());
}

TEST(QmpTest, EventsArrivingBetweenRepliesAreQueued) {
  TempDir dir;
  Qemu q = StartBareQemu(dir);
  ASSERT_TRUE(q.qmp);
  ASSERT_TRUE(q.qmp->Execute("cont").ok());
  ASSERT_TRUE(q.qmp->Execute("stop").ok());
  // Asked for in the opposite order of arrival: RESUME must have been kept while we waited for STOP.
  auto stop = q.qmp->WaitForEvent("STOP", 5000);
  ASSERT_TRUE(stop.ok()) << stop.status().ToString();
  EXPECT_EQ((*stop)["event"], "STOP");
  auto resume = q.qmp->WaitForEvent("RESUME", 5000);
  ASSERT_TRUE(resume.ok()) << resume.status().ToString();
  EXPECT_TRUE(resume->contains("timestamp"));
  // Each event is returned once.
  EXPECT_TRUE(q.qmp->WaitForEvent("RESUME", 100).status().IsTimeout());
}

TEST(QmpTest, TakeEventsReturnsEverythingSentSoFarOnceWithoutWaiting) {
  TempDir dir;
  Qemu q = StartBareQemu(dir);
  ASSERT_TRUE(q.qmp);
  auto none = q.qmp->TakeEvents();
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(q.qmp->Execute("cont").ok());
  ASSERT_TRUE(q.qmp->Execute("stop").ok());
  std::vector<std::string> names;
  for (int i = 0; i < 50 && names.size() < 2; ++i) {  // events may trail the replies by a moment
    auto events = q.qmp->TakeEvents();
    ASSERT_TRUE(events.ok()) << events.status().ToString();
    for (const auto& e : *events) names.push_back(e["event"]);
    if (names.size() < 2) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(names, (std::vector<std::string>{"RESUME", "STOP"}));
  auto again = q.qmp->TakeEvents();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
}

TEST(QmpTest, ConnectTimesOutWithoutQemu) {
  TempDir dir;
  auto qmp = QmpClient::Connect(dir / "nobody.sock", 200);
  ASSERT_FALSE(qmp.ok());
  EXPECT_TRUE(qmp.status().IsTimeout()) << qmp.status().ToString();
}

TEST(QmpTest, QuitEndsQemuAndTheConnection) {
  TempDir dir;
  Qemu q = StartBareQemu(dir);
  ASSERT_TRUE(q.qmp);
  (void)q.qmp->Execute("quit");  // QEMU may close before or after it replies
  auto code = q.process->Wait(10000);
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 0);
  auto r = q.qmp->Execute("query-status", nullptr, 2000);
  EXPECT_TRUE(r.status().IsClosed()) << r.status().ToString();
}

TEST(QmpTest, Kill9IsSeenAsClosedConnection) {
  TempDir dir;
  Qemu q = StartBareQemu(dir);
  ASSERT_TRUE(q.qmp);
  q.process->Kill(SIGKILL);
  auto code = q.process->Wait(10000);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 128 + SIGKILL);
  EXPECT_TRUE(q.qmp->Execute("query-status", nullptr, 2000).status().IsClosed());
}

TEST(QemuArgsTcgTest, TestGuestRunsOnTheSharedRamFile) {
  // tandem's own command line, under TCG: the guest boots, prints on the serial log, and its RAM is the file
  // tandem would map (share=on), holding the guest's workload pages.
  TempDir dir;
  VmConfig vm = testing::TestGuestVm(dir.path(), "tcg", "tcg", 16, "pages=32 rate=500");
  ASSERT_TRUE(ValidateVmConfig(vm).ok()) << ValidateVmConfig(vm).ToString();
  std::vector<std::string> args = BuildQemuArgs(vm, QemuRole::kPrimary);
  auto binary = FindQemuBinary();
  ASSERT_TRUE(binary.ok());
  args.insert(args.begin(), *binary);
  auto p = QemuProcess::Spawn(args, dir / "qemu.log");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto qmp = QmpClient::Connect(vm.qmp_socket, 20000);
  ASSERT_TRUE(qmp.ok()) << qmp.status().ToString() << testing::ReadFileOrEmpty(dir / "qemu.log");
  auto status = (*qmp)->Execute("query-status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["status"], "running");
  ASSERT_TRUE(testing::WaitUntil(20000,
                                 [&] {
                                   auto lines = testing::ParseCounters(testing::ReadFileOrEmpty(vm.serial_log));
                                   return lines.size() >= 2;
                                 }))
      << testing::ReadFileOrEmpty(vm.serial_log) << testing::ReadFileOrEmpty(dir / "qemu.log");
  for (const auto& line : testing::ParseCounters(testing::ReadFileOrEmpty(vm.serial_log))) EXPECT_TRUE(line.ok);
  ASSERT_TRUE((*qmp)->Execute("stop").ok());
  UniqueFd fd(::open(vm.ram_path.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  void* ram = mmap(nullptr, 16 << 20, PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(ram, MAP_FAILED);
  uint32_t counter = 0;
  const std::string bad = testing::CheckGuestPages({static_cast<uint8_t*>(ram), size_t(16) << 20}, 32, &counter);
  munmap(ram, 16 << 20);
  EXPECT_EQ(bad, "");
  EXPECT_GT(counter, 0u);
}

}  // namespace
}  // namespace tandem::qemu
