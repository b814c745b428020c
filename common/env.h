// The host environment behind one seam, so tests can drive time and inject faults (LevelDB's Env, reduced to
// what tandem does with the host): the clock, files, sockets and child processes.
//
// Callers that only need time keep taking a Clock*; code that touches files, sockets or processes takes an Env*
// (defaulting to Env::Default()). EnvWrapper forwards everything to another Env, so a test overrides only what it
// needs (FaultInjectingEnv in common/fault_injecting_env.h fails chosen operations).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace tandem {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds; never goes backwards.
  virtual int64_t NowNanos() = 0;
  // Wall-clock nanoseconds since the epoch (for logs and heartbeat timestamps only, never for timeouts).
  virtual int64_t WallNanos() = 0;
  virtual void SleepNanos(int64_t ns) = 0;

  int64_t NowMillis() { return NowNanos() / 1'000'000; }
};

// The process-wide real clock (CLOCK_BOOTTIME: monotonic, and counts suspend / CLOCK_REALTIME).
Clock* SystemClock();

// A clock that only moves when told to; SleepNanos advances it. Thread-safe.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t start_ns = 1'000'000'000) : now_(start_ns) {}
  int64_t NowNanos() override { return now_.load(); }
  int64_t WallNanos() override { return now_.load(); }
  void SleepNanos(int64_t ns) override { now_.fetch_add(ns); }
  void Advance(int64_t ns) { now_.fetch_add(ns); }

 private:
  std::atomic<int64_t> now_;
};

// Every operation reports failure as a Status naming the operation and the path; nothing throws. All descriptors
// are close-on-exec.
class Env {
 public:
  virtual ~Env() = default;
  // The real host, on SystemClock(). Never deleted.
  static Env* Default();

  virtual Clock* clock() = 0;

  // --- Files.
  enum OpenFlags : unsigned {
    kRead = 1u << 0,
    kWrite = 1u << 1,  // kRead | kWrite: read-write
    kCreate = 1u << 2,
    kTruncate = 1u << 3,
    kAppend = 1u << 4,
    kExclusive = 1u << 5,  // with kCreate: fail if it exists
    kDirectory = 1u << 6,  // open a directory (read-only, e.g. to fsync it)
  };
  // NotFound when the path does not exist (and kCreate was not given).
  virtual Result<UniqueFd> OpenFile(const std::string& path, unsigned flags, unsigned mode = 0600) = 0;
  // fsync; `path` names the file in the error.
  virtual Status SyncFile(int fd, const std::string& path) = 0;
  virtual Status RenameFile(const std::string& from, const std::string& to) = 0;
  // NotFound when there is nothing to remove.
  virtual Status RemoveFile(const std::string& path) = 0;
  // An exclusive advisory lock (flock) on `path`, created if missing, held while the descriptor is open.
  // IoError at once if another open file description holds it.
  virtual Result<UniqueFd> LockFile(const std::string& path) = 0;

  // The whole file (NotFound when it does not exist; Corruption past max_bytes).
  Result<std::string> ReadFile(const std::string& path, size_t max_bytes = 64u << 20);
  // Replaces `path` with `contents` so that a crash at any point leaves either the old or the new file, and the
  // new one is durable when this returns: path.tmp, write, fsync, rename over path, fsync of the directory. On
  // failure `path` is untouched and path.tmp removed.
  Status WriteFileAtomically(const std::string& path, std::string_view contents, unsigned mode = 0600);

  // --- Sockets (unix, TCP, UDP: the caller builds the address).
  enum class SocketType { kStream, kDatagram };
  // One attempt. NotFound when nobody accepts at the address yet (no socket file, refused, backlog full): worth
  // retrying; any other error is IoError.
  virtual Result<UniqueFd> Connect(const sockaddr* address, socklen_t len, SocketType type) = 0;
  // A listening stream socket.
  virtual Result<UniqueFd> Listen(const sockaddr* address, socklen_t len, int backlog) = 0;
  // A non-blocking datagram socket bound to `address`.
  virtual Result<UniqueFd> Bind(const sockaddr* address, socklen_t len) = 0;
  // One connection from `listener` (waits if the listener is blocking; retries EINTR and aborted connections).
  virtual Result<UniqueFd> Accept(int listener) = 0;

  // Unix stream sockets by path (InvalidArgument for a path too long for sockaddr_un).
  Result<UniqueFd> ConnectUnix(const std::string& path);
  // Connect, retried every `retry_ns` of clock() while nobody accepts (NotFound), until `deadline_ns`; then
  // Timeout naming the last error. Other errors are returned at once.
  Result<UniqueFd> ConnectUnixUntil(const std::string& path, int64_t deadline_ns, int64_t retry_ns);
  // Replaces a stale socket file at `path`.
  Result<UniqueFd> ListenUnix(const std::string& path, int backlog = 1);

  // --- Child processes.
  // Forks and execs argv[0] (a path) with stdin /dev/null, stdout+stderr appended to `log_path`, default signal
  // dispositions and an empty signal mask, and PR_SET_PDEATHSIG(SIGKILL): the child dies when the *thread* that
  // spawned it exits. Exec failures are reported here (not as a child that exits 127).
  virtual Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) = 0;
  virtual Status Kill(pid_t pid, int sig) = 0;
  // Reaps `pid`: its exit code (128+signal if a signal killed it; -1 if someone else reaped it), or nullopt while
  // it still runs and `block` is false.
  virtual Result<std::optional<int>> Wait(pid_t pid, bool block) = 0;
};

// "a.b.c.d:port", "[v6]:port" or the unix path (for messages and fault-injection subjects).
std::string SocketAddressText(const sockaddr* address, socklen_t len);

// Forwards everything to `target`; the clock too unless one is given (e.g. a FakeClock over real files).
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target, Clock* clock = nullptr) : target_(target), clock_(clock) {}

  Env* target() const { return target_; }
  Clock* clock() override { return clock_ != nullptr ? clock_ : target_->clock(); }
  Result<UniqueFd> OpenFile(const std::string& path, unsigned flags, unsigned mode) override {
    return target_->OpenFile(path, flags, mode);
  }
  Status SyncFile(int fd, const std::string& path) override { return target_->SyncFile(fd, path); }
  Status RenameFile(const std::string& from, const std::string& to) override { return target_->RenameFile(from, to); }
  Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  Result<UniqueFd> LockFile(const std::string& path) override { return target_->LockFile(path); }
  Result<UniqueFd> Connect(const sockaddr* address, socklen_t len, SocketType type) override {
    return target_->Connect(address, len, type);
  }
  Result<UniqueFd> Listen(const sockaddr* address, socklen_t len, int backlog) override {
    return target_->Listen(address, len, backlog);
  }
  Result<UniqueFd> Bind(const sockaddr* address, socklen_t len) override { return target_->Bind(address, len); }
  Result<UniqueFd> Accept(int listener) override { return target_->Accept(listener); }
  Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) override {
    return target_->Spawn(argv, log_path);
  }
  Status Kill(pid_t pid, int sig) override { return target_->Kill(pid, sig); }
  Result<std::optional<int>> Wait(pid_t pid, bool block) override { return target_->Wait(pid, block); }

 private:
  Env* const target_;
  Clock* const clock_;
};

}  // namespace tandem
