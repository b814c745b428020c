#include "libvirt/connection.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace tandem::libvirt {
namespace {

// libvirt's last error on this thread, as a Status (libvirt would otherwise print it on stderr as well).
Status LastError(const std::string& what) {
  const char* message = virGetLastErrorMessage();
  Status st = Status::IoError(what + ": " + (message != nullptr ? message : "unknown libvirt error"));
  virResetLastError();
  return st;
}

void IgnoreError(void*, virErrorPtr) {}

// libvirt's default event loop, run by one thread for the whole process (libvirt allows one loop per process;
// it must be registered before the first connection is opened). Never stopped: it only waits on libvirt's fds.
Status StartEventLoopOnce() {
  static std::once_flag once;
  static Status started;
  std::call_once(once, [] {
    virSetErrorFunc(nullptr, IgnoreError);
    if (virInitialize() < 0 || virEventRegisterDefaultImpl() < 0) {
      started = LastError("libvirt event loop");
      return;
    }
    std::thread([] {
      for (;;) {
        if (virEventRunDefaultImpl() < 0) virResetLastError();
      }
    }).detach();
  });
  return started;
}

struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using Domain = std::unique_ptr<virDomain, DomainFree>;

Lifecycle ToLifecycle(int event) {
  switch (event) {
    case VIR_DOMAIN_EVENT_STARTED: return Lifecycle::kStarted;
    case VIR_DOMAIN_EVENT_STOPPED: return Lifecycle::kStopped;
    case VIR_DOMAIN_EVENT_CRASHED: return Lifecycle::kCrashed;
    default: return Lifecycle::kOther;
  }
}

}  // namespace

struct Connection::Impl {
  virConnectPtr conn = nullptr;
  std::string uri;
  int callback_id = -1;

  Result<Domain> Lookup(const std::string& name) {
    virDomainPtr d = virDomainLookupByName(conn, name.c_str());
    if (d == nullptr) return LastError("libvirt domain '" + name + "' at " + uri);
    return Domain(d);
  }

  using Callback = std::function<void(Lifecycle, int)>;
  static int OnLifecycle(virConnectPtr, virDomainPtr, int event, int detail, void* opaque) {
    (*static_cast<Callback*>(opaque))(ToLifecycle(event), detail);
    return 0;
  }
  // libvirt frees the callback once it is deregistered and not running: never while an event is delivered.
  static void FreeCallback(void* opaque) { delete static_cast<Callback*>(opaque); }
};

Connection::Connection(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Connection::~Connection() {
  if (impl_->callback_id >= 0) virConnectDomainEventDeregisterAny(impl_->conn, impl_->callback_id);
  virConnectClose(impl_->conn);
}

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& uri) {
  TANDEM_RETURN_IF_ERROR(StartEventLoopOnce());
  auto impl = std::make_unique<Impl>();
  impl->uri = uri;
  impl->conn = virConnectOpen(uri.c_str());
  if (impl->conn == nullptr) return LastError("libvirt connection to " + uri);
  // A daemon that dies or hangs closes the connection within ~15 s instead of leaving calls waiting forever.
  if (virConnectSetKeepAlive(impl->conn, 5, 3) < 0) virResetLastError();
  return std::unique_ptr<Connection>(new Connection(std::move(impl)));
}

Result<std::string> Connection::DomainXml(const std::string& domain) {
  TANDEM_ASSIGN_OR_RETURN(Domain d, impl_->Lookup(domain));
  char* xml = virDomainGetXMLDesc(d.get(), VIR_DOMAIN_XML_INACTIVE);
  if (xml == nullptr) return LastError("XML of domain '" + domain + "'");
  std::string out(xml);
  free(xml);
  return out;
}

Status Connection::Define(const std::string& xml) {
  virDomainPtr d = virDomainDefineXML(impl_->conn, xml.c_str());
  if (d == nullptr) return LastError("defining the domain at " + impl_->uri);
  virDomainFree(d);
  return Status::Ok();
}

Status Connection::Start(const std::string& domain) {
  TANDEM_ASSIGN_OR_RETURN(Domain d, impl_->Lookup(domain));
  if (virDomainCreate(d.get()) < 0) return LastError("starting domain '" + domain + "'");
  return Status::Ok();
}

Status Connection::Destroy(const std::string& domain) {
  TANDEM_ASSIGN_OR_RETURN(Domain d, impl_->Lookup(domain));
  if (virDomainIsActive(d.get()) == 0) return Status::Ok();
  if (virDomainDestroy(d.get()) < 0) return LastError("destroying domain '" + domain + "'");
  return Status::Ok();
}

Result<bool> Connection::Active(const std::string& domain) {
  TANDEM_ASSIGN_OR_RETURN(Domain d, impl_->Lookup(domain));
  const int active = virDomainIsActive(d.get());
  if (active < 0) return LastError("state of domain '" + domain + "'");
  return active == 1;
}

Status Connection::WatchLifecycle(const std::string& domain, std::function<void(Lifecycle, int)> on_event) {
  if (impl_->callback_id >= 0) return Status::InvalidArgument("this connection already watches a domain");
  TANDEM_ASSIGN_OR_RETURN(Domain d, impl_->Lookup(domain));
  // Not freed here if registering fails: whether libvirt then calls the free function differs between versions.
  auto* callback = new Impl::Callback(std::move(on_event));
  impl_->callback_id = virConnectDomainEventRegisterAny(impl_->conn, d.get(), VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                        VIR_DOMAIN_EVENT_CALLBACK(Impl::OnLifecycle), callback,
                                                        Impl::FreeCallback);
  if (impl_->callback_id < 0) return LastError("lifecycle events of domain '" + domain + "'");
  return Status::Ok();
}

const char* LifecycleName(Lifecycle event) {
  switch (event) {
    case Lifecycle::kStarted: return "started";
    case Lifecycle::kStopped: return "stopped";
    case Lifecycle::kCrashed: return "crashed";
    case Lifecycle::kOther: return "other";
  }
  return "?";
}

}  // namespace tandem::libvirt
