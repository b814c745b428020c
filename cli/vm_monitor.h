// Hypervisor <-> VM liveness from QMP: what QEMU says happened to the guest (GUEST_PANICKED from the pvpanic
// device, SHUTDOWN, STOP/RESUME). A crashed or powered-off guest is not a reason to fail over: the replica holds
// the same crash. It is reported (log, status.json) and the configured action applied.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "cli/config.h"
#include "qemu-integration/qmp.h"

namespace tandem::cli {

class VmMonitor {
 public:
  VmMonitor(const Config& config, qemu::QmpClient* qmp) : config_(config), qmp_(qmp) {}
  // Drains QMP events (call every few hundred ms: unread events pile up in QEMU) and acts on crashes.
  void Poll();
  // {"guest": "running|panicked|shut down", "panics": n, "shutdowns": n, "stops": n}
  nlohmann::json StatusJson() const;

 private:
  const Config& config_;
  qemu::QmpClient* qmp_;
  std::string guest_ = "running";
  uint64_t panics_ = 0, shutdowns_ = 0, stops_ = 0;
};

}  // namespace tandem::cli
