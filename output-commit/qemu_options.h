// The QEMU options that attach the guest's NIC and serial console to this module. Both roles run them (the
// standby's QEMU must have the same devices), each against its own state directory.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace tandem::output_commit {

// Where the sockets live in a state directory.
struct OutputPaths {
  std::string nic_socket;       // <state_dir>/nic.sock: tandem binds it
  std::string nic_qemu_socket;  // <state_dir>/nic-qemu.sock: QEMU binds it
  std::string console_socket;   // <state_dir>/console.sock: tandem listens on it
};
OutputPaths PathsIn(const std::string& state_dir);

// The NIC's slot on the root PCI bus, fixed on both roles: libvirt's address allocator does not see devices given
// on the command line (libvirt/domain_xml.h), and QEMU's own choice (the first free slot) is where libvirt puts
// its first device. libvirt's q35 layout uses 0x01 upwards and 0x1a..0x1f; 0x18 stays free.
inline constexpr char kNicPciSlot[] = "0x18";

struct QemuNicConfig {
  std::string mac;                      // "52:54:00:12:34:56": the same on both hosts (the VM keeps it)
  std::string model = "virtio-net-pci";  // virtio: its TX waits for the backend (README.md, backpressure)
  std::string id = "n0";
};

// -netdev dgram,id=n0,local.type=unix,local.path=<nic-qemu.sock>,remote.type=unix,remote.path=<nic.sock>
// -device virtio-net-pci,netdev=n0,mac=<mac>,addr=0x18,romfile=
// InvalidArgument for a malformed MAC (or a multicast one), a path too long for a unix socket, or a comma.
Result<std::vector<std::string>> QemuNicArgs(const QemuNicConfig& nic, const std::string& state_dir);

// -chardev socket,id=ser0,path=<console.sock>,server=off  -serial chardev:ser0
// (replaces `-serial file:<log>`: the log is now written by ConsoleOutputCommit).
Result<std::vector<std::string>> QemuConsoleArgs(const std::string& state_dir);

}  // namespace tandem::output_commit
