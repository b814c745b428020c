// Where guest memory lives on the hosts (common/SECURITY.md): real tandem processes, real QEMU. Runs without KVM:
// the roles create their memory files before any checkpoint, so TCG (whose COLO deadlocks at the first
// checkpoint) is enough to see what they create, keep and leave behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/integration/cluster.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

constexpr const char* kTcg = "[vm]\naccel = \"tcg\"\n";

mode_t ModeOf(const std::string& path) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

bool WaitForFile(const std::string& path, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    if (std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// SIGTERM and a bounded wait: a clean stop. False if the process had to be killed.
bool StopCleanly(pid_t pid) {
  kill(pid, SIGTERM);
  for (int i = 0; i < 200; ++i) {
    if (waitpid(pid, nullptr, WNOHANG) == pid) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return false;
}

// The standby role up and waiting for a primary (its warm QEMU started, its replica created).
pid_t StartStandbyAndWait(Cluster& c) {
  const pid_t pid = c.StartStandby();
  EXPECT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  return pid;
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) names.push_back(entry.path().string());
  return names;
}

std::string Joined(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += " " + n;
  return out;
}

class MemoryFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(TANDEM_TEST_GUEST, R_OK) != 0) GTEST_SKIP() << "!!! SKIPPED: the test guest is not built";
  }
};

TEST_F(MemoryFilesTest, GuestMemoryIsPrivateWhileRunningAndGoneAfterACleanStop) {
  Cluster c(kTcg);
  const pid_t standby = StartStandbyAndWait(c);
  const std::string replica = c.Status("standby").value("replica", std::string());
  ASSERT_FALSE(replica.empty());
  const pid_t primary = c.StartPrimary();
  const std::string ram = replica.substr(0, replica.rfind('.')) + ".primary.ram";
  ASSERT_TRUE(WaitForFile(ram, 20000)) << c.Diagnostics();

  EXPECT_EQ(ModeOf(c.memory_dir()), 0700u);
  EXPECT_EQ(ModeOf(replica), 0600u);
  EXPECT_EQ(ModeOf(ram), 0600u);
  for (const char* role : {"primary", "standby"}) EXPECT_EQ(ModeOf(c.dir() + "/" + role), 0700u) << role;
  EXPECT_EQ(ModeOf(c.dir() + "/standby/qmp.sock") & 077, 0u) << "the QMP socket is for tandem's user only";

  // `tandem status` lists what the VM holds in memory_dir.
  const std::string listing = c.dir() + "/status.txt";
  const std::string command = std::string(TANDEM_BINARY) + " status --config " + c.config_path() + " > " + listing;
  ASSERT_EQ(system(command.c_str()), 0);
  std::ifstream in(listing);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(text.find("memory file " + replica), std::string::npos) << text;

  EXPECT_TRUE(StopCleanly(primary)) << c.Diagnostics();
  EXPECT_TRUE(StopCleanly(standby)) << c.Diagnostics();
  EXPECT_TRUE(FilesIn(c.memory_dir()).empty()) << "left behind:" << Joined(FilesIn(c.memory_dir()));
}

TEST_F(MemoryFilesTest, RestartAfterKill9KeepsTheReplicaForAResyncByHashesAndSaysSo) {
  Cluster c(kTcg);
  pid_t standby = StartStandbyAndWait(c);
  const std::string replica = c.Status("standby").value("replica", std::string());
  c.Kill9(standby);
  ASSERT_TRUE(std::filesystem::exists(replica)) << "kill -9 leaves the replica behind";

  standby = StartStandbyAndWait(c);
  EXPECT_NE(c.Log("standby").find("kept " + replica + " of an earlier run"), std::string::npos) << c.Log("standby");
  EXPECT_EQ(ModeOf(replica), 0600u);
  EXPECT_TRUE(StopCleanly(standby));
  EXPECT_TRUE(FilesIn(c.memory_dir()).empty()) << "left behind:" << Joined(FilesIn(c.memory_dir()));
}

TEST_F(MemoryFilesTest, PlantedSymlinkAtTheReplicaIsReplacedNotFollowed) {
  Cluster c(kTcg);
  // Learn the paths from a first run, then plant a symlink where the replica goes.
  pid_t standby = StartStandbyAndWait(c);
  const std::string replica = c.Status("standby").value("replica", std::string());
  ASSERT_TRUE(StopCleanly(standby));
  const std::string victim = c.dir() + "/victim";
  std::ofstream(victim) << "precious";
  ASSERT_EQ(symlink(victim.c_str(), replica.c_str()), 0);

  standby = StartStandbyAndWait(c);
  EXPECT_EQ(std::filesystem::file_size(victim), 8u) << "the symlink was followed";
  EXPECT_FALSE(std::filesystem::is_symlink(replica));
  EXPECT_EQ(ModeOf(replica), 0600u);
  EXPECT_TRUE(StopCleanly(standby));
}

TEST_F(MemoryFilesTest, MemoryDirOpenToOthersIsRefusedAtStart) {
  Cluster c(kTcg);
  std::filesystem::create_directories(c.memory_dir());
  ASSERT_EQ(chmod(c.memory_dir().c_str(), 0755), 0);
  const pid_t standby = c.StartStandby();
  int status = 0;
  for (int i = 0; i < 200 && waitpid(standby, &status, WNOHANG) != standby; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_TRUE(WIFEXITED(status)) << "the standby did not refuse to start" << c.Diagnostics();
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(c.Log("standby").find("mode 0755"), std::string::npos) << c.Log("standby");
  EXPECT_TRUE(FilesIn(c.memory_dir()).empty());
}

}  // namespace
}  // namespace tandem::testing
