// A QEMU child process that cannot outlive tandem: if tandem dies, the kernel kills its QEMU (PDEATHSIG), so a
// primary VM never keeps running unprotected behind a standby that has taken over (split-brain guard).
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/status.h"

namespace tandem::qemu {

class QemuProcess {
 public:
  // Starts argv[0] (a path; see FindQemuBinary) through env->Spawn (the Env must outlive the process object),
  // with stdout+stderr appended to `log_path`.
  // The child gets PR_SET_PDEATHSIG(SIGKILL). Linux delivers it when the *thread* that called Spawn exits, so
  // call Spawn from a thread that lives as long as the process (tandem's main thread).
  // Exec failures are reported here (not as a child that exits 127).
  static Result<std::unique_ptr<QemuProcess>> Spawn(const std::vector<std::string>& argv, const std::string& log_path,
                                                    Env* env = Env::Default());

  // Kills (SIGKILL) and reaps the child if it is still running.
  ~QemuProcess();
  QemuProcess(const QemuProcess&) = delete;
  QemuProcess& operator=(const QemuProcess&) = delete;

  pid_t pid() const { return pid_; }
  // False once the child has exited (reaps it).
  bool Running();
  // Sends `sig` unless the child has already been reaped (never signals a recycled pid).
  Status Signal(int sig);
  // Signal() for callers that can do nothing about a failure (a signal handler, a cleanup path).
  void Kill(int sig) { (void)Signal(sig); }
  // Waits up to timeout_ms (of the Env's clock) for the child to exit. Returns its exit code, or 128+signal if a
  // signal killed it; Timeout if it is still running.
  Result<int> Wait(int timeout_ms);

 private:
  QemuProcess(pid_t pid, Env* env) : pid_(pid), env_(env) {}
  // True once the child is gone. An error from the Env (not from the child) counts as still running.
  bool Reap(bool block);
  pid_t pid_;
  Env* const env_;
  bool reaped_ = false;
  int exit_code_ = -1;
};

// $TANDEM_QEMU if set (must be executable), else qemu-system-x86_64 from $PATH.
Result<std::string> FindQemuBinary();

}  // namespace tandem::qemu
