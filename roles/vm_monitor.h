// Hypervisor <-> VM liveness from QMP: what QEMU says happened to the guest (GUEST_PANICKED from the pvpanic
// device, SHUTDOWN, STOP/RESUME). A crashed or powered-off guest is not a reason to fail over: the replica holds
// the same crash. It is reported (log, status.json) and the configured action applied.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "roles/vm_host.h"

namespace tandem::roles {

class VmMonitor {
 public:
  VmMonitor(Vm* vm, bool reset_on_crash) : vm_(vm), reset_on_crash_(reset_on_crash) {}
  // Drains QMP events (call every few hundred ms: unread events pile up in QEMU) and acts on crashes.
  void Poll();
  // {"guest": "running|panicked|shut down", "panics": n, "shutdowns": n, "stops": n}
  nlohmann::json StatusJson() const;

 private:
  Vm* vm_;
  bool reset_on_crash_;
  std::string guest_ = "running";
  uint64_t panics_ = 0, shutdowns_ = 0, stops_ = 0;
};

}  // namespace tandem::roles
