#include "roles/libvirt_host.h"

#include <unistd.h>

#include <atomic>
#include <memory>

#include "common/log.h"
#include "libvirt/connection.h"
#include "libvirt/domain_xml.h"
#include "qemu-integration/qmp.h"
#include "qemu-integration/resume.h"
#include "roles/qmp_vm.h"

namespace tandem::roles {
namespace {

class LibvirtVm final : public QmpVm {
 public:
  LibvirtVm(std::unique_ptr<libvirt::Connection> conn, std::string domain)
      : conn_(std::move(conn)), domain_(std::move(domain)) {}
  // As QemuVm kills its process: the role's VM never outlives the role.
  ~LibvirtVm() override { Destroy(); }

  Status WatchAndStart(const std::string& qmp_socket) {
    // The event thread may deliver an event while this object is being destroyed: the callback owns what it uses.
    TANDEM_RETURN_IF_ERROR(conn_->WatchLifecycle(domain_, [stopped = stopped_, domain = domain_](
                                                              libvirt::Lifecycle event, int detail) {
      // CRASHED is a guest panic: QEMU still runs (on_crash preserve, -action panic=none) and VmMonitor reports
      // it from QMP; only STOPPED means QEMU is gone.
      if (event == libvirt::Lifecycle::kStopped) *stopped = true;
      if (event == libvirt::Lifecycle::kStopped || event == libvirt::Lifecycle::kCrashed) {
        TLOG_WARN("libvirt", "domain %s %s (libvirt event detail %d)", domain.c_str(), libvirt::LifecycleName(event),
                  detail);
      }
    }));
    TANDEM_RETURN_IF_ERROR(conn_->Start(domain_));
    auto qmp = qemu::QmpClient::Connect(qmp_socket, 10000);
    if (!qmp.ok()) {
      Destroy();
      return qmp.status().WithContext("the domain's QEMU did not open tandem's QMP socket (see libvirt's log of "
                                      "domain " + domain_ + ")");
    }
    qmp_ = std::move(qmp).value();
    pid_ = qmp_->PeerPid();
    return Status::Ok();
  }

  pid_t pid() const override { return pid_; }
  bool Running() override {
    if (*stopped_) return false;
    auto active = conn_->Active(domain_);
    return active.ok() && active.value();
  }
  // Any signal: libvirt's destroy (SIGTERM, then SIGKILL), so that libvirt knows the domain stopped.
  void Kill(int sig) override {
    (void)sig;
    Destroy();
  }
  Status Resume(const std::string&, const std::string&, int) override {
    return Status::Unsupported("a libvirt domain is a primary's VM, never resumed as a standby");
  }

 private:
  void Destroy() {
    if (Status st = conn_->Destroy(domain_); !st.ok()) TLOG_WARN("libvirt", "%s", st.ToString().c_str());
  }

  std::unique_ptr<libvirt::Connection> conn_;
  const std::string domain_;
  // Set by libvirt's STOPPED event (an operator's virsh destroy, QEMU killed or crashed).
  const std::shared_ptr<std::atomic<bool>> stopped_ = std::make_shared<std::atomic<bool>>(false);
  pid_t pid_ = -1;
};

}  // namespace

Result<std::unique_ptr<Vm>> LibvirtHost::Launch(const qemu::VmConfig& vm, qemu::QemuRole role,
                                                const std::string& state_dir) {
  (void)state_dir;
  if (role != qemu::QemuRole::kPrimary) return Status::Unsupported("libvirt runs the primary's VM only");
  TANDEM_RETURN_IF_ERROR(qemu::ValidateVmConfig(vm));
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<libvirt::Connection> conn, libvirt::Connection::Open(options_.uri));
  TANDEM_ASSIGN_OR_RETURN(bool active, conn->Active(options_.domain));
  if (active) {
    return Status::InvalidArgument("libvirt domain '" + options_.domain +
                                   "' is already running; tandem starts it itself (virsh destroy it first)");
  }
  TANDEM_ASSIGN_OR_RETURN(std::string xml, conn->DomainXml(options_.domain));
  TANDEM_ASSIGN_OR_RETURN(libvirt::ProtectedDomain protected_domain,
                          libvirt::ProtectDomainXml(xml, vm, options_.allow_unprotected_devices));
  for (const std::string& d : protected_domain.removed) {
    TLOG_INFO("libvirt", "domain %s: removed %s (the standby's QEMU would not have it)", options_.domain.c_str(),
              d.c_str());
  }
  for (const std::string& d : protected_domain.unprotected) {
    TLOG_WARN("libvirt", "domain %s: %s runs UNPROTECTED (allow_unprotected_devices)", options_.domain.c_str(),
              d.c_str());
  }
  // The definition follows tandem's configuration at every start (memory, kernel, tandem's sockets and files).
  TANDEM_RETURN_IF_ERROR(conn->Define(protected_domain.xml));
  ::unlink(vm.qmp_socket.c_str());
  auto domain_vm = std::make_unique<LibvirtVm>(std::move(conn), options_.domain);
  TANDEM_RETURN_IF_ERROR(domain_vm->WatchAndStart(vm.qmp_socket));
  TLOG_INFO("libvirt", "started domain %s at %s: QEMU pid %d", options_.domain.c_str(), options_.uri.c_str(),
            int(domain_vm->pid()));
  return std::unique_ptr<Vm>(std::move(domain_vm));
}

}  // namespace tandem::roles
