#include "cli/options.h"

namespace tandem::cli {
namespace {

void FillRoleOptions(const Config& config, qemu::QemuRole role, roles::RoleOptions* options) {
  const bool primary = role == qemu::QemuRole::kPrimary;
  options->vm_name = config.vm_name;
  options->state_dir = primary ? config.primary_state_dir : config.standby_state_dir;
  options->vm = MakeVmConfig(config, role);
  options->reset_guest_on_crash = config.reset_guest_on_crash;

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
  // The standby promises in every heartbeat not to seek promotion before promise_ms after hearing the
  // primary: that promise is what lets a primary cut off from the witness keep running (heartbeat/arbiter.h).
  if (!primary) hb.promise_ms = config.promise_ms;

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
  const bool primary = role == qemu::QemuRole::kPrimary;
  const std::string& state_dir = primary ? config.primary_state_dir : config.standby_state_dir;
  qemu::VmConfig vm;
  vm.name = config.vm_name;
  vm.memory_mb = config.memory_mb;
  vm.vcpus = config.vcpus;
  vm.accel = config.accel;
  vm.machine = config.machine;
  vm.kernel = config.kernel;
  vm.initrd = config.initrd;
  vm.append = config.append;
  vm.ram_path = primary ? config.PrimaryRamPath() : config.ReplicaPath();
  vm.qmp_socket = state_dir + "/qmp.sock";
  vm.serial_log = state_dir + "/serial.log";
  vm.extra_args = config.qemu_extra;
  return vm;
}

roles::PrimaryOptions MakePrimaryOptions(const Config& config) {
  roles::PrimaryOptions options;
  FillRoleOptions(config, qemu::QemuRole::kPrimary, &options);
  options.epoch_ms = config.epoch_ms;
  replicator::ShipperOptions& ship = options.ship;
  ship.standby_address = config.standby_replication;
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
  return options;
}

roles::StandbyOptions MakeStandbyOptions(const Config& config) {
  roles::StandbyOptions options;
  FillRoleOptions(config, qemu::QemuRole::kStandby, &options);
  options.replica_path = config.ReplicaPath();
  options.replica_bytes = config.memory_mb << 20;
  replicator::ReceiverOptions& receive = options.receive;
  receive.listen_address = config.standby_replication;
  receive.file_backed_blocks = {{qemu::kMainRamBlock, options.replica_path}};
  receive.expected_vm_name = config.vm_name;
  receive.io_engine = config.io_engine;
  receive.io_timeout_ms = config.io_timeout_ms;
  receive.apply_threads = config.apply_threads;
  options.arbitration = config.HasWitness()
                            ? "witness " + config.witness_address
                            : "NO witness: two-host policy " +
                                  std::string(heartbeat::TwoHostPolicyName(config.two_host_policy));
  return options;
}

}  // namespace tandem::cli
