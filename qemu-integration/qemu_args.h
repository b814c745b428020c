// The QEMU command line tandem runs, identical for the primary and the standby except for `-incoming defer`:
// the standby loads the primary's device state, so both must have the same devices in the same order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace tandem::qemu {

struct VmConfig {
  std::string name;
  uint64_t memory_mb = 0;
  int vcpus = 1;
  std::string accel = "kvm";  // kvm | tcg
  std::string machine = "q35";
  std::string kernel;    // -kernel (required: the guest boots from it, not from its disk)
  std::string initrd;    // optional
  std::string append;    // optional kernel command line
  std::string ram_path;  // file that backs guest RAM (share=on): tandem maps the same file
  std::string qmp_socket;
  std::string serial_log;               // COM1's log: written by QEMU (`-serial file:`) unless output_args is set
  // The roles: the options attaching COM1 (and the NIC) to tandem's output commit (output-commit/qemu_options.h),
  // which writes serial_log itself, only what the standby holds. Replaces `-serial file:<serial_log>`.
  std::vector<std::string> output_args;
  std::vector<std::string> extra_args;  // appended verbatim, on both roles
  // The guest's disk: QEMU's NBD client on this unix socket, which tandem serves (disk/README.md); empty: no
  // disk. The export is the VM's name. A virtio-blk device, legacy-capable (disable-modern=on: the test guest's
  // driver is legacy virtio; Linux drives either).
  std::string disk_socket;
};

enum class QemuRole { kPrimary, kStandby };

// The disk's slot on the root PCI bus, fixed on both roles for the reason output-commit's kNicPciSlot is.
inline constexpr char kDiskPciSlot[] = "0x19";

// QEMU's RAMBlock name for guest main memory: the memory-backend object's id.
inline constexpr char kMainRamBlock[] = "mem";

// Checks what QEMU would otherwise reject late or obscurely (missing kernel file, zero memory, bad accel...).
Status ValidateVmConfig(const VmConfig& vm);

// argv for QEMU, without the binary itself.
std::vector<std::string> BuildQemuArgs(const VmConfig& vm, QemuRole role);

// What `extra_args` (options given to QEMU beside tandem's own) adds that tandem does not protect: disks, NIC
// backends and models, character devices, host devices passed through. One line each, "<option> <value>: what
// it is and the supported way"; empty when there is nothing.
std::vector<std::string> UnprotectedDevices(const std::vector<std::string>& extra_args);

}  // namespace tandem::qemu
