// The guest's output channels (console, NIC) as the roles drive them: the output-commit module
// (output-commit/README.md, "When the roles call what") behind a small interface, so tests/roles can record the
// order of boundaries, releases and drops against the checkpoint stream.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "output-commit/held_output.h"
#include "replicator/shipper.h"
#include "roles/options.h"

namespace tandem::roles {

class VmHost;
class GuestOutputs;

// One held output (output_commit::HeldOutput in production).
class OutputChannel {
 public:
  virtual ~OutputChannel() = default;
  virtual Status OnEpochBoundary(uint64_t epoch) = 0;
  virtual void ReleaseThrough(uint64_t acked) = 0;
  virtual uint64_t DropUnreleased() = 0;
  virtual void SetPassThrough(bool on) = 0;
  virtual output_commit::OutputStats stats() const = 0;
};

// Adapts a started output_commit channel.
std::unique_ptr<OutputChannel> WrapHeldOutput(std::unique_ptr<output_commit::HeldOutput> output);

// All output channels of this host's VM, driven together. The safety rules live here, once:
//  - a boundary on every channel for every epoch (the role calls it while the VM is stopped for that epoch);
//  - ReleaseThrough only with an epoch the standby acknowledged (ShipperStats::last_acked > 0: 0 means no ack
//    yet, and the precopy's output waits for the first real one);
//  - after DropUnreleased (superseded) nothing is ever released again;
//  - without a standby, release_when_unprotected passes output through (logged), else it stays held.
// Thread-safe: the checkpoint loop, the follower thread and the role call it concurrently.
class GuestOutputs {
 public:
  GuestOutputs(std::string vm_name, bool release_when_unprotected);
  ~GuestOutputs();  // stops following

  void Add(std::string name, std::unique_ptr<OutputChannel> channel);
  // On every channel. A channel's error is logged, not returned: what it did not read or tag is tagged with a
  // later boundary, which only delays its release (output-commit/README.md, point 2), never makes it early.
  void OnEpochBoundary(uint64_t epoch);
  // The shipper's view of the standby: releases what it acknowledged; pass-through while unprotected (policy).
  void OnShipperStats(const replicator::ShipperStats& stats);
  // Polls `stats` every period_ms in a thread and feeds OnShipperStats, until Stop / destruction.
  void Follow(std::function<replicator::ShipperStats()> stats, int period_ms);
  void StopFollowing();
  // Superseded: forgets everything held; final (later releases and pass-through are ignored).
  void DropUnreleased();
  // A host no older copy can overtake (the promoted standby): everything leaves at once from now on, until a
  // followed shipper reports a standby holding a copy (re-protection), from which on output is held again.
  void PassThrough();
  nlohmann::json StatusJson() const;

 private:
  struct Named {
    std::string name;
    std::unique_ptr<OutputChannel> channel;
  };
  void SetPassThroughLocked(bool on);

  const std::string vm_name_;
  const bool release_when_unprotected_;
  mutable std::mutex mu_;
  std::vector<Named> channels_;
  bool dropped_ = false;
  bool pass_through_ = false;
  bool unprotected_ = false;  // last seen: no standby connected
  uint64_t released_through_ = 0;
  // Follower thread.
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread follower_;
};

// The role's outputs before its QEMU starts: the console always, the NIC when configured and `with_nic` (the
// standby opens its NIC only at failover: OpenNicForFailover). Also logs, as a WARN, the devices qemu_extra adds
// that nothing protects (allowed by the configuration), at every start.
Result<std::unique_ptr<GuestOutputs>> OpenGuestOutputs(const RoleOptions& options, VmHost* host, bool with_nic);

}  // namespace tandem::roles
