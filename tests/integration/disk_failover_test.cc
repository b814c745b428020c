// End to end with a disk: real tandem processes serving the guest's disk over NBD, real QEMU under KVM, real
// kill -9. The primary's image holds the guest's request log; the standby's starts empty, gets the blocks that
// differ in the first resync, and the guest resumed on the standby finds its disk and RAM in agreement (the
// test guest checks it every ~250 ms: tests/guest/README.md, "The disk invariant"). Needs KVM (COLO deadlocks
// under TCG at the first checkpoint): SKIPPED loudly without it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>
#include <vector>

#include "tests/guest/guest_layout.h"
#include "tests/integration/cluster.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

constexpr uint32_t kSectors = 2048;  // 1 MiB
constexpr uint32_t kRecords = 5;

// A raw image of kSectors sectors holding the guest's records 1..records (sector k = request k).
void MakeDisk(const std::string& dir, uint32_t records) {
  ASSERT_EQ(::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST, true);
  const std::string path = dir + "/disk.raw";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, off_t{kSectors} * TANDEM_GUEST_SECTOR_SIZE), 0);
  for (uint32_t k = 1; k <= records; ++k) {
    std::vector<uint32_t> s(TANDEM_GUEST_SECTOR_SIZE / 4, 0);
    s[TANDEM_GUEST_REC_W_MAGIC] = TANDEM_GUEST_REC_MAGIC;
    s[TANDEM_GUEST_REC_W_VALUE] = k;
    s[TANDEM_GUEST_REC_W_CHECK] = tandem_guest_rec_check(k);
    s[TANDEM_GUEST_REC_W_TAIL] = k;
    ASSERT_EQ(::pwrite(fd, s.data(), TANDEM_GUEST_SECTOR_SIZE, off_t{k} * TANDEM_GUEST_SECTOR_SIZE),
              ssize_t{TANDEM_GUEST_SECTOR_SIZE});
  }
  ::close(fd);
}

TEST(DiskFailoverTest, TheResumedGuestFindsItsDiskOnTheStandby) {
  TANDEM_REQUIRE_KVM();
  // `image = disk.raw`: relative, so each role's own copy in its state directory.
  Cluster c("[disk]\nimage = \"disk.raw\"\n");
  MakeDisk(c.dir() + "/primary", kRecords);
  MakeDisk(c.dir() + "/standby", 0);
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 15000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  c.StartPrimary();
  ASSERT_TRUE(c.WaitFor("standby", 60000, [&](const json& s) { return s.value("last_applied", 0u) >= 20; }))
      << c.Diagnostics();
  const std::string expected = "reqs=" + std::to_string(kRecords) + " disk=" + std::to_string(kRecords) + " ok";
  for (int i = 0; i < 400 && c.Serial("primary").find(expected) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(c.Serial("primary").find(expected), std::string::npos) << "the guest does not see its disk" << c.Diagnostics();
  EXPECT_NE(c.Log("primary").find("disk resync"), std::string::npos) << c.Diagnostics();

  const pid_t primary = pid_t(c.Status("primary")["pid"].get<int>());
  c.Kill9(pid_t(c.StatusNumber("primary", "qemu_pid")));
  c.Kill9(primary);
  ASSERT_TRUE(c.WaitFor("standby", 20000, [](const json& s) { return s.value("state", "") == "active"; }))
      << c.Diagnostics();
  // The resumed guest checks its disk against its RAM a few times a second: on the standby's image now.
  std::string serial;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    serial = c.Serial("standby");
    if (serial.find(expected) != std::string::npos) break;
  }
  EXPECT_NE(serial.find(expected), std::string::npos) << "resumed guest does not find its disk" << c.Diagnostics();
  EXPECT_EQ(serial.find("INVARIANT BROKEN"), std::string::npos) << "disk and RAM disagree" << c.Diagnostics();
  EXPECT_EQ(serial.find("tandem-guest boot"), std::string::npos) << "resumed guest rebooted" << c.Diagnostics();
}

}  // namespace
}  // namespace tandem::testing
