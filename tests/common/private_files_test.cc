#include "common/private_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace tandem {
namespace {

constexpr uid_t kNobody = 65534;

class PrivateFilesTest : public ::testing::Test {
 protected:

  static mode_t ModeOf(const std::string& path) {
    struct stat st;
    EXPECT_EQ(lstat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  static void WriteText(const std::string& path, const std::string& text) { std::ofstream(path) << text; }
  static std::string ReadText(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  testing::TempDir scratch_;
  const std::string root_ = scratch_.path();
};

TEST_F(PrivateFilesTest, CreatesDirectories0700AndFiles0600WhateverTheUmask) {
  const mode_t old = umask(0);  // the most permissive umask: modes must still come out private
  const std::string dir = root_ + "/a/b/vm";
  Status st = EnsurePrivateDir(dir);
  auto fd = CreatePrivateFile(dir + "/vm.ram", 1 << 20);
  umask(0277);  // and one that would take the owner's write bit away
  auto fd2 = CreatePrivateFile(dir + "/vm.replica", 4096);
  umask(old);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  ASSERT_TRUE(fd2.ok()) << fd2.status().ToString();
  EXPECT_EQ(ModeOf(root_ + "/a"), 0700u);
  EXPECT_EQ(ModeOf(dir), 0700u);
  EXPECT_EQ(ModeOf(dir + "/vm.ram"), 0600u);
  EXPECT_EQ(ModeOf(dir + "/vm.replica"), 0600u);
  EXPECT_EQ(std::filesystem::file_size(dir + "/vm.ram"), 1u << 20);
  EXPECT_TRUE(CheckPrivateFile(dir + "/vm.ram").ok());
}

TEST_F(PrivateFilesTest, ExistingDirectoryOpenToOthersIsRefused) {
  const std::string dir = root_ + "/shared";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(chmod(dir.c_str(), 0755), 0);
  Status st = EnsurePrivateDir(dir);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("mode 0755"), std::string::npos) << st.ToString();
  EXPECT_FALSE(CreatePrivateFile(dir + "/vm.ram", 4096).ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/vm.ram"));
}

TEST_F(PrivateFilesTest, SymlinkInPlaceOfTheDirectoryIsRefused) {
  const std::string elsewhere = root_ + "/elsewhere";
  ASSERT_EQ(mkdir(elsewhere.c_str(), 0700), 0);
  ASSERT_EQ(symlink(elsewhere.c_str(), (root_ + "/vm").c_str()), 0);
  Status st = EnsurePrivateDir(root_ + "/vm");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("symlink"), std::string::npos) << st.ToString();
}

TEST_F(PrivateFilesTest, AncestorWritableByOthersWithoutStickyBitIsRefused) {
  const std::string open = root_ + "/open";
  ASSERT_EQ(mkdir(open.c_str(), 0700), 0);
  ASSERT_EQ(chmod(open.c_str(), 0777), 0);
  Status st = EnsurePrivateDir(open + "/vm");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("writable by others"), std::string::npos) << st.ToString();
  EXPECT_FALSE(std::filesystem::exists(open + "/vm"));
}

TEST_F(PrivateFilesTest, StickyAncestorLikeDevShmIsAccepted) {
  const std::string shm_like = root_ + "/shm";
  ASSERT_EQ(mkdir(shm_like.c_str(), 0700), 0);
  ASSERT_EQ(chmod(shm_like.c_str(), 01777), 0);
  Status st = EnsurePrivateDir(shm_like + "/tandem");
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST_F(PrivateFilesTest, RelativePathIsRefused) { EXPECT_FALSE(EnsurePrivateDir("relative/dir").ok()); }

TEST_F(PrivateFilesTest, PlantedSymlinkAtAFileIsReplacedNotFollowed) {
  ASSERT_TRUE(EnsurePrivateDir(root_ + "/vm").ok());
  const std::string target = root_ + "/victim";
  WriteText(target, "precious");
  ASSERT_EQ(symlink(target.c_str(), (root_ + "/vm/vm.ram").c_str()), 0);
  auto fd = CreatePrivateFile(root_ + "/vm/vm.ram", 8192);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_EQ(ReadText(target), "precious");
  EXPECT_TRUE(CheckPrivateFile(root_ + "/vm/vm.ram").ok());
  EXPECT_EQ(std::filesystem::file_size(root_ + "/vm/vm.ram"), 8192u);
}

TEST_F(PrivateFilesTest, StaleFileOfAnEarlierRunIsReplacedByAFreshOne) {
  ASSERT_TRUE(EnsurePrivateDir(root_ + "/vm").ok());
  WriteText(root_ + "/vm/vm.ram", "old guest memory");
  ASSERT_EQ(chmod((root_ + "/vm/vm.ram").c_str(), 0644), 0);
  auto fd = CreatePrivateFile(root_ + "/vm/vm.ram", 4096);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_EQ(ModeOf(root_ + "/vm/vm.ram"), 0600u);
  char first = 'x';
  ASSERT_EQ(pread(fd->get(), &first, 1, 0), 1);
  EXPECT_EQ(first, '\0');
}

TEST_F(PrivateFilesTest, DirectoryWhereAFileShouldBeIsRefused) {
  ASSERT_TRUE(EnsurePrivateDir(root_ + "/vm").ok());
  ASSERT_EQ(mkdir((root_ + "/vm/vm.ram").c_str(), 0700), 0);
  EXPECT_FALSE(CreatePrivateFile(root_ + "/vm/vm.ram", 4096).ok());
}

TEST_F(PrivateFilesTest, FileOpenToOthersFailsTheCheck) {
  ASSERT_TRUE(EnsurePrivateDir(root_ + "/vm").ok());
  WriteText(root_ + "/vm/f", "x");
  ASSERT_EQ(chmod((root_ + "/vm/f").c_str(), 0640), 0);
  Status st = CheckPrivateFile(root_ + "/vm/f");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("mode 0640"), std::string::npos) << st.ToString();
}

// Ownership needs a second user: only root can make a file or directory belong to someone else here.
TEST_F(PrivateFilesTest, DirectoryAndFileOwnedBySomeoneElseAreRefused) {
  if (geteuid() != 0) GTEST_SKIP() << "SKIPPED: needs root to chown a file to another user (uid " << kNobody << ")";
  const std::string dir = root_ + "/foreign";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(chown(dir.c_str(), kNobody, kNobody), 0);
  Status st = EnsurePrivateDir(dir);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("owned by uid 65534"), std::string::npos) << st.ToString();

  ASSERT_TRUE(EnsurePrivateDir(root_ + "/vm").ok());
  const std::string planted = root_ + "/vm/vm.ram";
  WriteText(planted, "not ours");
  ASSERT_EQ(chmod(planted.c_str(), 0600), 0);
  ASSERT_EQ(chown(planted.c_str(), kNobody, kNobody), 0);
  EXPECT_FALSE(CheckPrivateFile(planted).ok());
  EXPECT_FALSE(CreatePrivateFile(planted, 4096).ok());
  EXPECT_EQ(ReadText(planted), "not ours");

  const std::string foreign_parent = root_ + "/theirs";
  ASSERT_EQ(mkdir(foreign_parent.c_str(), 0755), 0);
  ASSERT_EQ(chown(foreign_parent.c_str(), kNobody, kNobody), 0);
  st = EnsurePrivateDir(foreign_parent + "/vm");
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("another user controls"), std::string::npos) << st.ToString();
}

TEST_F(PrivateFilesTest, RemoveOnExitRemovesUnlessKept) {
  ASSERT_TRUE(EnsurePrivateDir(root_ + "/vm").ok());
  WriteText(root_ + "/vm/a", "a");
  WriteText(root_ + "/vm/b", "b");
  {
    RemoveOnExit a(root_ + "/vm/a");
    RemoveOnExit b(root_ + "/vm/b");
    b.Keep();
  }
  EXPECT_FALSE(std::filesystem::exists(root_ + "/vm/a"));
  EXPECT_TRUE(std::filesystem::exists(root_ + "/vm/b"));
}

TEST_F(PrivateFilesTest, ListFilesCountsWhatTheFilesReallyHold) {
  ASSERT_TRUE(EnsurePrivateDir(root_ + "/vm").ok());
  auto sparse = CreatePrivateFile(root_ + "/vm/vm0.replica", 64 << 20);  // 64 MiB apparent, nothing written
  ASSERT_TRUE(sparse.ok());
  std::string page(1 << 20, 'x');
  ASSERT_EQ(pwrite(sparse->get(), page.data(), page.size(), 0), ssize_t(page.size()));
  WriteText(root_ + "/vm/other.ram", "x");
  auto files = ListFiles(root_ + "/vm", "vm0.");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].path, root_ + "/vm/vm0.replica");
  EXPECT_GE(files[0].bytes, 1u << 20);
  EXPECT_LT(files[0].bytes, 8u << 20);
  EXPECT_TRUE(ListFiles(root_ + "/missing", "").empty());
}

// A restarted standby keeps its replica (the primary then resyncs only the pages whose hash differs); anything
// that is not exactly our private file of the right size is replaced, never reused.
TEST_F(PrivateFilesTest, KeepsAnExistingPrivateFileOfTheRightSizeWithItsContent) {
  const std::string dir = root_ + "/vm";
  ASSERT_TRUE(EnsurePrivateDir(dir).ok());
  const std::string path = dir + "/vm.replica";
  {
    auto fd = CreatePrivateFile(path, 8192);
    ASSERT_TRUE(fd.ok());
    ASSERT_EQ(pwrite(fd->get(), "held", 4, 4096), 4);
  }
  bool kept = false;
  auto again = KeepOrCreatePrivateFile(path, 8192, &kept);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(kept);
  char buf[4] = {};
  ASSERT_EQ(pread(again->get(), buf, 4, 4096), 4);
  EXPECT_EQ(std::string(buf, 4), "held");
  // Another size: a fresh file.
  auto resized = KeepOrCreatePrivateFile(path, 16384, &kept);
  ASSERT_TRUE(resized.ok());
  EXPECT_FALSE(kept);
  EXPECT_EQ(std::filesystem::file_size(path), 16384u);
  ASSERT_EQ(pread(resized->get(), buf, 4, 4096), 4);
  EXPECT_EQ(std::string(buf, 4), std::string(4, '\0'));
}

TEST_F(PrivateFilesTest, AFileOpenToOthersOrASymlinkIsNotKept) {
  const std::string dir = root_ + "/vm";
  ASSERT_TRUE(EnsurePrivateDir(dir).ok());
  const std::string path = dir + "/vm.replica";
  WriteText(path, std::string(4096, 'x'));
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  bool kept = true;
  auto fd = KeepOrCreatePrivateFile(path, 4096, &kept);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  EXPECT_FALSE(kept);
  EXPECT_EQ(ModeOf(path), 0600u);
  EXPECT_EQ(ReadText(path), std::string(4096, '\0'));
  const std::string target = dir + "/target";
  WriteText(target, std::string(4096, 'y'));
  ASSERT_EQ(chmod(target.c_str(), 0600), 0);
  ASSERT_EQ(unlink(path.c_str()), 0);
  ASSERT_EQ(symlink(target.c_str(), path.c_str()), 0);
  auto link = KeepOrCreatePrivateFile(path, 4096, &kept);
  ASSERT_TRUE(link.ok()) << link.status().ToString();
  EXPECT_FALSE(kept);
  EXPECT_EQ(ReadText(target), std::string(4096, 'y')) << "the symlink's target was written";
}

}  // namespace
}  // namespace tandem
