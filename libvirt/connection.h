// A libvirt connection with errors as Status values, and the lifecycle events of one domain.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "common/status.h"

namespace tandem::libvirt {

// VIR_DOMAIN_EVENT_* of libvirt, the ones a role reacts to; kOther for the rest (defined, suspended...).
enum class Lifecycle { kStarted, kStopped, kCrashed, kOther };

class Connection {
 public:
  // virConnectOpen(uri), e.g. "qemu:///system", "qemu:///system?socket=/run/x/libvirt-sock". Starts the process'
  // libvirt event loop thread (once) first: events and keepalives need it.
  static Result<std::unique_ptr<Connection>> Open(const std::string& uri);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The domain's persistent definition (VIR_DOMAIN_XML_INACTIVE): what the next start runs.
  Result<std::string> DomainXml(const std::string& domain);
  // virDomainDefineXML: replaces the persistent definition of the domain the XML names.
  Status Define(const std::string& xml);
  Status Start(const std::string& domain);    // virDomainCreate
  Status Destroy(const std::string& domain);  // virDomainDestroy (QEMU killed); Ok if it was not running
  Result<bool> Active(const std::string& domain);
  // Calls `on_event` (from the event loop thread) for every lifecycle event of `domain` until this connection is
  // closed. One watch per connection.
  Status WatchLifecycle(const std::string& domain, std::function<void(Lifecycle, int detail)> on_event);

 private:
  struct Impl;
  explicit Connection(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

const char* LifecycleName(Lifecycle event);

}  // namespace tandem::libvirt
