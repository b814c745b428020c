#include "common/systemd_notifier.h"

#include <systemd/sd-daemon.h>

#include <cstring>

#include "common/log.h"

namespace tandem {

SystemdNotifier::SystemdNotifier() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(/*unset_environment=*/0, &usec) > 0 && usec > 0) {
    watchdog_period_ = std::chrono::microseconds(usec / 4);
  }
}

void SystemdNotifier::Ready() {
  if (int r = sd_notify(0, "READY=1"); r < 0) TLOG_WARN("systemd", "sd_notify READY=1: %s", strerror(-r));
}

void SystemdNotifier::Status(const std::string& line) {
  // One line: STATUS= ends at the first newline.
  std::string message = "STATUS=" + line.substr(0, line.find('\n'));
  sd_notify(0, message.c_str());
}

void SystemdNotifier::Watchdog() {
  if (!watchdog_enabled()) return;
  const auto now = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (now - last_watchdog_ < watchdog_period_) return;
    last_watchdog_ = now;
  }
  sd_notify(0, "WATCHDOG=1");
}

}  // namespace tandem
