// A libvirtd of the test's own: root's system daemon, but in a private mount namespace whose /run/libvirt,
// /var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt and /etc/libvirt are directories of a temp dir (so
// it shares nothing with a libvirtd of the host), QEMU run as root without cgroups, namespaces or a security
// driver (none of which a test machine or container reliably has). Stopped by pid in the destructor.
#pragma once

#include <sys/types.h>

#include <string>

#include "tests/support/temp_dir.h"

namespace tandem::testing {

class PrivateLibvirtd {
 public:
  PrivateLibvirtd() = default;
  ~PrivateLibvirtd();
  PrivateLibvirtd(const PrivateLibvirtd&) = delete;
  PrivateLibvirtd& operator=(const PrivateLibvirtd&) = delete;

  // "" once the daemon answers on its socket; otherwise why it cannot run here (the caller skips with it).
  std::string Start();
  // The URI that reaches this daemon and no other.
  std::string uri() const { return "qemu:///system?socket=" + dir_.path() + "/run/libvirt-sock"; }
  // libvirt's log of `domain`'s QEMU (command line, taints).
  std::string DomainLog(const std::string& domain) const;
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  pid_t pid_ = -1;
};

}  // namespace tandem::testing
