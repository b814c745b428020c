// The host seams of vm_host.h over real QEMU: qemu::QemuProcess + qemu::QmpClient, qemu::ColoEndpoint.
#pragma once

#include <string>

#include "common/private_files.h"
#include "common/status.h"
#include "roles/vm_host.h"

namespace tandem::roles {

class QemuHost final : public VmHost {
 public:
  Result<std::unique_ptr<Vm>> Launch(const qemu::VmConfig& vm, qemu::QemuRole role,
                                     const std::string& state_dir) override;
  Result<std::unique_ptr<CheckpointSource>> ListenForCheckpoints(const std::string& unix_socket) override;
  Result<std::unique_ptr<OutputChannel>> OpenConsole(const std::string& state_dir, const std::string& log) override;
  Result<std::unique_ptr<OutputChannel>> OpenNic(const NicOptions& nic, const std::string& state_dir) override;
};

// A fresh private file of `bytes` that holds guest memory (the primary's RAM file QEMU maps, the standby's
// replica), in a private directory (common/private_files.h). Created by tandem, not by QEMU, which would create a
// missing mem-path file 0644. The returned guard removes it on every exit of the role, a clean stop included.
Result<RemoveOnExit> CreateGuestMemoryFile(const std::string& path, uint64_t bytes);
// The same for the standby's replica, but a replica of `bytes` already there (a restarted standby process, or an
// old primary's RAM file renamed to be the replica) is kept with its content (KeepOrCreatePrivateFile): its page
// hashes then spare the primary from sending the pages it already holds. *kept says which happened.
Result<RemoveOnExit> KeepOrCreateGuestMemoryFile(const std::string& path, uint64_t bytes, bool* kept);

}  // namespace tandem::roles
