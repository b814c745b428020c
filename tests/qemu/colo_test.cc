// The whole COLO path with real QEMU 7.2 under KVM: a primary QEMU checkpoints into tandem's ColoEndpoint, the
// epochs are applied to a replica RAM file, and a second QEMU resumes the guest from that file and the last
// checkpoint's device state. Plus resume error paths under TCG.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cinttypes>
#include <numeric>

#include "common/env.h"
#include "qemu-integration/colo_endpoint.h"
#include "qemu-integration/qemu_args.h"
#include "qemu-integration/qemu_process.h"
#include "qemu-integration/qmp.h"
#include "qemu-integration/resume.h"
#include "tests/qemu/qemu_test_util.h"

namespace tandem::qemu {
namespace {

using testing::ReadFileOrEmpty;
using testing::TempDir;

constexpr uint32_t kGuestPages = 64;
const char kAppend[] = "pages=64 rate=2000";

struct Qemu {
  std::unique_ptr<QemuProcess> process;
  std::unique_ptr<QmpClient> qmp;
};

Qemu Launch(const VmConfig& vm, QemuRole role, const std::string& log) {
  Qemu q;
  Status valid = ValidateVmConfig(vm);
  EXPECT_TRUE(valid.ok()) << valid.ToString();
  auto binary = FindQemuBinary();
  EXPECT_TRUE(binary.ok()) << binary.status().ToString();
  if (!valid.ok() || !binary.ok()) return q;
  std::vector<std::string> args = BuildQemuArgs(vm, role);
  args.insert(args.begin(), *binary);
  auto p = QemuProcess::Spawn(args, log);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  if (!p.ok()) return q;
  q.process = std::move(p).value();
  auto qmp = QmpClient::Connect(vm.qmp_socket, 20000);
  EXPECT_TRUE(qmp.ok()) << qmp.status().ToString() << "\n" << ReadFileOrEmpty(log);
  if (qmp.ok()) q.qmp = std::move(qmp).value();
  return q;
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

// Protects the guest for `checkpoints` checkpoints (0: the precopy alone), kills the primary and resumes the
// standby from the replica and the last device state.
void ProtectThenFailOver(int checkpoints) {
  TempDir dir;
  Clock* clock = SystemClock();
  VmConfig primary_vm = testing::TestGuestVm(dir.path(), "primary", "kvm", 32, kAppend);
  auto endpoint = ColoEndpoint::Listen(dir / "colo.sock");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  Qemu primary = Launch(primary_vm, QemuRole::kPrimary, dir / "primary.log");
  ASSERT_TRUE(primary.qmp);
  ASSERT_TRUE(testing::WaitUntil(
      20000, [&] { return !testing::ParseCounters(ReadFileOrEmpty(primary_vm.serial_log)).empty(); }))
      << "guest did not boot under KVM:\n"
      << ReadFileOrEmpty(primary_vm.serial_log) << ReadFileOrEmpty(dir / "primary.log");

  // Precopy straight into the replica file the standby QEMU will run on.
  const std::string replica = dir / "standby.ram";
  Status st = StartColoMigration(*primary.qmp, dir / "colo.sock", 100);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE((*endpoint)->Accept(10000).ok());
  replicator::VmDescriptor descriptor;
  std::vector<uint8_t> device_state;
  std::unique_ptr<replicator::RamImage> image;
  st = (*endpoint)->ReceivePrecopy(
      [&](const replicator::VmDescriptor& layout) -> Result<replicator::PageSink*> {
        auto created = replicator::RamImage::Create(layout, {{kMainRamBlock, replica}});
        if (!created.ok()) return created.status();
        image = std::move(created).value();
        return static_cast<replicator::PageSink*>(image.get());
      },
      &descriptor, &device_state);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(descriptor.ram_blocks[0].name, kMainRamBlock);
  ASSERT_EQ(descriptor.ram_blocks[0].size_bytes, 32u << 20);
  ASSERT_TRUE((*endpoint)->SendCheckpointReady().ok());
  // QEMU enters COLO mode on its own time after the precopy's last byte.
  std::string mode;
  EXPECT_TRUE(testing::WaitUntil(5000,
                                 [&] {
                                   auto colo = primary.qmp->Execute("query-colo-status");
                                   mode = colo.ok() ? (*colo)["mode"].get<std::string>() : colo.status().ToString();
                                   return mode == "primary";
                                 }))
      << "query-colo-status mode: " << mode;

  replicator::Epoch epoch;
  std::vector<double> pause_ms;
  std::vector<uint64_t> pages;
  uint32_t replica_counter = 0;
  // The precopy alone is already one consistent instant (QEMU sends its last RAM pass with the VM stopped).
  ASSERT_EQ(testing::CheckGuestPages(image->Block(0), kGuestPages, &replica_counter), "") << "after the precopy";
  for (int i = 1; i <= checkpoints; ++i) {
    epoch.Reset(uint64_t(i), false);
    CheckpointTiming timing;
    st = (*endpoint)->ReceiveCheckpoint(&epoch, 10000, &timing);
    ASSERT_TRUE(st.ok()) << "checkpoint " << i << ": " << st.ToString();
    ASSERT_TRUE((*endpoint)->ResumeVm().ok());
    pause_ms.push_back((clock->NowNanos() - timing.request_ns) / 1e6);
    pages.push_back(epoch.pages().size());
    EXPECT_LE(timing.request_ns, timing.reply_ns);
    EXPECT_LE(timing.reply_ns, timing.loaded_ready_ns);
    ASSERT_TRUE(image->Apply(epoch).ok());
    device_state = epoch.device_state();
    // After every applied epoch the replica holds one consistent instant of the guest's pages.
    uint32_t counter = 0;
    const std::string bad = testing::CheckGuestPages(image->Block(0), kGuestPages, &counter);
    ASSERT_EQ(bad, "") << "after checkpoint " << i;
    EXPECT_GE(counter, replica_counter);
    replica_counter = counter;
  }
  // The guest rewrites its 64 pages continuously: every 100 ms checkpoint carries all of them.
  for (uint64_t n : pages) EXPECT_GE(n, kGuestPages);
  if (checkpoints > 0) {
    printf("[ measured ] %d checkpoints, pages per checkpoint %" PRIu64 "..%" PRIu64
           ", pause REQUEST->LOADED median %.2f ms max %.2f ms\n",
           checkpoints, *std::min_element(pages.begin(), pages.end()), *std::max_element(pages.begin(), pages.end()),
           Percentile(pause_ms, 0.5), Percentile(pause_ms, 1.0));
    ::testing::Test::RecordProperty("pause_ms_median", std::to_string(Percentile(pause_ms, 0.5)));
  }

  // The primary dies. It prints every 250 ms, so its last line may lag the replica by up to one print step.
  primary.process->Kill(SIGKILL);
  ASSERT_TRUE(primary.process->Wait(10000).ok());
  const std::vector<testing::CounterLine> before = testing::ParseCounters(ReadFileOrEmpty(primary_vm.serial_log));
  ASSERT_FALSE(before.empty());
  for (const auto& line : before) EXPECT_TRUE(line.ok);
  image.reset();  // unmap the replica: from now on it belongs to the standby QEMU

  VmConfig standby_vm = testing::TestGuestVm(dir.path(), "standby", "kvm", 32, kAppend);
  standby_vm.ram_path = replica;
  Qemu standby = Launch(standby_vm, QemuRole::kStandby, dir / "standby.log");
  ASSERT_TRUE(standby.qmp);
  const int64_t t0 = clock->NowNanos();
  st = ResumeStandbyQemu(*standby.qmp, BuildResumeStream(descriptor, device_state), dir / "incoming.sock", 10000);
  const double resume_ms = (clock->NowNanos() - t0) / 1e6;
  ASSERT_TRUE(st.ok()) << st.ToString() << "\n" << ReadFileOrEmpty(dir / "standby.log");
  printf("[ measured ] standby resume (migrate-incoming -> running) %.1f ms\n", resume_ms);
  ::testing::Test::RecordProperty("resume_ms", std::to_string(resume_ms));

  std::vector<testing::CounterLine> after;
  ASSERT_TRUE(testing::WaitUntil(20000,
                                 [&] {
                                   after = testing::ParseCounters(ReadFileOrEmpty(standby_vm.serial_log));
                                   return after.size() >= 3;
                                 }))
      << "resumed guest prints no counters:\n"
      << ReadFileOrEmpty(standby_vm.serial_log) << ReadFileOrEmpty(dir / "standby.log");
  const std::string serial = ReadFileOrEmpty(standby_vm.serial_log);
  // How far the counter moves between two status lines, from both guests' output.
  uint64_t step = 1;
  for (const std::vector<testing::CounterLine>* lines :
       {&before, static_cast<const std::vector<testing::CounterLine>*>(&after)}) {
    for (size_t i = 1; i < lines->size(); ++i) step = std::max(step, (*lines)[i].counter - (*lines)[i - 1].counter);
  }
  EXPECT_GE(before.back().counter + 2 * step, replica_counter);
  EXPECT_EQ(serial.find("tandem-guest boot"), std::string::npos) << "the standby rebooted the guest:\n" << serial;
  for (const auto& line : after) EXPECT_TRUE(line.ok) << serial;
  for (size_t i = 1; i < after.size(); ++i) EXPECT_GT(after[i].counter, after[i - 1].counter) << serial;
  // It continues from the last checkpoint, not from zero: within a print step of the replica's counter.
  EXPECT_GE(after[0].counter + 1, replica_counter) << serial;
  EXPECT_LE(after[0].counter, replica_counter + 2 * step) << serial;
  auto status = standby.qmp->Execute("query-status");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ((*status)["status"], "running");
}

TEST(ColoTest, CheckpointsReplicateAndStandbyResumesTheGuest) {
  REQUIRE_KVM();
  ProtectThenFailOver(8);
}

TEST(ColoTest, StandbyResumesFromThePrecopyAlone) {
  // The precopy's device state has the same form as a checkpoint's: the standby can take over before the
  // first checkpoint.
  REQUIRE_KVM();
  ProtectThenFailOver(0);
}

TEST(ResumeTest, RefusesQemuThatIsNotWaitingForAMigration) {
  TempDir dir;
  VmConfig vm = testing::TestGuestVm(dir.path(), "plain", "tcg", 16, kAppend);
  Qemu q = Launch(vm, QemuRole::kPrimary, dir / "qemu.log");
  ASSERT_TRUE(q.qmp);
  replicator::VmDescriptor descriptor;
  Status st = ResumeStandbyQemu(*q.qmp, BuildResumeStream(descriptor, {0x00}), dir / "incoming.sock", 5000);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find("not waiting for an incoming migration"), std::string::npos) << st.ToString();
}

TEST(ResumeTest, StreamWithoutConfigurationIsReportedAsRejected) {
  TempDir dir;
  VmConfig vm = testing::TestGuestVm(dir.path(), "standby", "tcg", 16, kAppend);
  Qemu q = Launch(vm, QemuRole::kStandby, dir / "qemu.log");
  ASSERT_TRUE(q.qmp);
  replicator::VmDescriptor descriptor;  // no CONFIGURATION section: QEMU refuses the stream and exits
  descriptor.qemu_vmdesc_json = "{}";
  Status st = ResumeStandbyQemu(*q.qmp, BuildResumeStream(descriptor, {0x00}), dir / "incoming.sock", 10000);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("resume stream"), std::string::npos) << st.ToString();
  EXPECT_FALSE(q.process->Wait(10000).status().IsTimeout());
  EXPECT_NE(ReadFileOrEmpty(dir / "qemu.log").find("Configuration section missing"), std::string::npos)
      << ReadFileOrEmpty(dir / "qemu.log");
}

}  // namespace
}  // namespace tandem::qemu
