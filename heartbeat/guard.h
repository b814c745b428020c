// The role loops, ready to use: one thread per role that drives the lease authority and the arbiter from the
// heartbeat service's view of the peer, and calls back on every decision change. What the CLI would otherwise
// write by hand, with the timing the safety argument needs: the thread wakes up at the arbiter's NextDeadline(),
// so a Fence callback runs within microseconds of the validity running out (README.md, "fence latency").
//
//   PrimaryGuard guard(arbiter_options, interval_ms, &heartbeats, &witness_client, clock);
//   guard.OnDecision([&](const PrimaryDecision& d) { /* kRun: cont; kFence: QMP stop; kSuperseded: stop+kill */ });
//   guard.Start();  ...  guard.SetLastEpoch(n);  ...  guard.Stop();
//
// Callbacks run on the guard thread, must return quickly (a QMP stop is fine) and must not call Stop(). While a
// guard runs it owns HeartbeatService::SetLocalState() (role, term, last epoch); feed the epoch through the guard.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/env.h"
#include "common/status.h"
#include "heartbeat/arbiter.h"
#include "heartbeat/heartbeat.h"
#include "heartbeat/lease.h"

namespace tandem::heartbeat {

// For `tandem status`: one consistent snapshot.
struct GuardStatus {
  std::string state;           // PrimaryActionName / StandbyActionName
  std::string reason;
  std::string alarm;           // "" = none
  uint64_t term = 0;
  int64_t lease_valid_ms = -1;    // primary: remaining witness lease on our clock (-1: none)
  int64_t support_valid_ms = -1;  // primary: remaining standby support (-1: none)
  bool witness_configured = false;
  bool witness_reachable = false;
  std::string last_deny;       // WitnessReasonName of the last DENY ("" = none)
  // Primary, acquiring: the witness refused our registration because this node holds the VM at this term under a
  // valid lease (PrimaryArbiter::refused_for_holder); "" / 0 otherwise.
  std::string held_by;
  uint64_t held_term = 0;
};

class PrimaryGuard {
 public:
  // `authority` may be null (two-host mode). `term` and `grant`: see PrimaryArbiter (a promoted standby passes
  // its new term and StandbyGuard::grant()). The pointers must outlive the guard; `heartbeats` is started by the
  // caller.
  PrimaryGuard(ArbiterOptions options, int interval_ms, HeartbeatService* heartbeats, LeaseAuthority* authority,
               Clock* clock, uint64_t term = 0, std::optional<LeaseReply> grant = std::nullopt);
  ~PrimaryGuard();  // Stop()s

  void OnDecision(std::function<void(const PrimaryDecision&)> callback);  // before Start()
  Status Start();
  void Stop();

  void SetLastEpoch(uint64_t epoch);
  PrimaryDecision decision() const;  // the latest
  GuardStatus status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class StandbyGuard {
 public:
  StandbyGuard(ArbiterOptions options, int interval_ms, HeartbeatService* heartbeats, LeaseAuthority* authority,
               Clock* clock);
  ~StandbyGuard();

  // Called on every decision change; kPromote comes exactly once and is the last call (the thread then ends).
  void OnDecision(std::function<void(const StandbyDecision&)> callback);
  Status Start();
  void Stop();

  // Whether a complete epoch can be resumed, and the last one applied (carried in heartbeats and PROMOTE).
  void SetResumePoint(bool ready, uint64_t last_applied_epoch);
  void AllowManualPromotion();  // two-host never-promote; no command offers it yet
  StandbyDecision decision() const;
  std::optional<LeaseReply> grant() const;  // after kPromote in witness mode
  GuardStatus status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::heartbeat
