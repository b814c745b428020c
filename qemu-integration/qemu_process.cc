#include "qemu-integration/qemu_process.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>

namespace tandem::qemu {
Result<std::unique_ptr<QemuProcess>> QemuProcess::Spawn(const std::vector<std::string>& argv,
                                                        const std::string& log_path, Env* env) {
  if (argv.empty()) return Status::InvalidArgument("QEMU argv is empty");
  auto pid = env->Spawn(argv, log_path);
  if (!pid.ok()) return pid.status().WithContext("start QEMU");
  return std::unique_ptr<QemuProcess>(new QemuProcess(*pid, env));
}

QemuProcess::~QemuProcess() {
  if (!reaped_) {
    (void)env_->Kill(pid_, SIGKILL);
    Reap(/*block=*/true);
  }
}

bool QemuProcess::Reap(bool block) {
  if (reaped_) return true;
  auto exited = env_->Wait(pid_, block);
  if (!exited.ok() || !exited->has_value()) return false;
  reaped_ = true;
  exit_code_ = **exited;
  return true;
}

bool QemuProcess::Running() { return !Reap(/*block=*/false); }

Status QemuProcess::Signal(int sig) {
  if (Reap(/*block=*/false)) return Status::Ok();
  return env_->Kill(pid_, sig).WithContext("QEMU");
}

Result<int> QemuProcess::Wait(int timeout_ms) {
  Clock* clock = env_->clock();
  const int64_t deadline = clock->NowNanos() + int64_t(timeout_ms) * 1'000'000;
  int64_t sleep_ns = 200'000;
  while (!Reap(/*block=*/false)) {
    if (clock->NowNanos() >= deadline) {
      return Status::Timeout("QEMU pid " + std::to_string(pid_) + " still running after " + std::to_string(timeout_ms) +
                             " ms");
    }
    clock->SleepNanos(sleep_ns);
    sleep_ns = std::min<int64_t>(sleep_ns * 2, 10'000'000);
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
