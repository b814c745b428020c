// ServiceNotifier over systemd's notification socket (sd_notify(3), libsystemd): a no-op when the process was not
// started by systemd ($NOTIFY_SOCKET unset). Its own library (tandem_systemd_notifier) so that only the binary
// and its test link libsystemd.
#pragma once

#include <chrono>
#include <mutex>

#include "common/service_notifier.h"

namespace tandem {

class SystemdNotifier final : public ServiceNotifier {
 public:
  // Reads $WATCHDOG_USEC/$WATCHDOG_PID (sd_watchdog_enabled): without a watchdog for this process, Watchdog()
  // costs nothing; with one, it sends WATCHDOG=1 at most every quarter of the timeout (the loops call it per
  // epoch, systemd needs it once per WatchdogSec).
  SystemdNotifier();
  void Ready() override;
  void Status(const std::string& line) override;
  void Watchdog() override;
  bool watchdog_enabled() const { return watchdog_period_.count() > 0; }

 private:
  std::chrono::microseconds watchdog_period_{0};
  std::mutex mu_;
  std::chrono::steady_clock::time_point last_watchdog_{};  // guarded by mu_
};

}  // namespace tandem
