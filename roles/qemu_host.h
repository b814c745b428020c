// The host seams of vm_host.h over real QEMU: qemu::QemuProcess + qemu::QmpClient, qemu::ColoEndpoint.
#pragma once

#include <string>

#include "common/status.h"
#include "roles/vm_host.h"

namespace tandem::roles {

class QemuHost final : public VmHost {
 public:
  Result<std::unique_ptr<Vm>> Launch(const qemu::VmConfig& vm, qemu::QemuRole role,
                                     const std::string& state_dir) override;
  Result<std::unique_ptr<CheckpointSource>> ListenForCheckpoints(const std::string& unix_socket) override;
};

Status MakeDirs(const std::string& path);
// A fresh replica file of `bytes`: the warm standby QEMU maps it before the first epoch arrives.
Status CreateReplicaFile(const std::string& path, uint64_t bytes);

}  // namespace tandem::roles
