// The libvirt domain XML a protected VM needs (README.md, "libvirt"): the domain keeps its name, uuid and
// lifecycle in libvirt, while guest RAM, the console, the NIC and the disk are tandem's, given to QEMU through
// <qemu:commandline> with exactly the options `tandem qemu-args` prints. The standby's QEMU (started by tandem,
// not libvirt) must load the primary's device state, so everything libvirt would add that the standby does not
// have is removed, and what tandem cannot protect (disks, NICs, host devices, character devices of the domain) is
// refused unless allowed.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "qemu-integration/qemu_args.h"

namespace tandem::libvirt {

inline constexpr char kQemuNamespace[] = "http://libvirt.org/schemas/domain/qemu/1.0";


struct ProtectedDomain {
  std::string xml;                      // the protected domain XML (pretty-printed)
  std::vector<std::string> removed;     // what libvirt would have added beside tandem's devices, removed
  std::vector<std::string> unprotected; // devices kept only because allow_unprotected_devices is set
};

// The <qemu:commandline> arguments: the primary's `BuildQemuArgs` without what the domain XML itself says (name,
// machine type, accel, vcpus, memory size, kernel, the defaults) and with `-machine memory-backend=mem`, which
// replaces libvirt's own RAM backend by tandem's file (libvirt's then stays an unused, never-touched mapping that
// QEMU does not migrate).
std::vector<std::string> CommandLineArgs(const qemu::VmConfig& vm);

// `domain_xml` rewritten for `vm` (the primary's QEMU configuration). InvalidArgument naming every device tandem
// does not protect (unless allow_unprotected), a tandem PCI slot already taken, NUMA cells, or XML that is not a
// domain. Idempotent: protecting a protected domain gives the same document.
Result<ProtectedDomain> ProtectDomainXml(std::string_view domain_xml, const qemu::VmConfig& vm,
                                         bool allow_unprotected);

// The XML in canonical form (C14N, whitespace between elements dropped): two documents that mean the same give
// the same string whatever their attribute order, namespace placement or indentation.
Result<std::string> CanonicalXml(std::string_view xml);

}  // namespace tandem::libvirt
