#include "common/fault_injecting_env.h"

#include <cassert>

namespace tandem {
void FaultInjectingEnv::Fail(Op op, Status error, int times, std::string subject) {
  assert(!error.ok());
  std::lock_guard<std::mutex> lock(mu_);
  rules_[size_t(op)].push_back(Rule{std::move(error), times, std::move(subject)});
}

void FaultInjectingEnv::Heal(Op op) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_[size_t(op)].clear();
}

int FaultInjectingEnv::calls(Op op) const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_[size_t(op)];
}

int FaultInjectingEnv::failures(Op op) const {
  std::lock_guard<std::mutex> lock(mu_);
  return failures_[size_t(op)];
}

Status FaultInjectingEnv::Check(Op op, const std::string& subject) {
  std::lock_guard<std::mutex> lock(mu_);
  calls_[size_t(op)]++;
  auto& rules = rules_[size_t(op)];
  for (auto it = rules.begin(); it != rules.end(); ++it) {
    if (!subject.ends_with(it->subject)) continue;
    Status error = it->error;
    if (it->times > 0 && --it->times == 0) rules.erase(it);
    failures_[size_t(op)]++;
    return error;
  }
  return Status::Ok();
}

Result<UniqueFd> FaultInjectingEnv::OpenFile(const std::string& path, unsigned flags, unsigned mode) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kOpenFile, path));
  return EnvWrapper::OpenFile(path, flags, mode);
}

Status FaultInjectingEnv::SyncFile(int fd, const std::string& path) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kSyncFile, path));
  return EnvWrapper::SyncFile(fd, path);
}

Status FaultInjectingEnv::RenameFile(const std::string& from, const std::string& to) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kRename, to));
  return EnvWrapper::RenameFile(from, to);
}

Status FaultInjectingEnv::RemoveFile(const std::string& path) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kRemove, path));
  return EnvWrapper::RemoveFile(path);
}

Result<UniqueFd> FaultInjectingEnv::LockFile(const std::string& path) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kLock, path));
  return EnvWrapper::LockFile(path);
}

Result<UniqueFd> FaultInjectingEnv::Connect(const sockaddr* address, socklen_t len, SocketType type) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kConnect, SocketAddressText(address, len)));
  return EnvWrapper::Connect(address, len, type);
}

Result<UniqueFd> FaultInjectingEnv::Listen(const sockaddr* address, socklen_t len, int backlog) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kListen, SocketAddressText(address, len)));
  return EnvWrapper::Listen(address, len, backlog);
}

Result<UniqueFd> FaultInjectingEnv::Bind(const sockaddr* address, socklen_t len) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kBind, SocketAddressText(address, len)));
  return EnvWrapper::Bind(address, len);
}

Result<UniqueFd> FaultInjectingEnv::Accept(int listener) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kAccept, ""));
  return EnvWrapper::Accept(listener);
}

Result<pid_t> FaultInjectingEnv::Spawn(const std::vector<std::string>& argv, const std::string& log_path) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kSpawn, argv.empty() ? "" : argv[0]));
  return EnvWrapper::Spawn(argv, log_path);
}

Status FaultInjectingEnv::Kill(pid_t pid, int sig) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kKill, std::to_string(pid)));
  return EnvWrapper::Kill(pid, sig);
}

Result<std::optional<int>> FaultInjectingEnv::Wait(pid_t pid, bool block) {
  TANDEM_RETURN_IF_ERROR(Check(Op::kWait, std::to_string(pid)));
  return EnvWrapper::Wait(pid, block);
}

}  // namespace tandem
