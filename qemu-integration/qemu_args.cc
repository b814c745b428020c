#include "qemu-integration/qemu_args.h"

#include <string_view>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tandem::qemu {
namespace {

Status CheckReadableFile(const char* what, const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return Status::InvalidArgument(std::string(what) + " " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(std::string(what) + " " + path + " is not a regular file");
  if (::access(path.c_str(), R_OK) != 0)
    return Status::InvalidArgument(std::string(what) + " " + path + " is not readable");
  return Status::Ok();
}

// QEMU's option parser splits on ',' (",," escapes a comma) in -object/-machine/-qmp/-serial values.
bool HasComma(const std::string& s) { return s.find(',') != std::string::npos; }

}  // namespace

Status ValidateVmConfig(const VmConfig& vm) {
  if (vm.name.empty()) return Status::InvalidArgument("VM name is empty");
  if (vm.memory_mb == 0) return Status::InvalidArgument("VM memory_mb is 0");
  if (vm.memory_mb > (uint64_t(16) << 20)) return Status::InvalidArgument("VM memory_mb is larger than 16 TiB");
  if (vm.vcpus < 1 || vm.vcpus > 1024) return Status::InvalidArgument("VM vcpus must be in 1..1024");
  if (vm.accel != "kvm" && vm.accel != "tcg") {
    return Status::InvalidArgument("VM accel '" + vm.accel + "' is not one of kvm, tcg");
  }
  if (vm.machine.empty()) return Status::InvalidArgument("VM machine type is empty");
  if (vm.kernel.empty()) return Status::InvalidArgument("VM kernel is not set (the guest has no disk to boot from)");
  TANDEM_RETURN_IF_ERROR(CheckReadableFile("VM kernel", vm.kernel));
  if (!vm.initrd.empty()) TANDEM_RETURN_IF_ERROR(CheckReadableFile("VM initrd", vm.initrd));
  if (vm.ram_path.empty()) return Status::InvalidArgument("VM RAM file path is empty");
  if (vm.qmp_socket.empty()) return Status::InvalidArgument("QMP socket path is empty");
  // sun_path holds 108 bytes including the terminating NUL.
  if (vm.qmp_socket.size() > 107)
    return Status::InvalidArgument("QMP socket path is longer than 107 bytes: " + vm.qmp_socket);
  if (vm.serial_log.empty()) return Status::InvalidArgument("serial log path is empty");
  if (vm.disk_socket.size() > 107)
    return Status::InvalidArgument("disk socket path is longer than 107 bytes: " + vm.disk_socket);
  for (const auto* field : {&vm.name, &vm.machine, &vm.ram_path, &vm.qmp_socket, &vm.serial_log, &vm.disk_socket}) {
    if (HasComma(*field))
      return Status::InvalidArgument("'" + *field + "' contains a comma, which QEMU options cannot take");
  }
  return Status::Ok();
}

std::vector<std::string> BuildQemuArgs(const VmConfig& vm, QemuRole role) {
  const std::string mem = std::to_string(vm.memory_mb) + "M";
  // Flag/value pairs, one pair per line.
  // clang-format off
  std::vector<std::string> args = {
      "-name", vm.name,
      "-machine", vm.machine + ",memory-backend=" + kMainRamBlock + ",accel=" + vm.accel,
      "-smp", std::to_string(vm.vcpus),
      "-m", mem,
      // share=on: the RAM is the file itself, so a standby QEMU started on the replica file runs on exactly
      // the bytes tandem applied.
      "-object", std::string("memory-backend-file,id=") + kMainRamBlock + ",size=" + mem + ",mem-path=" +
                     vm.ram_path + ",share=on",
      // No default devices (no NIC, no disks, no VGA with its own RAM block): every device is explicit, so both
      // roles have the same device list and no state lives outside the replicated RAM and device blob.
      "-nodefaults", "-no-user-config", "-vga", "none", "-display", "none",
      "-qmp", "unix:" + vm.qmp_socket + ",server=on,wait=off",
      "-kernel", vm.kernel,
      // A guest crash is not a reason to fail over (the replica holds the same crash): the pvpanic device makes
      // QEMU report it (GUEST_PANICKED) and panic=none leaves the run state alone. Pausing instead would kill
      // QEMU 7.2 at the next COLO checkpoint ("invalid runstate transition: 'guest-panicked' -> 'colo'"), and
      // a dead QEMU looks like a dead host.
      "-device", "pvpanic",
      "-action", "panic=none",
  };
  // clang-format on
  // -nodefaults has no serial port: COM1 is the first -serial given.
  if (vm.output_args.empty()) {
    args.insert(args.end(), {"-serial", "file:" + vm.serial_log});
  } else {
    args.insert(args.end(), vm.output_args.begin(), vm.output_args.end());
  }
  if (!vm.disk_socket.empty()) {
    // Every write passes through tandem, which logs it in the open epoch before replying (disk/README.md).
    args.insert(args.end(), {"-blockdev", "driver=nbd,server.type=unix,server.path=" + vm.disk_socket +
                                              ",export=" + vm.name + ",node-name=disk0",
                             "-device", std::string("virtio-blk-pci,drive=disk0,addr=") + kDiskPciSlot + ",disable-modern=on"});
  }
  if (!vm.initrd.empty()) args.insert(args.end(), {"-initrd", vm.initrd});
  if (!vm.append.empty()) args.insert(args.end(), {"-append", vm.append});
  args.insert(args.end(), vm.extra_args.begin(), vm.extra_args.end());
  // The warm standby waits for a migration stream (device state only; RAM is already in the replica file).
  if (role == QemuRole::kStandby) args.insert(args.end(), {"-incoming", "defer"});
  return args;
}

namespace {

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// The -device models that are a NIC or a disk (or pass a host device through): their output or state would not
// be held or replicated.
bool IsNicOrDiskModel(std::string_view model) {
  static constexpr std::string_view kPrefixes[] = {
      "virtio-net", "e1000", "rtl8139", "ne2k", "pcnet", "vmxnet", "i8255", "igb", "usb-net", "tulip", "sungem",
      "virtio-blk", "virtio-scsi", "vhost-", "scsi-", "ide-", "nvme", "usb-storage", "usb-bot", "usb-uas", "floppy",
      "sd-card", "megasas", "lsi53c", "am53c974", "dc390", "mptsas", "pvscsi", "vfio-", "virtio-9p", "vhost-user"};
  for (std::string_view prefix : kPrefixes) {
    if (StartsWith(model, prefix)) return true;
  }
  return false;
}

// What a qemu_extra option adds that tandem does not protect, with the supported way; empty if nothing.
std::string UnprotectedDevice(std::string_view option, std::string_view value) {
  if (StartsWith(option, "--")) option.remove_prefix(1);  // QEMU takes --drive as -drive
  static constexpr std::string_view kDisk[] = {"-drive", "-blockdev", "-hda", "-hdb", "-hdc", "-hdd", "-cdrom",
                                               "-fda", "-fdb", "-sd", "-mtdblock", "-pflash", "-virtfs", "-fsdev"};
  for (std::string_view disk : kDisk) {
    if (option == disk) return "a disk (" + std::string(option) + "): give the VM its disk with the [disk] section";
  }
  if (option == "-netdev" || option == "-nic" || option == "-net") {
    return "a NIC backend (" + std::string(option) + "): give the VM its NIC with the [nic] section";
  }
  if (option == "-chardev" || option == "-serial" || option == "-parallel") {
    return "a character device (" + std::string(option) +
           "): COM1 already goes through tandem's console output commit (<state_dir>/serial.log)";
  }
  if (option == "-device") {
    std::string_view model = value.substr(0, value.find(','));
    if (StartsWith(model, "driver=")) model.remove_prefix(7);
    if (IsNicOrDiskModel(model)) {
      return "a NIC or disk device (-device " + std::string(model) +
             "): NICs through the [nic] section, a disk through the [disk] section";
    }
  }
  return "";
}

}  // namespace

std::vector<std::string> UnprotectedDevices(const std::vector<std::string>& extra_args) {
  std::vector<std::string> found;
  for (size_t i = 0; i < extra_args.size(); ++i) {
    const std::string& option = extra_args[i];
    const std::string value = i + 1 < extra_args.size() ? extra_args[i + 1] : "";
    std::string what = UnprotectedDevice(option, value);
    if (!what.empty()) found.push_back(option + " " + value + ": " + what);
  }
  return found;
}

}  // namespace tandem::qemu
