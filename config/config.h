// tandem's configuration file: one TOML file shared by both hosts (each host runs the role it is given).
// tandem.example.toml (top level of the repository) documents every key: its default, unit and meaning.
//
//   [vm]          name, memory_mb, vcpus, accel ("kvm"|"tcg"), machine, kernel, initrd, append, epoch_ms (or "auto"),
//                 qemu_extra (array), on_guest_crash ("report"|"reset"), memory_dir, allow_unprotected_devices
//   [epoch]       min_ms, max_ms, max_paused_percent, max_output_latency_ms, max_link_mib_s (epoch_ms = "auto" only)
//   [nic]         mac, tap, bridge, model, hold_max_kib, hold_max_frames, when_unprotected (absent: no NIC)
//   [disk]        image (raw image, the same path on both hosts: each host its own copy; a relative path is in
//                 the role's state_dir), format ("raw"), max_epoch_mib (absent: no disk)
//   [libvirt]     uri, domain (absent: tandem spawns the primary's QEMU itself)
//   [primary]     state_dir, heartbeat (array: one local UDP address per link)
//   [standby]     state_dir, replication (listen host:port), heartbeat (array, one address per link)
//   [heartbeat]   interval_ms, timeout_ms, psk | psk_file (>= 16 bytes; the file 0600, ours)
//   [replication] ... encryption ("aes-gcm" | "none"; authenticated either way), psk | psk_file (the link's key;
//                 default: the heartbeat's, which the witness holds too)
//   [replication] max_in_flight, io_timeout_ms, io_engine, encode_threads, apply_threads, compression,
//                 lz4_acceleration, zstd_level, delta_base_mib
//   [witness]     address, listen, state_dir, lease_ms, promise_ms, two_host_policy
//   [metrics]     address (the Prometheus endpoint, "host:port"; absent: none), primary_address,
//                 standby_address (per role, over address: two roles on one host)
//
// Heartbeat links pair up by position: primary.heartbeat[i] <-> standby.heartbeat[i].
// Adding a key: a field here, one line in Keys() in config.cc, its documentation in tandem.example.toml.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "heartbeat/arbiter.h"
#include "output-commit/hold_queue.h"
#include "replicator/link_security.h"
#include "replicator/page_codec.h"
#include "replicator/transport.h"

namespace tandem::config {

struct Config {
  // [vm]
  std::string vm_name = "vm0";
  uint64_t memory_mb = 64;
  int vcpus = 1;
  std::string accel = "kvm";
  std::string machine = "q35";
  std::string kernel, initrd, append;
  int epoch_ms = 50;
  // epoch_ms = "auto": the primary picks each epoch's interval within [epoch] min_ms..max_ms, the shortest that
  // keeps the [epoch] limits (roles/epoch_interval.h). [epoch] keys without "auto" are refused.
  bool epoch_auto = false;
  int epoch_min_ms = 10;
  int epoch_max_ms = 1000;
  double epoch_max_paused_percent = 5;
  int epoch_max_output_latency_ms = 0;  // 0: no limit
  uint64_t epoch_max_link_mib_s = 0;    // 0: no limit
  std::vector<std::string> qemu_extra;
  // What to do when the guest crashes (QMP GUEST_PANICKED): report (leave the guest to its own panic handling)
  // or reset it.
  bool reset_guest_on_crash = false;
  // Where the files that hold guest memory live (the primary's RAM file, the standby's replica): a directory
  // tandem creates 0700 and refuses to use when anyone else could enter it (common/SECURITY.md).
  std::string memory_dir = "/dev/shm/tandem";
  // qemu_extra may add devices whose output or state tandem does not protect (a disk, a NIC outside [nic], a
  // chardev): refused at load unless this is set; then the roles log them as a WARN at every start.
  bool allow_unprotected_devices = false;
  std::vector<std::string> unprotected_devices;  // what qemu_extra adds that is not protected (filled at load)
  // [nic]: the guest's NIC, its output held until the standby has the epoch that sent it (output-commit/).
  bool nic = false;  // a [nic] section was given
  std::string nic_mac, nic_tap, nic_bridge, nic_model = "virtio-net-pci";
  uint64_t nic_hold_max_kib = 4096;
  uint64_t nic_hold_max_frames = 4096;
  // No standby connected: release the output at once (run unprotected, like Remus/VMware FT; logged) or hold it
  // (the guest's network stalls once the hold queue is full, until a standby acknowledges). Applies to the
  // console too.
  bool release_when_unprotected = true;
  // [disk]: the guest's disk, served by tandem over NBD and replicated with the epochs (disk/README.md).
  bool disk = false;  // a [disk] section was given
  std::string disk_image;
  std::string disk_format = "raw";  // the only one
  uint64_t disk_max_epoch_mib = 256;
  // [libvirt]: the primary's VM is this libvirt domain (README.md, "libvirt"); the standby's QEMU stays tandem's.
  std::string libvirt_uri = "qemu:///system";
  std::string libvirt_domain;  // empty: no libvirt (an empty [libvirt] table, as in the example, is none)
  bool Libvirt() const { return !libvirt_domain.empty(); }
  // [primary]
  std::string primary_state_dir = "/run/tandem/primary";
  std::vector<std::string> primary_heartbeat;
  // Where this host listens for epochs once it is the standby (after a failover): "" = no automatic
  // re-protection, in either direction.
  std::string primary_replication;
  // [standby]
  std::string standby_state_dir = "/run/tandem/standby";
  std::string standby_replication = "127.0.0.1:7400";
  std::vector<std::string> standby_heartbeat;
  // [heartbeat]
  int heartbeat_interval_ms = 10;
  int heartbeat_timeout_ms = 60;
  std::string psk;
  // The replication link: always authenticated; aes-gcm also encrypts guest memory on the wire (README).
  replicator::LinkEncryption link_encryption = replicator::LinkEncryption::kAesGcm;
  // [replication] psk | psk_file; empty: the heartbeat's key (which the witness also holds).
  std::string replication_psk;
  replicator::LinkSecurity LinkSecurity() const {
    return {replication_psk.empty() ? psk : replication_psk, link_encryption};
  }
  // [replication]
  int max_in_flight = 2;
  int io_timeout_ms = 2000;
  // auto tries io_uring and says in the log which engine it took and why
  replicator::IoEngine io_engine = replicator::IoEngine::kAuto;
  int encode_threads = 4;          // for large epochs; capped at the CPUs the process may use
  int apply_threads = 4;           // standby: for large epochs (a full resync); capped likewise
  uint64_t delta_base_mib = 0;     // primary: the delta base's budget; 0 = 1/16 of guest RAM (delta_base.h)
  // auto: effort follows whichever of encoder and link is the bottleneck (compression then is its lightest rung)
  bool compression_auto = true;
  replicator::Compression compression = replicator::Compression::kLz4;
  int lz4_acceleration = 1;          // compression = lz4
  int zstd_level = 1;                // compression = zstd, and auto's heaviest rung
  // [witness]
  std::string witness_address;
  std::string witness_listen;
  std::string witness_state_dir = "/var/lib/tandem/witness";
  int lease_ms = 150;
  int promise_ms = 60;
  // Without a witness, a standby that promotes on heartbeat loss alone runs a second active VM whenever every
  // host<->host link fails while the primary is alive. So the default is never-promote (failover by hand).
  heartbeat::TwoHostPolicy two_host_policy = heartbeat::TwoHostPolicy::kNeverPromote;
  // [metrics]: the Prometheus endpoint ("host:port"; empty: off), for every role or per role.
  std::string metrics_address, metrics_primary_address, metrics_standby_address;
  const std::string& MetricsAddress(bool primary) const {
    const std::string& own = primary ? metrics_primary_address : metrics_standby_address;
    return own.empty() ? metrics_address : own;
  }
  // [debug]: fault injection for tests; never set in production.
  uint64_t debug_die_mid_epoch = 0;   // primary raises SIGKILL half way through shipping this epoch
  uint64_t debug_corrupt_epoch = 0;   // primary flips one bit of this epoch's first page after checksumming

  bool HasWitness() const { return !witness_address.empty(); }
  bool Reprotects() const { return !primary_replication.empty(); }
  // The files of this VM in memory_dir all start with "<vm>." (what `tandem status` lists).
  std::string MemoryFilePrefix() const { return vm_name + "."; }
  std::string PrimaryRamPath() const { return memory_dir + "/" + MemoryFilePrefix() + "primary.ram"; }
  std::string ReplicaPath() const { return memory_dir + "/" + MemoryFilePrefix() + "replica"; }
};

// Parses TOML text. Unknown tables and keys, values of the wrong type, out of range or not among the allowed words
// are errors (a typo must not silently change behaviour), each as "source:line:col: key: what is allowed"; every
// such error of the file is reported at once, one per line. A file in the old INI format is refused with a note
// on how to convert it.
Result<Config> ParseConfig(const std::string& text, const std::string& source = "config");
Result<Config> LoadConfig(const std::string& path);

// "table.key" for every key the file may set (tests check that tandem.example.toml documents each one).
std::vector<std::string> ConfigKeyNames();

}  // namespace tandem::config
