// What a long-running tandem process tells its service manager: that it is really up (READY), what state it is
// in (STATUS), that its main loop still turns (WATCHDOG). The roles and the witness talk to this seam; the tandem
// binary plugs in systemd's sd_notify (common/systemd_notifier.h), tests a recording one
// (tests/support/recording_notifier.h).
#pragma once

#include <string>

namespace tandem {

class ServiceNotifier {
 public:
  virtual ~ServiceNotifier() = default;
  virtual void Ready() = 0;                            // READY=1
  virtual void Status(const std::string& line) = 0;   // STATUS=<line>
  // WATCHDOG=1. Called from every iteration of the loop whose hang must restart the service (an implementation
  // may send fewer than it is called with).
  virtual void Watchdog() = 0;
};

// Tells nobody (no service manager, or a test that does not look).
ServiceNotifier* NoServiceNotifier();

}  // namespace tandem
