// A protected domain under a real libvirtd the test starts (PrivateLibvirtd): defined, started and stopped
// through libvirt by the primary role's host (roles/libvirt_host.h), running on tandem's RAM file and devices.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include "common/private_files.h"
#include "libvirt/connection.h"
#include "output-commit/qemu_options.h"
#include "roles/libvirt_host.h"
#include "tests/libvirt/private_libvirtd.h"
#include "tests/qemu/qemu_test_util.h"

namespace tandem::testing {
namespace {

using qemu::testing::ParseCounters;
using qemu::testing::ReadFileOrEmpty;
using qemu::testing::WaitUntil;

#define START_DAEMON_OR_SKIP(daemon) \
  TANDEM_SKIP_UNLESS_AVAILABLE((daemon).Start(), "no private libvirtd can run here: ")

// A domain as an operator would have it before protection: a user-mode NIC of libvirt's own (libvirt puts it
// behind a pcie-root-port it adds at slot 1), a balloon, a USB controller.
std::string PlainDomain(const std::string& name) {
  return "<domain type='qemu'><name>" + name +
         "</name><memory unit='KiB'>65536</memory><vcpu>1</vcpu>"
         "<os><type arch='x86_64' machine='q35'>hvm</type></os><devices>"
         "<interface type='user'><mac address='52:54:00:aa:00:01'/><model type='e1000e'/></interface>"
         "<memballoon model='virtio'/><controller type='usb' model='qemu-xhci'/></devices></domain>";
}

TEST(LibvirtDaemonTest, ProtectedDomainRunsOnTandemsRamFileAndDevicesAndItsStopIsSeen) {
  PrivateLibvirtd daemon;
  START_DAEMON_OR_SKIP(daemon);
  TempDir dir;
  const std::string domain = "tandem-lv-" + std::to_string(getpid());
  {
    auto conn = libvirt::Connection::Open(daemon.uri());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    ASSERT_TRUE(conn.value()->Define(PlainDomain(domain)).ok());
  }
  qemu::VmConfig vm = qemu::testing::TestGuestVm(dir.path(), "lv", "tcg", 64, "pages=64 rate=2000");
  vm.output_args = {"-serial", "file:" + vm.serial_log};
  auto nic = output_commit::QemuNicArgs({.mac = "52:54:00:12:34:56"}, dir.path());
  ASSERT_TRUE(nic.ok());
  vm.output_args.insert(vm.output_args.end(), nic->begin(), nic->end());
  auto ram = CreatePrivateFile(vm.ram_path, vm.memory_mb << 20);
  ASSERT_TRUE(ram.ok()) << ram.status().ToString();

  // allow_unprotected_devices: the domain's own NIC stays, so libvirt's PCI layout and tandem's devices meet.
  roles::LibvirtHost host({daemon.uri(), domain, /*allow_unprotected_devices=*/true});
  auto launched = host.Launch(vm, qemu::QemuRole::kPrimary, dir.path());
  ASSERT_TRUE(launched.ok()) << launched.status().ToString() << "\n" << daemon.DomainLog(domain);
  roles::Vm& qemu = *launched.value();
  EXPECT_TRUE(qemu.Running());
  ASSERT_GT(qemu.pid(), 0);
  EXPECT_NE(ReadFileOrEmpty("/proc/" + std::to_string(qemu.pid()) + "/cmdline").find("qemu-system"),
            std::string::npos);

  // Guest RAM is tandem's file: the machine's memory backend is tandem's object, on tandem's path.
  auto path = qemu.Execute("qom-get", {{"path", "/objects/mem"}, {"property", "mem-path"}});
  ASSERT_TRUE(path.ok()) << path.status().ToString();
  EXPECT_EQ(path->get<std::string>(), vm.ram_path);
  auto backend = qemu.Execute("qom-get", {{"path", "/machine"}, {"property", "memory-backend"}});
  ASSERT_TRUE(backend.ok()) << backend.status().ToString();
  EXPECT_EQ(backend->get<std::string>(), "/objects/mem");
  // tandem's NIC at its fixed slot of the root bus, libvirt's devices elsewhere: no clash.
  auto pci = qemu.Execute("query-pci");
  ASSERT_TRUE(pci.ok()) << pci.status().ToString();
  bool tandem_nic = false;
  int root_ports = 0;
  for (const auto& dev : (*pci)[0]["devices"]) {
    if (dev["slot"] == 0x18 && dev["id"]["vendor"] == 0x1af4 && dev["id"]["device"] == 0x1000) tandem_nic = true;
    if (dev.contains("pci_bridge")) ++root_ports;
  }
  EXPECT_TRUE(tandem_nic) << pci->dump();
  EXPECT_GE(root_ports, 1) << "libvirt's root port for the domain's own NIC" << pci->dump();
  // The guest runs (its counters come out of tandem's -serial), and libvirt says what it thinks of the domain.
  EXPECT_TRUE(WaitUntil(20000, [&] { return ParseCounters(ReadFileOrEmpty(vm.serial_log)).size() >= 2; }))
      << ReadFileOrEmpty(vm.serial_log);
  EXPECT_NE(daemon.DomainLog(domain).find("tainted: custom-argv"), std::string::npos) << daemon.DomainLog(domain);

  // An operator's `virsh destroy` (another connection): the role's VM learns it from libvirt's lifecycle event.
  auto watcher = libvirt::Connection::Open(daemon.uri());
  ASSERT_TRUE(watcher.ok());
  std::atomic<int> stopped{0};
  ASSERT_TRUE(watcher.value()
                  ->WatchLifecycle(domain, [&](libvirt::Lifecycle e, int) { stopped += e == libvirt::Lifecycle::kStopped; })
                  .ok());
  ASSERT_TRUE(watcher.value()->Destroy(domain).ok());
  EXPECT_TRUE(WaitUntil(10000, [&] { return stopped.load() == 1; })) << "no STOPPED event";
  EXPECT_TRUE(WaitUntil(10000, [&] { return !qemu.Running(); }));
  EXPECT_NE(::kill(qemu.pid(), 0), 0) << "QEMU still alive after destroy";
}

TEST(LibvirtDaemonTest, DomainWithAForeignDiskIsRefusedBeforeItStarts) {
  PrivateLibvirtd daemon;
  START_DAEMON_OR_SKIP(daemon);
  TempDir dir;
  const std::string domain = "tandem-lvd-" + std::to_string(getpid());
  std::string xml = PlainDomain(domain);
  xml.insert(xml.find("</devices>"),
             "<disk type='file' device='disk'><source file='" + dir.path() + "/x.raw'/><target dev='vda' "
             "bus='virtio'/></disk>");
  auto conn = libvirt::Connection::Open(daemon.uri());
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  ASSERT_TRUE(conn.value()->Define(xml).ok());
  qemu::VmConfig vm = qemu::testing::TestGuestVm(dir.path(), "lv", "tcg", 64, "");
  roles::LibvirtHost host({daemon.uri(), domain, false});
  auto launched = host.Launch(vm, qemu::QemuRole::kPrimary, dir.path());
  ASSERT_FALSE(launched.ok());
  EXPECT_NE(launched.status().message().find("(vda)"), std::string::npos) << launched.status().ToString();
  auto active = conn.value()->Active(domain);
  ASSERT_TRUE(active.ok());
  EXPECT_FALSE(active.value());
}

}  // namespace
}  // namespace tandem::testing
