// An Env for tests that fails chosen operations with a chosen Status and forwards everything else (to
// Env::Default() unless told otherwise). Thread-safe.
//
//   FaultInjectingEnv env;
//   env.Fail(FaultInjectingEnv::Op::kRename, Status::FromErrno("rename", ENOSPC));  // every rename fails
//   env.Fail(FaultInjectingEnv::Op::kConnect, Status::NotFound("refused"), /*times=*/3, "qmp.sock");
#pragma once

#include <array>
#include <mutex>
#include <string>
#include <vector>

#include "common/env.h"

namespace tandem {

class FaultInjectingEnv : public EnvWrapper {
 public:
  enum class Op {
    kOpenFile,
    kSyncFile,
    kRename,
    kRemove,
    kLock,
    kConnect,
    kListen,
    kBind,
    kAccept,
    kSpawn,
    kKill,
    kWait,
  };
  static constexpr size_t kOps = size_t(Op::kWait) + 1;

  explicit FaultInjectingEnv(Env* target = Env::Default(), Clock* clock = nullptr) : EnvWrapper(target, clock) {}

  // The next `times` calls of `op` (-1: every call until Heal) whose subject ends with `subject` (a path, a
  // socket address as "ip:port" or a unix path, argv[0], a pid; empty: any) fail with `error`, which must not be
  // ok.
  void Fail(Op op, Status error, int times = -1, std::string subject = "");
  void Heal(Op op);
  // How many times `op` was called, and how many of those calls were failed.
  int calls(Op op) const;
  int failures(Op op) const;

  Result<UniqueFd> OpenFile(const std::string& path, unsigned flags, unsigned mode) override;
  Status SyncFile(int fd, const std::string& path) override;
  Status RenameFile(const std::string& from, const std::string& to) override;
  Status RemoveFile(const std::string& path) override;
  Result<UniqueFd> LockFile(const std::string& path) override;
  Result<UniqueFd> Connect(const sockaddr* address, socklen_t len, SocketType type) override;
  Result<UniqueFd> Listen(const sockaddr* address, socklen_t len, int backlog) override;
  Result<UniqueFd> Bind(const sockaddr* address, socklen_t len) override;
  Result<UniqueFd> Accept(int listener) override;
  Result<pid_t> Spawn(const std::vector<std::string>& argv, const std::string& log_path) override;
  Status Kill(pid_t pid, int sig) override;
  Result<std::optional<int>> Wait(pid_t pid, bool block) override;

 private:
  struct Rule {
    Status error;
    int times = 0;
    std::string subject;
  };
  // Counts the call; the injected error if a rule matches `subject`, else Ok.
  Status Check(Op op, const std::string& subject);

  mutable std::mutex mu_;
  std::array<std::vector<Rule>, kOps> rules_;
  std::array<int, kOps> calls_{}, failures_{};
};

}  // namespace tandem
