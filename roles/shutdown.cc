#include "roles/shutdown.h"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <thread>

#include "common/log.h"

namespace tandem::roles {

void Shutdown::Request() {
  std::lock_guard<std::mutex> lock(mu_);
  if (requested_.exchange(true)) return;
  if (hook_) hook_();
  cv_.notify_all();
}

bool Shutdown::WaitFor(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [this] { return requested_.load(); });
}

Shutdown::Hook::Hook(Shutdown* shutdown, std::function<void()> on_request) : shutdown_(shutdown) {
  std::lock_guard<std::mutex> lock(shutdown_->mu_);
  if (shutdown_->requested_) on_request();
  shutdown_->hook_ = std::move(on_request);
}

Shutdown::Hook::~Hook() {
  std::lock_guard<std::mutex> lock(shutdown_->mu_);
  shutdown_->hook_ = nullptr;
}

void RequestShutdownOnSignals(Shutdown* shutdown) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a peer that vanishes is an error value, not a process kill
  std::thread([set, shutdown] {
    int sig = 0;
    sigwait(&set, &sig);
    TLOG_WARN("main", "received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    shutdown->Request();
  }).detach();
}

}  // namespace tandem::roles
