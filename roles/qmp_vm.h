// A Vm whose monitor is a QmpClient: what the two real ones share (qemu_host.cc: a QEMU tandem spawned;
// libvirt_host.cc: a libvirt domain's QEMU).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "qemu-integration/colo_endpoint.h"
#include "qemu-integration/qmp.h"
#include "roles/vm_host.h"

namespace tandem::roles {

class QmpVm : public Vm {
 public:
  Result<nlohmann::json> Execute(const std::string& command, const nlohmann::json& arguments,
                                 int timeout_ms) override {
    return qmp_->Execute(command, arguments, timeout_ms);
  }
  Result<std::vector<nlohmann::json>> TakeEvents() override { return qmp_->TakeEvents(); }
  Status StartColoMigration(const std::string& unix_socket, int checkpoint_ms) override {
    return qemu::StartColoMigration(*qmp_, unix_socket, checkpoint_ms);
  }

 protected:
  explicit QmpVm(std::unique_ptr<qemu::QmpClient> qmp = nullptr) : qmp_(std::move(qmp)) {}
  std::unique_ptr<qemu::QmpClient> qmp_;  // set before any call above (a subclass may connect later)
};

}  // namespace tandem::roles
