// What the roles are told, already typed and checked (cli/ maps its configuration file onto these).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "heartbeat/arbiter.h"
#include "heartbeat/heartbeat.h"
#include "heartbeat/witness_client.h"
#include "output-commit/hold_queue.h"
#include "qemu-integration/qemu_args.h"
#include "replicator/receiver.h"
#include "replicator/shipper.h"
#include "roles/epoch_interval.h"

namespace tandem::roles {

// The guest's NIC on this host (output-commit/README.md): QEMU's side is in vm.output_args.
struct NicOptions {
  std::string tap;     // the host interface tandem opens (the same name on both hosts, same L2 segment)
  std::string bridge;  // optional: the existing bridge the TAP joins
  output_commit::HoldLimits limits;
};

// What the guest writes to the world (console, NIC) is held until the standby has the epoch that wrote it.
struct OutputOptions {
  std::string console_log;        // released console bytes are appended here (vm.serial_log)
  std::optional<NicOptions> nic;  // none: the VM has no NIC
  // No standby connected: release at once and run unprotected (logged), or keep holding (the guest's network
  // stalls when the queue is full).
  bool release_when_unprotected = true;
};

// The guest's disk (disk/README.md): a raw image at the same path on both hosts, each host its own copy.
struct DiskOptions {
  std::string image_path;
  // The open epoch's writes held at most (then the guest's disk I/O waits for the next checkpoint, which tandem
  // asks QEMU to bring forward).
  uint64_t max_epoch_bytes = 256ull << 20;
};

// The primary's VM is a libvirt domain (README.md, "libvirt"): tandem defines the protected XML, starts the domain
// through libvirt and follows its lifecycle events, instead of spawning QEMU itself.
struct LibvirtOptions {
  std::string uri;     // "qemu:///system"
  std::string domain;  // the domain's name
  bool allow_unprotected_devices = false;  // keep the domain's own disks/NICs/... (unprotected) instead of refusing
};

// What both roles share.
struct RoleOptions {
  std::string vm_name;
  std::string state_dir;  // status.json, QEMU's sockets and log
  qemu::VmConfig vm;      // this host's QEMU
  OutputOptions outputs;
  std::optional<DiskOptions> disk;  // none: the VM has no disk (vm.disk_socket empty)
  // qemu_extra devices the configuration allowed although tandem does not protect them: a WARN at every start.
  std::vector<std::string> unprotected_devices;
  // On a guest crash (QMP GUEST_PANICKED): reset the guest, or only report it.
  bool reset_guest_on_crash = false;
  heartbeat::HeartbeatOptions heartbeat;
  heartbeat::ArbiterOptions arbiter;
  std::optional<heartbeat::WitnessClientOptions> witness;  // none: two-host mode
  // The Prometheus endpoint's "host:port" (metrics/server.h); empty: none.
  std::string metrics_address;
};

// Automatic re-protection (README, "Re-protection"): after a failover the VM's new host checkpoints the VM it
// resumed and ships it to the other host, whose tandem rejoins as the standby when it comes back.
struct ReprotectOptions {
  int epoch_ms = 50;
  replicator::ShipperOptions ship;  // to the other host's replication address; term filled in at promotion
  std::optional<AdaptiveEpochOptions> adaptive_epoch;  // as PrimaryOptions'
};

struct StandbyOptions;

struct PrimaryOptions : RoleOptions {
  int epoch_ms = 50;
  // epoch_ms = "auto": tandem starts each checkpoint itself, at the interval the controller picks within these
  // limits (epoch_interval.h); epoch_ms is then unused.
  std::optional<AdaptiveEpochOptions> adaptive_epoch;
  std::optional<LibvirtOptions> libvirt;  // none: tandem spawns QEMU
  replicator::ShipperOptions ship;  // term is filled in once the guard grants one
  // This host as the standby: when the witness says the other host holds the VM (this host lost its term while
  // it was away), the role runs as that host's standby instead of waiting for a right to run it. Null: no
  // re-protection configured.
  std::shared_ptr<const StandbyOptions> rejoin_as_standby;
};

struct StandbyOptions : RoleOptions {
  std::string replica_path;  // the replica of the VM's RAM the warm standby QEMU maps
  uint64_t replica_bytes = 0;
  replicator::ReceiverOptions receive;
  std::string arbitration;  // for the log: "witness ip:port" or "NO witness: two-host policy ..."
  std::optional<ReprotectOptions> reprotect;  // once promoted; none: the VM runs unprotected after a failover
};

}  // namespace tandem::roles
