// The primary's VM as a libvirt domain: Launch defines the protected domain XML (libvirt/domain_xml.h), starts
// the domain with virDomainCreate and reaches its QEMU over tandem's own QMP socket (one of the
// <qemu:commandline> options); lifecycle events from libvirt say when it stopped or crashed. The checkpoint
// stream, console and NIC are the same as with a QEMU tandem spawns (QemuHost).
#pragma once

#include "roles/options.h"
#include "roles/qemu_host.h"
#include "roles/vm_host.h"

namespace tandem::roles {

class LibvirtHost final : public VmHost {
 public:
  explicit LibvirtHost(LibvirtOptions options) : options_(std::move(options)) {}
  // Primary only (the standby's QEMU stays tandem's: it loads the primary's device state, libvirt would not let
  // it); Unsupported for the standby.
  Result<std::unique_ptr<Vm>> Launch(const qemu::VmConfig& vm, qemu::QemuRole role,
                                     const std::string& state_dir) override;
  Result<std::unique_ptr<CheckpointSource>> ListenForCheckpoints(const std::string& unix_socket) override {
    return qemu_.ListenForCheckpoints(unix_socket);
  }
  Result<std::unique_ptr<OutputChannel>> OpenConsole(const std::string& state_dir, const std::string& log) override {
    return qemu_.OpenConsole(state_dir, log);
  }
  Result<std::unique_ptr<OutputChannel>> OpenNic(const NicOptions& nic, const std::string& state_dir) override {
    return qemu_.OpenNic(nic, state_dir);
  }

 private:
  LibvirtOptions options_;
  QemuHost qemu_;
};

}  // namespace tandem::roles
