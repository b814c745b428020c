#include "output-commit/qemu_options.h"

#include <cctype>

#include "output-commit/unix_socket.h"

namespace tandem::output_commit {
namespace {

Status CheckPath(const std::string& path) {
  sockaddr_un addr;
  TANDEM_RETURN_IF_ERROR(MakeUnixAddress(path, &addr));
  // QEMU's option parser splits on ','.
  if (path.find(',') != std::string::npos) return Status::InvalidArgument("'" + path + "' contains a comma");
  return Status::Ok();
}

bool IsHex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

Status CheckMac(const std::string& mac) {
  bool ok = mac.size() == 17;
  for (size_t i = 0; ok && i < mac.size(); ++i) ok = (i % 3 == 2) ? mac[i] == ':' : IsHex(mac[i]);
  if (!ok) return Status::InvalidArgument("NIC mac '" + mac + "' is not of the form 52:54:00:12:34:56");
  const int first = std::stoi(mac.substr(0, 2), nullptr, 16);
  if (first & 1) return Status::InvalidArgument("NIC mac '" + mac + "' is a multicast address");
  return Status::Ok();
}

bool IsPlainName(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') return false;
  }
  return true;
}

}  // namespace

OutputPaths PathsIn(const std::string& state_dir) {
  return {state_dir + "/nic.sock", state_dir + "/nic-qemu.sock", state_dir + "/console.sock"};
}

Result<std::vector<std::string>> QemuNicArgs(const QemuNicConfig& nic, const std::string& state_dir) {
  const OutputPaths paths = PathsIn(state_dir);
  TANDEM_RETURN_IF_ERROR(CheckPath(paths.nic_socket).WithContext("NIC socket"));
  TANDEM_RETURN_IF_ERROR(CheckPath(paths.nic_qemu_socket).WithContext("NIC socket"));
  TANDEM_RETURN_IF_ERROR(CheckMac(nic.mac));
  if (!IsPlainName(nic.model)) return Status::InvalidArgument("NIC model '" + nic.model + "' is not a device name");
  if (!IsPlainName(nic.id)) return Status::InvalidArgument("NIC id '" + nic.id + "' is not a plain name");
  return std::vector<std::string>{
      "-netdev", "dgram,id=" + nic.id + ",local.type=unix,local.path=" + paths.nic_qemu_socket +
                     ",remote.type=unix,remote.path=" + paths.nic_socket,
      // romfile= : no PXE option ROM (the guest boots from -kernel), so no extra RAM block and no ipxe files.
      // disable-modern=on (virtio models): legacy virtio, which the test guest's driver needs (tests/guest);
      // Linux drives both.
      "-device", nic.model + ",netdev=" + nic.id + ",mac=" + nic.mac + ",addr=" + kNicPciSlot + ",romfile=" +
                     (nic.model.rfind("virtio-", 0) == 0 ? ",disable-modern=on" : ""),
  };
}

Result<std::vector<std::string>> QemuConsoleArgs(const std::string& state_dir) {
  const OutputPaths paths = PathsIn(state_dir);
  TANDEM_RETURN_IF_ERROR(CheckPath(paths.console_socket).WithContext("console socket"));
  // server=off without reconnect: QEMU connects once, synchronously, before the guest runs (so no early byte
  // is lost) and fails to start if tandem is not listening.
  return std::vector<std::string>{
      "-chardev", "socket,id=ser0,path=" + paths.console_socket + ",server=off",
      "-serial", "chardev:ser0",
  };
}

}  // namespace tandem::output_commit
