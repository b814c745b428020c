// End to end through libvirt: the primary's VM is a domain of a libvirtd the test starts; real tandem processes,
// the standby's QEMU tandem's own; protect, kill -9 the primary host's QEMU and tandem, the standby resumes.
// COLO checkpoints need KVM (QEMU 7.2 deadlocks under TCG at the first one): skipped loudly without it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "libvirt/connection.h"
#include "tests/integration/cluster.h"
#include "tests/libvirt/private_libvirtd.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

TEST(LibvirtFailoverTest, DomainProtectedThroughLibvirtFailsOverToTheStandby) {
  TANDEM_REQUIRE_KVM();
  PrivateLibvirtd daemon;
  TANDEM_SKIP_UNLESS_AVAILABLE(daemon.Start(), "no private libvirtd can run here: ");
  const std::string domain = "tandem-lvf-" + std::to_string(getpid());
  {
    auto conn = libvirt::Connection::Open(daemon.uri());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    // What the operator defined; the primary rewrites it at start (tandem libvirt-xml shows how).
    ASSERT_TRUE(conn.value()
                    ->Define("<domain type='kvm'><name>" + domain +
                             "</name><memory unit='KiB'>32768</memory><vcpu>1</vcpu><os><type arch='x86_64' "
                             "machine='q35'>hvm</type></os><devices><memballoon model='virtio'/></devices></domain>")
                    .ok());
  }
  Cluster c("[libvirt]\nuri = \"" + daemon.uri() + "\"\ndomain = \"" + domain + "\"\n");
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 15000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  c.StartPrimary();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("last_applied", 0u) >= 20; }))
      << c.Diagnostics();
  for (int i = 0; i < 400 && c.Counters("primary").size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const std::vector<CounterLine> before = c.Counters("primary");
  ASSERT_GE(before.size(), 3u) << c.Diagnostics();
  EXPECT_NE(daemon.DomainLog(domain).find("tainted: custom-argv"), std::string::npos);

  const pid_t primary = pid_t(c.Status("primary")["pid"].get<int>());
  c.Kill9(pid_t(c.StatusNumber("primary", "qemu_pid")));  // the domain's QEMU, libvirtd's child
  c.Kill9(primary);
  ASSERT_TRUE(c.WaitFor("standby", 20000, [](const json& s) { return s.value("state", "") == "active"; }))
      << c.Diagnostics();
  std::vector<CounterLine> after;
  for (int i = 0; i < 100 && after.size() < 3; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after = c.Counters("standby");
  }
  ASSERT_GE(after.size(), 3u) << c.Diagnostics();
  const std::string serial = c.Serial("standby");
  EXPECT_EQ(serial.find("tandem-guest boot"), std::string::npos) << "resumed guest rebooted" << c.Diagnostics();
  EXPECT_EQ(serial.find("INVARIANT BROKEN"), std::string::npos) << c.Diagnostics();
  // The first counter after resume continues from where the primary was, give or take one print interval.
  uint64_t step = 1;
  for (size_t i = 1; i < before.size(); ++i) step = std::max(step, before[i].counter - before[i - 1].counter);
  EXPECT_GE(after[0].counter + 2 * step, before.back().counter) << c.Diagnostics();
  EXPECT_LE(after[0].counter, before.back().counter + 2 * step) << c.Diagnostics();
}

}  // namespace
}  // namespace tandem::testing
