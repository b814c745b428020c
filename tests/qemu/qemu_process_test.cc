// QemuProcess on ordinary programs (sh, sleep): spawning, exit codes, kill -9, and the PDEATHSIG split-brain guard.
#include "qemu-integration/qemu_process.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "tests/qemu/qemu_test_util.h"

namespace tandem::qemu {
namespace {

using testing::ReadFileOrEmpty;
using testing::TempDir;

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0; }

TEST(QemuProcessTest, ExitCodeAndOutputGoToTheLog) {
  TempDir dir;
  auto p = QemuProcess::Spawn({"/bin/sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3"}, dir / "log");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  auto code = (*p)->Wait(10000);
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 3);
  EXPECT_FALSE((*p)->Running());
  const std::string log = ReadFileOrEmpty(dir / "log");
  EXPECT_NE(log.find("to-stdout"), std::string::npos) << log;
  EXPECT_NE(log.find("to-stderr"), std::string::npos) << log;
}

TEST(QemuProcessTest, ExecFailureIsReportedBySpawn) {
  TempDir dir;
  auto p = QemuProcess::Spawn({dir / "no-such-binary"}, dir / "log");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("No such file"), std::string::npos) << p.status().ToString();
}

TEST(QemuProcessTest, Kill9IsReportedAsSignal) {
  TempDir dir;
  auto p = QemuProcess::Spawn({"/bin/sleep", "100"}, dir / "log");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE((*p)->Running());
  (*p)->Kill(SIGKILL);
  auto code = (*p)->Wait(10000);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 128 + SIGKILL);
  EXPECT_FALSE((*p)->Running());
}

TEST(QemuProcessTest, WaitTimesOutAndDestructorKills) {
  TempDir dir;
  pid_t pid = 0;
  {
    auto p = QemuProcess::Spawn({"/bin/sleep", "100"}, dir / "log");
    ASSERT_TRUE(p.ok());
    pid = (*p)->pid();
    EXPECT_TRUE((*p)->Wait(50).status().IsTimeout());
    EXPECT_TRUE(Alive(pid));
  }
  // Reaped by the destructor: the pid no longer names our child.
  EXPECT_FALSE(Alive(pid));
}

TEST(QemuProcessTest, SigtermWorksEvenWhenTandemBlocksIt) {
  // tandem blocks SIGINT/SIGTERM in every thread (a signal thread sigwaits) and ignores SIGPIPE; QEMU must not
  // inherit that, or `kill <qemu>` would do nothing.
  sigset_t set, old;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, &old);
  TempDir dir;
  auto p = QemuProcess::Spawn({"/bin/sleep", "100"}, dir / "log");
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(p.ok());
  (*p)->Kill(SIGTERM);
  auto code = (*p)->Wait(10000);
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 128 + SIGTERM);
}

TEST(QemuProcessTest, TandemFileDescriptorsAreNotInherited) {
  TempDir dir;
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);  // deliberately without O_CLOEXEC
  ASSERT_EQ(dup2(fds[0], 77), 77);
  auto p = QemuProcess::Spawn({"/bin/sh", "-c", "ls /proc/$$/fd"}, dir / "log");
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE((*p)->Wait(10000).ok());
  close(fds[0]), close(fds[1]), close(77);
  const std::string log = ReadFileOrEmpty(dir / "log");
  EXPECT_NE(log.find('0'), std::string::npos) << log;
  EXPECT_EQ(log.find("77"), std::string::npos) << "fd 77 leaked into the child:\n" << log;
}

TEST(QemuProcessTest, ChildDiesWhenTandemDies) {
  // An intermediate process plays tandem: it spawns the child and dies with SIGKILL. This test process is the
  // subreaper, so the orphan comes to us and we can see how it ended.
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  TempDir dir;
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  const pid_t tandem = fork();
  ASSERT_GE(tandem, 0);
  if (tandem == 0) {
    auto p = QemuProcess::Spawn({"/bin/sleep", "100"}, dir / "log");
    pid_t child = p.ok() ? (*p)->pid() : -1;
    if (write(pipe_fds[1], &child, sizeof(child)) != sizeof(child)) _exit(1);
    pause();
    _exit(0);
  }
  close(pipe_fds[1]);
  pid_t child = -1;
  ASSERT_EQ(read(pipe_fds[0], &child, sizeof(child)), ssize_t(sizeof(child)));
  close(pipe_fds[0]);
  ASSERT_GT(child, 0);
  EXPECT_TRUE(Alive(child));
  ::kill(tandem, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(tandem, &status, 0), tandem);
  // The orphan is re-parented to us; wait (bounded) for it to die of SIGKILL.
  pid_t r = 0;
  for (int i = 0; i < 500 && r == 0; ++i) {
    r = waitpid(child, &status, WNOHANG);
    if (r == 0) usleep(10000);
  }
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  if (r == 0) ::kill(child, SIGKILL), waitpid(child, &status, 0);
  ASSERT_EQ(r, child) << "child outlived its parent by 5 s";
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

TEST(QemuProcessTest, FindQemuBinaryHonorsTandemQemu) {
  ASSERT_EQ(setenv("TANDEM_QEMU", "/bin/true", 1), 0);
  auto found = FindQemuBinary();
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(*found, "/bin/true");
  ASSERT_EQ(setenv("TANDEM_QEMU", "/nonexistent/qemu", 1), 0);
  EXPECT_EQ(FindQemuBinary().status().code(), Status::Code::kNotFound);
  unsetenv("TANDEM_QEMU");
}

TEST(QemuProcessTest, FindQemuBinarySearchesPath) {
  TempDir dir;
  const std::string fake = dir / "qemu-system-x86_64";
  int fd = ::open(fake.c_str(), O_WRONLY | O_CREAT, 0755);
  ASSERT_GE(fd, 0);
  close(fd);
  const char* old = getenv("PATH");
  const std::string saved = old ? old : "";
  unsetenv("TANDEM_QEMU");
  setenv("PATH", ("/nonexistent:" + dir.path()).c_str(), 1);
  auto found = FindQemuBinary();
  setenv("PATH", dir.path().c_str(), 1);
  ::chmod(fake.c_str(), 0644);  // not executable: not a candidate
  auto not_found = FindQemuBinary();
  setenv("PATH", saved.c_str(), 1);
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(*found, fake);
  EXPECT_EQ(not_found.status().code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace tandem::qemu
