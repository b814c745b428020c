#include "common/env.h"

#include "common/net_address.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace tandem {
namespace {

int64_t ReadClock(clockid_t id) {
  timespec ts{};
  clock_gettime(id, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

class RealClock final : public Clock {
 public:
  // BOOTTIME keeps counting while the host is suspended: a primary that wakes from suspend must see that its
  // lease ran out meanwhile (MONOTONIC would stop and let it believe the lease is still valid).
  int64_t NowNanos() override { return ReadClock(CLOCK_BOOTTIME); }
  int64_t WallNanos() override { return ReadClock(CLOCK_REALTIME); }
  void SleepNanos(int64_t ns) override {
    if (ns <= 0) return;
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    while (nanosleep(&ts, &ts) != 0) {
    }
  }
};

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr;
  TANDEM_RETURN_IF_ERROR(MakeUnixSockaddr(path, &addr).WithContext(path));
  return addr;
}

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
  // survive exec, and the child must be stoppable with SIGTERM.
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaction(sig, &dfl, nullptr);
  // The child must not hold tandem's sockets (a listener kept open by QEMU would outlive tandem).
  syscall(SYS_close_range, 3u, ~0u, CLOSE_RANGE_CLOEXEC);
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0 || dup2(devnull, 0) < 0) fail(errno);
  if (dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0) fail(errno);
  execv(argv[0], argv);
  ChildFail(err_fd, errno);
}

class PosixEnv final : public Env {
 public:
  Clock* clock() override { return SystemClock(); }

  Result<UniqueFd> OpenFile(const std::string& path, unsigned flags, unsigned mode) override {
    int f = O_CLOEXEC;
    if (flags & kDirectory) {
      f |= O_RDONLY | O_DIRECTORY;
    } else if ((flags & kRead) && (flags & (kWrite | kAppend))) {
      f |= O_RDWR;
    } else if (flags & (kWrite | kAppend)) {
      f |= O_WRONLY;
    } else {
      f |= O_RDONLY;
    }
    if (flags & kCreate) f |= O_CREAT;
    if (flags & kTruncate) f |= O_TRUNC;
    if (flags & kAppend) f |= O_APPEND;
    if (flags & kExclusive) f |= O_EXCL;
    UniqueFd fd(::open(path.c_str(), f, mode_t(mode)));
    if (!fd.valid()) {
      if (errno == ENOENT) return Status::NotFound("open " + path + ": no such file or directory");
      return Status::FromErrno("open " + path, errno);
    }
    return fd;
  }

  Status SyncFile(int fd, const std::string& path) override {
    return ::fsync(fd) == 0 ? Status::Ok() : Status::FromErrno("fsync " + path, errno);
  }

  Status RenameFile(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) == 0) return Status::Ok();
    return Status::FromErrno("rename " + from + " to " + to, errno);
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) == 0) return Status::Ok();
    if (errno == ENOENT) return Status::NotFound("remove " + path + ": no such file");
    return Status::FromErrno("remove " + path, errno);
  }

  Result<UniqueFd> LockFile(const std::string& path) override {
    TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, kRead | kWrite | kCreate, 0600));
    if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
      if (errno == EWOULDBLOCK) return Status::IoError(path + " is locked by another process");
      return Status::FromErrno("lock " + path, errno);
    }
    return fd;
  }

  Result<UniqueFd> Connect(const sockaddr* address, socklen_t len, SocketType type) override {
    UniqueFd fd(::socket(address->sa_family, SockType(type), 0));
    if (!fd.valid()) return Status::FromErrno("socket", errno);
    if (::connect(fd.get(), address, len) == 0) return fd;
    const int err = errno;
    const std::string what = "connect to " + SocketAddressText(address, len);
    if (err == ENOENT || err == ECONNREFUSED || err == EAGAIN) {
      return Status::NotFound(what + ": " + std::strerror(err));
    }
    return Status::FromErrno(what, err);
  }

  Result<UniqueFd> Listen(const sockaddr* address, socklen_t len, int backlog) override {
    UniqueFd fd(::socket(address->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return Status::FromErrno("socket", errno);
    if (address->sa_family != AF_UNIX) {
      const int one = 1;
      setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    }
    const std::string where = SocketAddressText(address, len);
    if (::bind(fd.get(), address, len) != 0) return Status::FromErrno("bind " + where, errno);
    if (::listen(fd.get(), backlog) != 0) return Status::FromErrno("listen on " + where, errno);
    return fd;
  }

  Result<UniqueFd> Bind(const sockaddr* address, socklen_t len) override {
    UniqueFd fd(::socket(address->sa_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return Status::FromErrno("socket", errno);
    if (::bind(fd.get(), address, len) != 0) return Status::FromErrno("bind " + SocketAddressText(address, len), errno);
    return fd;
  }

  Result<UniqueFd> Accept(int listener) override {
    for (;;) {
      const int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) return UniqueFd(fd);
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN) return Status::Timeout("accept: no connection waiting");
      return Status::FromErrno("accept", errno);
    }
  }

  Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) override {
    if (argv.empty()) return Status::InvalidArgument("spawn: argv is empty");
    std::vector<char*> cargv;
    for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    auto log = OpenFile(log_path, kWrite | kCreate | kAppend, 0600);
    if (!log.ok()) return log.status().WithContext("log of " + argv[0]);
    int pipe_fds[2];
    if (pipe2(pipe_fds, O_CLOEXEC) != 0) return Status::FromErrno("pipe", errno);
    UniqueFd err_read(pipe_fds[0]), err_write(pipe_fds[1]);
    const pid_t parent = getpid();
    const pid_t pid = fork();
    if (pid < 0) return Status::FromErrno("fork", errno);
    if (pid == 0) ChildExec(cargv.data(), log->get(), err_write.get(), parent);
    err_write.reset();
    int child_errno = 0;
    ssize_t n;
    do {
      n = ::read(err_read.get(), &child_errno, sizeof(child_errno));
    } while (n < 0 && errno == EINTR);
    if (n == sizeof(child_errno)) {
      (void)Wait(pid, /*block=*/true);
      return Status::FromErrno("exec " + argv[0], child_errno);
    }
    return pid;
  }

  Status Kill(pid_t pid, int sig) override {
    if (::kill(pid, sig) == 0) return Status::Ok();
    return Status::FromErrno("kill pid " + std::to_string(pid), errno);
  }

  Result<std::optional<int>> Wait(pid_t pid, bool block) override {
    int status = 0;
    pid_t r;
    do {
      r = waitpid(pid, &status, block ? 0 : WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) return std::optional<int>();
    if (r < 0) {
      if (errno == ECHILD) return std::optional<int>(-1);  // someone else reaped it: we only know it is gone
      return Status::FromErrno("waitpid " + std::to_string(pid), errno);
    }
    if (WIFSIGNALED(status)) return std::optional<int>(128 + WTERMSIG(status));
    return std::optional<int>(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }

 private:
  static int SockType(SocketType type) {
    return (type == SocketType::kStream ? SOCK_STREAM : SOCK_DGRAM | SOCK_NONBLOCK) | SOCK_CLOEXEC;
  }
};

}  // namespace

Clock* SystemClock() {
  static RealClock clock;
  return &clock;
}

Env* Env::Default() {
  static PosixEnv env;
  return &env;
}

std::string SocketAddressText(const sockaddr* address, socklen_t len) {
  char host[INET6_ADDRSTRLEN] = "?";
  if (address->sa_family == AF_UNIX) {
    const auto* un = reinterpret_cast<const sockaddr_un*>(address);
    return std::string(un->sun_path, strnlen(un->sun_path, len - offsetof(sockaddr_un, sun_path)));
  }
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    return std::string(host) + ":" + std::to_string(ntohs(in->sin_port));
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    return "[" + std::string(host) + "]:" + std::to_string(ntohs(in6->sin6_port));
  }
  return "(address family " + std::to_string(address->sa_family) + ")";
}

Result<std::string> Env::ReadFile(const std::string& path, size_t max_bytes) {
  TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(path, kRead));
  std::string out;
  char chunk[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read " + path, errno);
    }
    if (n == 0) return out;
    if (out.size() + size_t(n) > max_bytes) {
      return Status::Corruption(path + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(chunk, size_t(n));
  }
}

Status Env::WriteFileAtomically(const std::string& path, std::string_view contents, unsigned mode) {
  const std::string tmp = path + ".tmp";
  Status st = [&]() -> Status {
    TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, OpenFile(tmp, kWrite | kCreate | kTruncate, mode));
    TANDEM_RETURN_IF_ERROR(WriteFull(fd.get(), contents.data(), contents.size()).WithContext("write " + tmp));
    TANDEM_RETURN_IF_ERROR(SyncFile(fd.get(), tmp));
    return RenameFile(tmp, path);
  }();
  if (!st.ok()) {
    (void)RemoveFile(tmp);
    return st;
  }
  // The rename itself must be durable before the caller acts on the new contents.
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  TANDEM_ASSIGN_OR_RETURN(UniqueFd dir_fd, OpenFile(dir, kDirectory));
  return SyncFile(dir_fd.get(), dir);
}

Result<UniqueFd> Env::ConnectUnix(const std::string& path) {
  TANDEM_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  return Connect(reinterpret_cast<const sockaddr*>(&addr), sizeof(addr), SocketType::kStream);
}

Result<UniqueFd> Env::ConnectUnixUntil(const std::string& path, int64_t deadline_ns, int64_t retry_ns) {
  for (;;) {
    auto fd = ConnectUnix(path);
    if (fd.ok() || fd.status().code() != Status::Code::kNotFound) return fd;
    if (clock()->NowNanos() >= deadline_ns) {
      return Status::Timeout(path + " not accepting in time (last error: " + fd.status().message() + ")");
    }
    clock()->SleepNanos(retry_ns);
  }
}

Result<UniqueFd> Env::ListenUnix(const std::string& path, int backlog) {
  TANDEM_ASSIGN_OR_RETURN(sockaddr_un addr, UnixAddress(path));
  (void)RemoveFile(path);  // a stale socket file from an earlier run
  return Listen(reinterpret_cast<const sockaddr*>(&addr), sizeof(addr), backlog);
}

}  // namespace tandem
