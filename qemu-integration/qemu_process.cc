#include "qemu-integration/qemu_process.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "common/fd.h"

namespace tandem::qemu {
namespace {

[[noreturn]] void ChildFail(int err_fd, int err) {
  ssize_t ignored = ::write(err_fd, &err, sizeof(err));
  (void)ignored;
  _exit(127);
}

// Only async-signal-safe calls between fork and exec.
[[noreturn]] void ChildExec(char* const* argv, int log_fd, int err_fd, pid_t parent) {
  auto fail = [err_fd](int err) { ChildFail(err_fd, err); };
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(errno);
  // The parent may have died before prctl took effect; then nobody would ever deliver the signal.
  if (getppid() != parent) _exit(1);
  // tandem blocks SIGINT/SIGTERM in all threads and ignores SIGPIPE; the mask and ignored dispositions
  // survive exec, and QEMU must be stoppable with SIGTERM.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaction(sig, &dfl, nullptr);
  // QEMU must not hold tandem's sockets (a listener kept open by QEMU would outlive tandem).
  syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || dup2(devnull, 0) < 0) fail(errno);
  if (dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) fail(errno);
  execv(argv[0], argv);
  ChildFail(err_fd, errno);
}

}  // namespace

Result<std::unique_ptr<QemuProcess>> QemuProcess::Spawn(const std::vector<std::string>& argv,
                                                        const std::string& log_path) {
  if (argv.empty()) return Status::InvalidArgument("QEMU argv is empty");
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log.valid()) return Status::FromErrno("open QEMU log " + log_path, errno);
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
  UniqueFd err_read(pipe_fds[0]), err_write(pipe_fds[1]);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) return Status::FromErrno("fork", errno);
  if (pid == 0) ChildExec(cargv.data(), log.get(), err_write.get(), parent);
  err_write.reset();
  std::unique_ptr<QemuProcess> process(new QemuProcess(pid));
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(err_read.get(), &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  if (n == sizeof(child_errno)) {
    process->Reap(/*block=*/true);
    return Status::FromErrno("exec " + argv[0], child_errno);
  }
  return process;
}

QemuProcess::~QemuProcess() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    Reap(/*block=*/true);
  }
}

bool QemuProcess::Reap(bool block) {
  if (reaped_) return true;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  reaped_ = true;
  if (r < 0) {
    exit_code_ = -1;  // someone else reaped it (ECHILD); we only know it is gone
  } else if (WIFEXITED(status)) {
    exit_code_ = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    exit_code_ = 128 + WTERMSIG(status);
  }
  return true;
}

bool QemuProcess::Running() { return !Reap(/*block=*/false); }

void QemuProcess::Kill(int sig) {
  if (!Reap(/*block=*/false)) ::kill(pid_, sig);
}

Result<int> QemuProcess::Wait(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  auto sleep = std::chrono::microseconds(200);
  while (!Reap(/*block=*/false)) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::Timeout("QEMU pid " + std::to_string(pid_) + " still running after " + std::to_string(timeout_ms) +
                             " ms");
    }
    std::this_thread::sleep_for(sleep);
    sleep = std::min(sleep * 2, std::chrono::microseconds(10000));
  }
  return exit_code_;
}

Result<std::string> FindQemuBinary() {
  if (const char* env = std::getenv("TANDEM_QEMU"); env != nullptr && *env != '\0') {
    if (::access(env, X_OK) != 0) return Status::NotFound(std::string("TANDEM_QEMU=") + env + " is not executable");
    return std::string(env);
  }
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  for (size_t start = 0; start <= dirs.size();) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/qemu-system-x86_64";
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return Status::NotFound("qemu-system-x86_64 not found in PATH (install qemu-system-x86 or set TANDEM_QEMU)");
}

}  // namespace tandem::qemu
