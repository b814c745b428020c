// What the roles are told, already typed and checked (cli/ maps its configuration file onto these).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "heartbeat/arbiter.h"
#include "heartbeat/heartbeat.h"
#include "heartbeat/witness_client.h"
#include "qemu-integration/qemu_args.h"
#include "replicator/receiver.h"
#include "replicator/shipper.h"

namespace tandem::roles {

// What both roles share.
struct RoleOptions {
  std::string vm_name;
  std::string state_dir;  // status.json, QEMU's sockets and log
  qemu::VmConfig vm;      // this host's QEMU
  // On a guest crash (QMP GUEST_PANICKED): reset the guest, or only report it.
  bool reset_guest_on_crash = false;
  heartbeat::HeartbeatOptions heartbeat;
  heartbeat::ArbiterOptions arbiter;
  std::optional<heartbeat::WitnessClientOptions> witness;  // none: two-host mode
};

struct PrimaryOptions : RoleOptions {
  int epoch_ms = 50;
  replicator::ShipperOptions ship;  // term is filled in once the guard grants one
};

struct StandbyOptions : RoleOptions {
  std::string replica_path;  // the replica of the VM's RAM the warm standby QEMU maps
  uint64_t replica_bytes = 0;
  replicator::ReceiverOptions receive;
  std::string arbitration;  // for the log: "witness ip:port" or "NO witness: two-host policy ..."
};

}  // namespace tandem::roles
