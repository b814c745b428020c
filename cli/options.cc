#include "cli/options.h"

#include <algorithm>

#include "output-commit/qemu_options.h"
#include "roles/disk.h"

namespace tandem::cli {
namespace {

// The two hosts are named after the section that describes them: [primary] is the host that runs the VM first.
// With re-protection each may later play the other role; its state, files, addresses and node name stay its own.
enum class Host { kFirst, kSecond };

const std::string& StateDir(const Config& config, Host host) {
  return host == Host::kFirst ? config.primary_state_dir : config.standby_state_dir;
}

// Both roles run the same QEMU options on a host (qemu::BuildQemuArgs adds the standby's -incoming).
qemu::VmConfig MakeVmConfigFor(const Config& config, Host host) {
  const std::string& state_dir = StateDir(config, host);
  qemu::VmConfig vm;
  vm.name = config.vm_name;
  vm.memory_mb = config.memory_mb;
  vm.vcpus = config.vcpus;
  vm.accel = config.accel;
  vm.machine = config.machine;
  vm.kernel = config.kernel;
  vm.initrd = config.initrd;
  vm.append = config.append;
  // Each host's guest memory file: the primary's RAM, or the standby's replica (which its QEMU maps and runs on
  // after a failover).
  vm.ram_path = host == Host::kFirst ? config.PrimaryRamPath() : config.ReplicaPath();
  vm.qmp_socket = state_dir + "/qmp.sock";
  vm.serial_log = state_dir + "/serial.log";  // written by tandem's console output commit, not by QEMU
  // COM1 (and the NIC) through tandem's output commit. LoadConfig checked these options for both state dirs.
  vm.output_args = output_commit::QemuConsoleArgs(state_dir).value();
  if (config.nic) {
    const std::vector<std::string> nic = output_commit::QemuNicArgs({config.nic_mac, config.nic_model}, state_dir).value();
    vm.output_args.insert(vm.output_args.end(), nic.begin(), nic.end());
  }
  vm.extra_args = config.qemu_extra;
  if (config.disk) vm.disk_socket = roles::DiskSocketIn(state_dir);
  return vm;
}

void FillRoleOptions(const Config& config, Host host, roles::RoleOptions* options) {
  const bool primary = host == Host::kFirst;
  options->vm_name = config.vm_name;
  options->state_dir = StateDir(config, host);
  options->vm = MakeVmConfigFor(config, host);
  options->reset_guest_on_crash = config.reset_guest_on_crash;
  options->metrics_address = config.MetricsAddress(primary);
  options->unprotected_devices = config.unprotected_devices;
  options->outputs.console_log = options->vm.serial_log;
  options->outputs.release_when_unprotected = config.release_when_unprotected;
  if (config.disk) {
    // A relative image path is taken in the role's state directory (two roles on one machine: tests, demos).
    const std::string image = config.disk_image.front() == '/' ? config.disk_image
                                                                : options->state_dir + "/" + config.disk_image;
    options->disk = roles::DiskOptions{image, config.disk_max_epoch_mib << 20};
  }
  if (config.nic) {
    roles::NicOptions nic;
    nic.tap = config.nic_tap;
    nic.bridge = config.nic_bridge;
    nic.limits.max_bytes = config.nic_hold_max_kib << 10;
    nic.limits.max_records = config.nic_hold_max_frames;
    options->outputs.nic = nic;
  }

  // Heartbeat links pair up by position between [primary] and [standby].
  heartbeat::HeartbeatOptions& hb = options->heartbeat;
  hb.node_name = primary ? "primary" : "standby";
  hb.peer_name = primary ? "standby" : "primary";
  const auto& local = primary ? config.primary_heartbeat : config.standby_heartbeat;
  const auto& peer = primary ? config.standby_heartbeat : config.primary_heartbeat;
  for (size_t i = 0; i < local.size(); ++i) hb.links.push_back({local[i], peer[i]});
  hb.interval_ms = config.heartbeat_interval_ms;
  hb.timeout_ms = config.heartbeat_timeout_ms;
  hb.psk = config.psk;

  options->arbiter = heartbeat::MakeArbiterOptions(config.HasWitness(), config.two_host_policy, config.lease_ms,
                                                   config.promise_ms, config.heartbeat_interval_ms);
  if (config.HasWitness()) {
    heartbeat::WitnessClientOptions witness;
    witness.witness_address = config.witness_address;
    witness.psk = config.psk;
    witness.vm = config.vm_name;
    witness.node = hb.node_name;
    options->witness = witness;
  }
}

}  // namespace

qemu::VmConfig MakeVmConfig(const Config& config, qemu::QemuRole role) {
  return MakeVmConfigFor(config, role == qemu::QemuRole::kPrimary ? Host::kFirst : Host::kSecond);
}

namespace {

std::optional<roles::AdaptiveEpochOptions> AdaptiveEpoch(const Config& config) {
  if (!config.epoch_auto) return std::nullopt;
  roles::AdaptiveEpochOptions adaptive;
  adaptive.min_ms = config.epoch_min_ms;
  adaptive.max_ms = config.epoch_max_ms;
  adaptive.start_ms = std::clamp(config.epoch_ms, config.epoch_min_ms, config.epoch_max_ms);
  adaptive.max_paused_percent = config.epoch_max_paused_percent;
  adaptive.max_output_latency_ms = config.epoch_max_output_latency_ms;
  adaptive.max_link_bytes_per_s = config.epoch_max_link_mib_s << 20;
  return adaptive;
}

replicator::ShipperOptions MakeShipperOptions(const Config& config, const std::string& standby_address) {
  replicator::ShipperOptions ship;
  ship.standby_address = standby_address;
  ship.security = config.LinkSecurity();
  ship.max_in_flight = config.max_in_flight;
  ship.io_timeout_ms = config.io_timeout_ms;
  ship.io_engine = config.io_engine;
  ship.encode_threads = config.encode_threads;
  ship.delta_base_bytes = config.delta_base_mib << 20;
  ship.codec.compression = config.compression;
  ship.codec.zstd_level = config.zstd_level;
  ship.codec.lz4_acceleration = config.lz4_acceleration;
  ship.adaptive_compression = config.compression_auto;
  ship.debug_die_mid_epoch = config.debug_die_mid_epoch;
  ship.debug_corrupt_epoch = config.debug_corrupt_epoch;
  return ship;
}

roles::StandbyOptions MakeStandbyOptionsFor(const Config& config, Host host) {
  roles::StandbyOptions options;
  FillRoleOptions(config, host, &options);
  options.replica_path = options.vm.ram_path;
  options.replica_bytes = config.memory_mb << 20;
  // The standby promises in every heartbeat not to seek promotion before promise_ms after hearing the
  // primary: that promise is what lets a primary cut off from the witness keep running (heartbeat/arbiter.h).
  options.heartbeat.promise_ms = config.promise_ms;
  const std::string& listen = host == Host::kFirst ? config.primary_replication : config.standby_replication;
  const std::string& other = host == Host::kFirst ? config.standby_replication : config.primary_replication;
  replicator::ReceiverOptions& receive = options.receive;
  receive.listen_address = listen;
  receive.security = config.LinkSecurity();
  receive.file_backed_blocks = {{qemu::kMainRamBlock, options.replica_path}};
  receive.expected_vm_name = config.vm_name;
  receive.io_engine = config.io_engine;
  receive.io_timeout_ms = config.io_timeout_ms;
  receive.apply_threads = config.apply_threads;
  options.arbitration = config.HasWitness()
                            ? "witness " + config.witness_address
                            : "NO witness: two-host policy " +
                                  std::string(heartbeat::TwoHostPolicyName(config.two_host_policy));
  if (config.Reprotects()) options.reprotect =
      roles::ReprotectOptions{config.epoch_ms, MakeShipperOptions(config, other), AdaptiveEpoch(config)};
  return options;
}

}  // namespace

roles::PrimaryOptions MakePrimaryOptions(const Config& config) {
  roles::PrimaryOptions options;
  FillRoleOptions(config, Host::kFirst, &options);
  options.epoch_ms = config.epoch_ms;
  options.adaptive_epoch = AdaptiveEpoch(config);
  options.ship = MakeShipperOptions(config, config.standby_replication);
  if (config.Libvirt()) {
    options.libvirt = roles::LibvirtOptions{config.libvirt_uri, config.libvirt_domain, config.allow_unprotected_devices};
  }
  if (config.Reprotects()) {
    options.rejoin_as_standby = std::make_shared<const roles::StandbyOptions>(MakeStandbyOptionsFor(config, Host::kFirst));
  }
  return options;
}

roles::StandbyOptions MakeStandbyOptions(const Config& config) { return MakeStandbyOptionsFor(config, Host::kSecond); }

}  // namespace tandem::cli
