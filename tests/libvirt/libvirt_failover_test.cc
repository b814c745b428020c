// End to end through libvirt: the primary's VM is a domain of a libvirtd the test starts; real tandem processes,
// the standby's QEMU tandem's own; protect, kill -9 the primary host's QEMU and tandem, the standby resumes.
// COLO checkpoints need KVM (QEMU 7.2 deadlocks under TCG at the first one): the failover is skipped loudly
// without it; the primary's start through libvirt runs under TCG.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "libvirt/connection.h"
#include "tests/integration/cluster.h"
#include "tests/integration/resume_checks.h"
#include "tests/libvirt/private_libvirtd.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

// What runs without KVM: the primary role defines the protected domain, starts it through libvirt, takes QEMU's
// precopy into tandem (COLO under TCG stops at the first checkpoint), and destroys the domain when stopped.
// `type`: libvirt refuses to define a 'kvm' domain where KVM is missing.
std::string PlainDomain(const std::string& name, const std::string& type) {
  return "<domain type='" + type + "'><name>" + name +
         "</name><memory unit='KiB'>32768</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='q35'>hvm</type>"
         "</os><devices><memballoon model='virtio'/></devices></domain>";
}

TEST(LibvirtFailoverTest, PrimaryRunsTheDomainThroughLibvirtAndDestroysItWhenStopped) {
  PrivateLibvirtd daemon;
  TANDEM_SKIP_UNLESS_AVAILABLE(daemon.Start(), "no private libvirtd can run here: ");
  const std::string domain = "tandem-lvp-" + std::to_string(getpid());
  auto conn = libvirt::Connection::Open(daemon.uri());
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  Status defined = conn.value()->Define(PlainDomain(domain, "qemu"));
  ASSERT_TRUE(defined.ok()) << defined.ToString();
  Cluster c("[vm]\naccel = \"tcg\"\n\n[libvirt]\nuri = \"" + daemon.uri() + "\"\ndomain = \"" + domain + "\"\n");
  const pid_t primary = c.StartPrimary();
  for (int i = 0; i < 300 && c.Log("primary").find("precopy complete") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(c.Log("primary").find("precopy complete"), std::string::npos) << c.Diagnostics();
  auto active = conn.value()->Active(domain);
  ASSERT_TRUE(active.ok() && active.value()) << c.Diagnostics();
  auto xml = conn.value()->DomainXml(domain);
  ASSERT_TRUE(xml.ok());
  EXPECT_NE(xml->find("mem-path=" + c.memory_dir() + "/"), std::string::npos) << "tandem's RAM file" << *xml;
  EXPECT_NE(daemon.DomainLog(domain).find("tainted: custom-argv"), std::string::npos);

  ::kill(primary, SIGTERM);
  bool stopped = false;
  for (int i = 0; i < 200 && !stopped; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    auto now = conn.value()->Active(domain);
    stopped = now.ok() && !now.value();
  }
  EXPECT_TRUE(stopped) << "the domain outlived its primary role" << c.Diagnostics();
}

TEST(LibvirtFailoverTest, DomainProtectedThroughLibvirtFailsOverToTheStandby) {
  TANDEM_REQUIRE_KVM();
  PrivateLibvirtd daemon;
  TANDEM_SKIP_UNLESS_AVAILABLE(daemon.Start(), "no private libvirtd can run here: ");
  const std::string domain = "tandem-lvf-" + std::to_string(getpid());
  {
    auto conn = libvirt::Connection::Open(daemon.uri());
    ASSERT_TRUE(conn.ok()) << conn.status().ToString();
    // What the operator defined; the primary rewrites it at start (tandem libvirt-xml shows how).
    Status defined = conn.value()->Define(PlainDomain(domain, "kvm"));
    ASSERT_TRUE(defined.ok()) << defined.ToString();
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
  ExpectResumedConsistently(c, before.back().counter, PrintStep(before));
}

}  // namespace
}  // namespace tandem::testing
