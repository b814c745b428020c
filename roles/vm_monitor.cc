#include "roles/vm_monitor.h"

#include "common/log.h"

namespace tandem::roles {

void VmMonitor::Poll() {
  auto events = vm_->TakeEvents();
  if (!events.ok()) return;  // QEMU gone: the role's own checks report that
  for (const nlohmann::json& event : *events) {
    const std::string name = event.value("event", "");
    if (name == "STOP") {
      ++stops_;
    } else if (name == "GUEST_PANICKED") {
      ++panics_;
      guest_ = "panicked";
      TLOG_ERROR("vm", "GUEST_PANICKED %s: the guest crashed; no failover (the replica holds the same crash); "
                 "action: %s", event.value("data", nlohmann::json::object()).dump().c_str(),
                 reset_on_crash_ ? "reset" : "report");
      if (reset_on_crash_) {
        Status st = vm_->Execute("system_reset").status();
        TLOG_WARN("vm", "guest reset after its crash: %s", st.ok() ? "ok" : st.ToString().c_str());
        if (st.ok()) guest_ = "running";
      }
    } else if (name == "SHUTDOWN") {
      ++shutdowns_;
      guest_ = "shut down";
      TLOG_WARN("vm", "the guest shut down (%s): QEMU exits with it",
                event.value("data", nlohmann::json::object()).dump().c_str());
    }
  }
}

nlohmann::json VmMonitor::StatusJson() const {
  return {{"guest", guest_}, {"panics", panics_}, {"shutdowns", shutdowns_}, {"stops", stops_}};
}

}  // namespace tandem::roles
