// What a role tells the service manager (common/service_notifier.h) and the log about its state: READY once the
// role is really up, STATUS= and one log line whenever the state changes, STATUS= with fresh progress at most once
// a second, WATCHDOG from the role's own loop (so a hung loop gets the service restarted, not a helper thread's
// liveness).
#pragma once

#include <string>

#include "common/env.h"
#include "common/log.h"
#include "common/service_notifier.h"

namespace tandem::roles {

class ServiceStatus {
 public:
  ServiceStatus(ServiceNotifier* notifier, Clock* clock, std::string vm_name)
      : notifier_(notifier), clock_(clock), vm_name_(std::move(vm_name)) {}

  // READY=1, the first time only.
  void Ready();
  // `state` names what the role is ("protected", "UNPROTECTED: no standby", ...), `progress` what it did so far
  // ("term 7, epoch 1234, acked 1233"). A new state is logged once at `level` and sent at once; the same state
  // with new progress is sent at most once a second.
  void Set(LogLevel level, const std::string& state, const std::string& progress);
  void Watchdog() { notifier_->Watchdog(); }
  const std::string& state() const { return state_; }

 private:
  ServiceNotifier* const notifier_;
  Clock* const clock_;
  const std::string vm_name_;
  bool ready_ = false;
  std::string state_, progress_;
  int64_t sent_ns_ = 0;
};

}  // namespace tandem::roles
