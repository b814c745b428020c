// Real QEMU (TCG; no COLO needed) attached to the module with the options QemuNicArgs / QemuConsoleArgs build:
// the project's test guest's serial output and QEMU's own frames (announce-self) are held until an ack, then
// released; a frame from outside reaches QEMU at once.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <algorithm>

#include "output-commit/console_commit.h"
#include "output-commit/nic_commit.h"
#include "output-commit/qemu_options.h"
#include "qemu-integration/qemu_process.h"
#include "qemu-integration/qmp.h"
#include "tests/output-commit/test_util.h"
#include "tests/qemu/qemu_test_util.h"

namespace tandem::output_commit {
namespace {

using qemu::testing::ReadFileOrEmpty;
using qemu::testing::WaitUntil;

TEST(QemuOutputCommitTest, SerialAndNicOutputOfARealQemuAreHeldUntilAcked) {
  qemu::testing::TempDir dir;
  const std::string mac = "52:54:00:12:34:56";
  const std::string log_path = dir / "console.log";
  auto console = ConsoleOutputCommit::Create(
      {.socket_path = PathsIn(dir.path()).console_socket, .log_path = log_path}, SystemClock());
  ASSERT_TRUE(console.ok()) << console.status().ToString();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd outside_peer(sv[1]);
  auto nic = NicOutputCommit::Create({.socket_path = PathsIn(dir.path()).nic_socket,
                                      .qemu_socket_path = PathsIn(dir.path()).nic_qemu_socket,
                                      .outside = UniqueFd(sv[0]), .limits = {}},
                                     SystemClock());
  ASSERT_TRUE(nic.ok()) << nic.status().ToString();
  (*console)->Start();
  (*nic)->Start();

  qemu::VmConfig vm = qemu::testing::TestGuestVm(dir.path(), "oc", "tcg", 16, "pages=32 rate=500");
  std::vector<std::string> args = qemu::BuildQemuArgs(vm, qemu::QemuRole::kPrimary);
  auto serial = std::find(args.begin(), args.end(), "-serial");  // replaced by the console chardev
  ASSERT_NE(serial, args.end());
  args.erase(serial, serial + 2);
  auto nic_args = QemuNicArgs({.mac = mac}, dir.path());
  auto console_args = QemuConsoleArgs(dir.path());
  ASSERT_TRUE(nic_args.ok() && console_args.ok());
  args.insert(args.end(), nic_args->begin(), nic_args->end());
  args.insert(args.end(), console_args->begin(), console_args->end());
  auto binary = qemu::FindQemuBinary();
  ASSERT_TRUE(binary.ok());
  args.insert(args.begin(), *binary);
  auto process = qemu::QemuProcess::Spawn(args, dir / "qemu.log");
  ASSERT_TRUE(process.ok()) << process.status().ToString();
  auto qmp = qemu::QmpClient::Connect(vm.qmp_socket, 20000);
  ASSERT_TRUE(qmp.ok()) << qmp.status().ToString() << ReadFileOrEmpty(dir / "qemu.log");

  // The guest boots and prints; its bytes reach tandem and stay held.
  ASSERT_TRUE(WaitUntil(30000, [&] { return (*console)->stats().hold.held_bytes > 40; }))
      << ReadFileOrEmpty(dir / "qemu.log");
  EXPECT_TRUE((*console)->stats().source_connected);
  EXPECT_EQ(ReadFileOrEmpty(log_path), "");

  // QEMU's RARP announcements from the NIC's MAC are frames of the guest's NIC: held too.
  ASSERT_TRUE((*qmp)->Execute("announce-self", {{"initial", 10}, {"max", 20}, {"rounds", 2}, {"step", 10}}).ok());
  ASSERT_TRUE(WaitUntil(10000, [&] { return (*nic)->stats().hold.held_records >= 2; }));
  EXPECT_TRUE(ReceiveIds(outside_peer.get()).empty());

  ASSERT_TRUE((*console)->OnEpochBoundary(1).ok());
  ASSERT_TRUE((*nic)->OnEpochBoundary(1).ok());
  (*console)->ReleaseThrough(1);
  (*nic)->ReleaseThrough(1);
  EXPECT_NE(ReadFileOrEmpty(log_path).find("tandem-guest boot"), std::string::npos) << ReadFileOrEmpty(log_path);
  uint8_t frame[2048];
  const ssize_t n = ::recv(outside_peer.get(), frame, sizeof(frame), MSG_DONTWAIT);
  ASSERT_GE(n, 14);
  EXPECT_EQ(frame[12], 0x80);  // ethertype 0x8035: RARP
  EXPECT_EQ(frame[13], 0x35);
  const uint8_t src[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  EXPECT_TRUE(std::equal(src, src + 6, frame + 6));

  // Outside -> guest: passed to QEMU's socket at once (QEMU's NIC takes it: sendto succeeded).
  std::vector<uint8_t> in(60, 0);
  std::fill(in.begin(), in.begin() + 6, 0xff);
  std::copy(src, src + 6, in.begin() + 6);
  ASSERT_EQ(::write(outside_peer.get(), in.data(), in.size()), ssize_t(in.size()));
  EXPECT_TRUE(WaitUntil(5000, [&] { return (*nic)->stats().inbound_frames == 1; }));
  EXPECT_EQ((*nic)->stats().inbound_dropped, 0u);
  (*process)->Kill(SIGKILL);
}

}  // namespace
}  // namespace tandem::output_commit
