#include "output-commit/qemu_options.h"

#include <gtest/gtest.h>

namespace tandem::output_commit {
namespace {

TEST(QemuOptionsTest, NicIsADatagramNetdevOnTheStateDirSockets) {
  auto args = QemuNicArgs({.mac = "52:54:00:12:34:56"}, "/var/lib/tandem/web1");
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  EXPECT_EQ(*args, (std::vector<std::string>{
                       "-netdev",
                       "dgram,id=n0,local.type=unix,local.path=/var/lib/tandem/web1/nic-qemu.sock,"
                       "remote.type=unix,remote.path=/var/lib/tandem/web1/nic.sock",
                       "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,addr=0x18,romfile=,disable-modern=on"}));
}

TEST(QemuOptionsTest, ConsoleIsASocketChardevClient) {
  auto args = QemuConsoleArgs("/run/t");
  ASSERT_TRUE(args.ok());
  EXPECT_EQ(*args, (std::vector<std::string>{"-chardev", "socket,id=ser0,path=/run/t/console.sock,server=off",
                                             "-serial", "chardev:ser0"}));
}

TEST(QemuOptionsTest, RefusesWhatQemuWouldMisread) {
  EXPECT_FALSE(QemuNicArgs({.mac = "52:54:00:12:34"}, "/s").ok());
  EXPECT_FALSE(QemuNicArgs({.mac = "52-54-00-12-34-56"}, "/s").ok());
  EXPECT_FALSE(QemuNicArgs({.mac = "53:54:00:12:34:56"}, "/s").ok());  // multicast bit
  EXPECT_FALSE(QemuNicArgs({.mac = "52:54:00:12:34:56", .model = "e1000,romfile=x"}, "/s").ok());
  EXPECT_FALSE(QemuNicArgs({.mac = "52:54:00:12:34:56"}, "/a,b").ok());
  EXPECT_FALSE(QemuNicArgs({.mac = "52:54:00:12:34:56"}, "/" + std::string(110, 'x')).ok());
  EXPECT_FALSE(QemuConsoleArgs("/" + std::string(110, 'x')).ok());
}

}  // namespace
}  // namespace tandem::output_commit
