#include "roles/service_status.h"

namespace tandem::roles {

void ServiceStatus::Ready() {
  if (ready_) return;
  ready_ = true;
  notifier_->Ready();
}

void ServiceStatus::Set(LogLevel level, const std::string& state, const std::string& progress) {
  const int64_t now = clock_->NowNanos();
  if (state != state_) {
    Log(level, "state", "VM %s: %s (%s)%s%s", vm_name_.c_str(), state.c_str(), progress.c_str(),
        state_.empty() ? "" : ", was: ", state_.c_str());
    state_ = state;
  } else if (progress == progress_ || now - sent_ns_ < 1'000'000'000) {
    return;
  }
  progress_ = progress;
  sent_ns_ = now;
  notifier_->Status(state + " (" + progress + ")");
}

}  // namespace tandem::roles
