#include "qemu-integration/qemu_args.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "tests/qemu/qemu_test_util.h"

namespace tandem::qemu {
namespace {

VmConfig Valid(const testing::TempDir& dir) {
  VmConfig vm;
  vm.name = "web1";
  vm.memory_mb = 32;
  vm.vcpus = 2;
  vm.accel = "kvm";
  vm.machine = "q35";
  vm.kernel = "/proc/self/exe";  // any readable regular file
  vm.append = "pages=64 rate=2000";
  vm.ram_path = dir / "ram";
  vm.qmp_socket = dir / "qmp.sock";
  vm.serial_log = dir / "serial.log";
  return vm;
}

// Value following `flag` (first occurrence), or "" if absent.
std::string ValueOf(const std::vector<std::string>& args, const std::string& flag) {
  auto it = std::find(args.begin(), args.end(), flag);
  return it == args.end() || it + 1 == args.end() ? "" : *(it + 1);
}

bool Has(const std::vector<std::string>& args, const std::string& arg) {
  return std::find(args.begin(), args.end(), arg) != args.end();
}

TEST(QemuArgsTest, MainRamIsTheSharedFileBackendTheMachineUses) {
  testing::TempDir dir;
  const VmConfig vm = Valid(dir);
  const std::vector<std::string> args = BuildQemuArgs(vm, QemuRole::kPrimary);
  EXPECT_EQ(ValueOf(args, "-object"), "memory-backend-file,id=mem,size=32M,mem-path=" + vm.ram_path + ",share=on");
  EXPECT_EQ(ValueOf(args, "-machine"), "q35,memory-backend=mem,accel=kvm");
  EXPECT_EQ(ValueOf(args, "-m"), "32M");
  EXPECT_EQ(ValueOf(args, "-smp"), "2");
  EXPECT_STREQ(kMainRamBlock, "mem");
}

TEST(QemuArgsTest, NoDefaultDevicesSerialToFileQmpOnUnixSocket) {
  testing::TempDir dir;
  const VmConfig vm = Valid(dir);
  const std::vector<std::string> args = BuildQemuArgs(vm, QemuRole::kPrimary);
  EXPECT_TRUE(Has(args, "-nodefaults"));
  EXPECT_EQ(ValueOf(args, "-vga"), "none");
  EXPECT_EQ(ValueOf(args, "-display"), "none");
  EXPECT_EQ(ValueOf(args, "-serial"), "file:" + vm.serial_log);
  EXPECT_EQ(ValueOf(args, "-qmp"), "unix:" + vm.qmp_socket + ",server=on,wait=off");
  EXPECT_EQ(ValueOf(args, "-kernel"), vm.kernel);
  EXPECT_EQ(ValueOf(args, "-append"), vm.append);
  EXPECT_FALSE(Has(args, "-initrd"));
  EXPECT_FALSE(Has(args, "-incoming"));
}

TEST(QemuArgsTest, ADiskIsQemusNbdClientOnTandemsSocketAndALegacyCapableVirtioBlk) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  EXPECT_FALSE(Has(BuildQemuArgs(vm, QemuRole::kPrimary), "-blockdev")) << "no disk unless configured";
  vm.disk_socket = dir / "disk.sock";
  const std::vector<std::string> args = BuildQemuArgs(vm, QemuRole::kStandby);
  EXPECT_EQ(ValueOf(args, "-blockdev"),
            "driver=nbd,server.type=unix,server.path=" + vm.disk_socket + ",export=web1,node-name=disk0");
  EXPECT_TRUE(Has(args, "virtio-blk-pci,drive=disk0,addr=0x19,disable-modern=on"));
  EXPECT_TRUE(ValidateVmConfig(vm).ok());
  vm.disk_socket = dir / "a,b.sock";
  EXPECT_FALSE(ValidateVmConfig(vm).ok());
}

TEST(QemuArgsTest, OutputArgsReplaceTheSerialFile) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.output_args = {"-chardev", "socket,id=ser0,path=/s/console.sock,server=off", "-serial", "chardev:ser0",
                    "-netdev", "dgram,id=n0", "-device", "virtio-net-pci,netdev=n0"};
  const std::vector<std::string> args = BuildQemuArgs(vm, QemuRole::kPrimary);
  EXPECT_EQ(ValueOf(args, "-serial"), "chardev:ser0");
  EXPECT_EQ(std::count(args.begin(), args.end(), "-serial"), 1);
  EXPECT_EQ(ValueOf(args, "-chardev"), "socket,id=ser0,path=/s/console.sock,server=off");
  EXPECT_EQ(ValueOf(args, "-netdev"), "dgram,id=n0");
  for (const std::string& a : args) EXPECT_EQ(a.find("file:"), std::string::npos) << a;
}

TEST(QemuArgsTest, StandbyDiffersOnlyByIncomingDefer) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.initrd = "/proc/self/exe";
  vm.extra_args = {"-rtc", "base=utc"};
  std::vector<std::string> primary = BuildQemuArgs(vm, QemuRole::kPrimary);
  std::vector<std::string> standby = BuildQemuArgs(vm, QemuRole::kStandby);
  ASSERT_EQ(standby.size(), primary.size() + 2);
  EXPECT_EQ(std::vector<std::string>(standby.end() - 2, standby.end()),
            (std::vector<std::string>{"-incoming", "defer"}));
  standby.resize(primary.size());
  EXPECT_EQ(standby, primary);
  EXPECT_EQ(ValueOf(primary, "-initrd"), vm.initrd);
  EXPECT_EQ(ValueOf(primary, "-rtc"), "base=utc");
}

TEST(QemuArgsTest, ValidConfigPasses) {
  testing::TempDir dir;
  Status st = ValidateVmConfig(Valid(dir));
  EXPECT_TRUE(st.ok()) << st.ToString();
}

void ExpectInvalid(const VmConfig& vm, const std::string& words) {
  Status st = ValidateVmConfig(vm);
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument) << st.ToString();
  EXPECT_NE(st.message().find(words), std::string::npos) << st.ToString();
}

TEST(QemuArgsTest, MissingKernelFile) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.kernel = dir / "no-such-kernel";
  ExpectInvalid(vm, "no-such-kernel: No such file");
}

TEST(QemuArgsTest, KernelNotSet) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.kernel.clear();
  ExpectInvalid(vm, "kernel is not set");
}

TEST(QemuArgsTest, KernelIsADirectory) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.kernel = dir.path();
  ExpectInvalid(vm, "not a regular file");
}

TEST(QemuArgsTest, MissingInitrdFile) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.initrd = dir / "no-initrd";
  ExpectInvalid(vm, "initrd");
}

TEST(QemuArgsTest, ZeroMemory) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.memory_mb = 0;
  ExpectInvalid(vm, "memory_mb is 0");
}

TEST(QemuArgsTest, BadAccel) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.accel = "hvf";
  ExpectInvalid(vm, "accel 'hvf'");
}

TEST(QemuArgsTest, ZeroVcpus) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.vcpus = 0;
  ExpectInvalid(vm, "vcpus");
}

TEST(QemuArgsTest, CommaInRamPath) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.ram_path = dir / "a,share=off";
  ExpectInvalid(vm, "comma");
}

TEST(QemuArgsTest, QmpSocketPathTooLong) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.qmp_socket = "/tmp/" + std::string(120, 'q');
  ExpectInvalid(vm, "longer than 107");
}

TEST(QemuArgsTest, EmptyName) {
  testing::TempDir dir;
  VmConfig vm = Valid(dir);
  vm.name.clear();
  ExpectInvalid(vm, "name is empty");
}

}  // namespace
}  // namespace tandem::qemu
