// The role arbiter: pure decisions (no I/O, no clock of its own) about whether this host may run the protected VM.
// It is fed the witness's replies (heartbeat/lease.h), the heartbeat detector's view of the peer
// (heartbeat/types.h PeerStatus) and the time, and is driven by Tick(now). The CLI acts on the decisions.
//
// The safety rule: the VM runs unpaused only with the support of 2 of 3 {primary itself, standby, witness}.
//   - PrimaryArbiter: Run while the witness lease OR the standby's promise is valid, Fence when neither is,
//     Superseded (final) as soon as any newer term is seen. It un-fences only by regaining support at the same
//     term. Validity is computed from the primary's OWN send times:
//       lease valid until   = send time of the renew a GRANT answers + lease - lease_margin
//       support valid until = our send time the standby echoes + its promise - promise_margin
//   - StandbyArbiter: Promote only after (1) the primary is lost on every link, (2) its own promise ("no
//     promotion request before last heard + promise") ran out, and (3) the witness GRANTed term+1, which it does
//     only once the primary's lease expired on the witness's clock. A DENY keeps it standby (alarm, retry); an
//     unreachable witness means no promotion (alarm). Two-host mode follows TwoHostPolicy.
// The argument that no instant has two actives, its assumptions and the margins: heartbeat/README.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "heartbeat/lease.h"
#include "heartbeat/witness_message.h"

namespace tandem::heartbeat {

// What happens without a witness (no `[witness] address` in the configuration). There is no free choice here:
// with two hosts, a partition of every host<->host link is indistinguishable from a dead peer, so a policy picks
// which failure it survives.
enum class TwoHostPolicy : uint8_t {
  // Default. The standby never promotes by itself and the primary never fences: no split brain, ever, but a dead
  // primary means downtime until an operator who checked that it is really dead starts the VM again by hand.
  kNeverPromote,
  // The standby promotes once the primary is lost and its promise ran out; the primary keeps running when it
  // loses the standby. Automatic failover, but a partition of ALL host<->host links makes two actives (split
  // brain). Only with several truly independent links.
  kStandbyPromotes,
  // The standby promotes as above, and the primary fences itself when the standby's promise runs out (the
  // promise alone keeps them apart, like with a witness). No split brain while both tandem processes run, but
  // the VM pauses whenever the standby dies or the links are cut, and it cannot start before a standby is up.
  kStandbyPromotesPrimaryFences,
};
const char* TwoHostPolicyName(TwoHostPolicy policy);  // "never-promote", "standby-promotes", "standby-promotes-fenced"
Result<TwoHostPolicy> ParseTwoHostPolicy(std::string_view text);

struct ArbiterOptions {
  bool witness = true;  // false: two-host mode
  TwoHostPolicy two_host_policy = TwoHostPolicy::kNeverPromote;
  // Margins (see README.md): they absorb clock-rate drift between hosts (tiny: 2 * rho * duration) and, above
  // all, the time from a Fence decision to the VM actually stopped (tick lateness + QMP stop).
  int64_t lease_margin_ns = 15'000'000;    // lease_ms / 10 for 150 ms
  int64_t promise_margin_ns = 6'000'000;   // promise_ms / 10 for 60 ms
  int64_t promote_retry_ns = 10'000'000;   // standby: re-send PROMOTE this often until granted
  // Standby: no witness reply for this long -> "witness unreachable"; DENY(holder lease valid) for this long
  // after the first request -> "the primary still holds the lease" (before that it is just running out).
  int64_t witness_timeout_ns = 150'000'000;
};

// The defaults derived from the configuration: margins of 10% (at least 2 ms), retry every interval, the witness
// declared unreachable after one lease without any answer.
ArbiterOptions MakeArbiterOptions(bool witness, TwoHostPolicy policy, int lease_ms, int promise_ms, int interval_ms);

// ---------------------------------------------------------------------------------------------------------------

enum class PrimaryAction : uint8_t {
  kAcquire,     // no term yet (waiting for the witness to register us): do not start or resume the VM
  kRun,         // the VM may run
  kFence,       // stop the VM now (QMP stop; stop releasing output); may return to kRun at the same term
  kSuperseded,  // final: a newer term exists elsewhere. Stay stopped, kill the VM, re-protect as a standby.
};
const char* PrimaryActionName(PrimaryAction action);

struct PrimaryDecision {
  PrimaryAction action = PrimaryAction::kAcquire;
  uint64_t term = 0;
  const char* reason = "";     // why (static string)
  const char* alarm = nullptr;  // a standing alarm while running (e.g. witness unreachable), else nullptr
  bool changed = false;         // action differs from the previous Tick: log it with the reason, act on it
};

class PrimaryArbiter {
 public:
  // `term`: 0 in witness mode for a fresh start (the witness registers us: LEASE_RENEW{term 0}); the term to run
  // with in two-host mode (>= 1), or, for a standby that was just promoted, its GRANT's term (then feed that GRANT
  // to OnLeaseReply so the lease it carries counts).
  explicit PrimaryArbiter(ArbiterOptions options, uint64_t term = 0);

  // A reply from the lease authority (renew or, after a promotion, the PROMOTE grant).
  void OnLeaseReply(const LeaseReply& reply);
  // From HeartbeatService::peer(): the highest term the standby carried and its support (raw, without margin).
  void OnPeer(uint64_t max_term_seen, int64_t support_until_ns);
  // Any other authenticated source of terms (replication stream, `tandem status` of the peer...).
  // `source` must be a static string.
  void OnTermSeen(uint64_t term, const char* source);

  PrimaryDecision Tick(int64_t now_ns);

  // The next instant at which Tick may change its answer without new input (a validity running out), or
  // INT64_MAX. The caller's loop must wake up by then: fencing late eats the margin.
  int64_t NextDeadline(int64_t now_ns) const;

  bool should_renew() const;             // witness mode and not superseded
  uint64_t renew_term() const { return term_; }  // the term for LEASE_RENEW (0 = registration)
  uint64_t term() const { return term_; }
  uint64_t superseding_term() const { return superseded_by_; }
  int64_t lease_valid_until_ns() const { return lease_until_; }
  int64_t support_valid_until_ns() const { return support_until_; }
  WitnessReason last_deny() const { return last_deny_; }
  // While acquiring: the node the witness said holds the VM under a valid lease when it refused our registration,
  // and that term ("" / 0: none said so). A restarted primary whose VM now runs on the other host learns here that
  // it lost its term, and may rejoin as that host's standby (roles/primary.h).
  const std::string& refused_for_holder() const { return refused_for_holder_; }
  uint64_t refused_for_term() const { return refused_for_term_; }

 private:
  void Supersede(uint64_t term, const char* source);

  const ArbiterOptions options_;
  uint64_t term_;
  uint64_t superseded_by_ = 0;
  const char* superseded_reason_ = "";
  int64_t lease_until_ = 0;    // margin already subtracted
  int64_t support_until_ = 0;  // margin already subtracted
  WitnessReason last_deny_ = WitnessReason::kNone;
  std::string refused_for_holder_;
  uint64_t refused_for_term_ = 0;
  PrimaryAction last_action_ = PrimaryAction::kAcquire;
  bool ticked_ = false;
};

// ---------------------------------------------------------------------------------------------------------------

enum class StandbyAction : uint8_t {
  kWait,              // keep replicating
  kRequestPromotion,  // primary lost and our promise ran out: asking the witness (send_promote says when)
  kPromote,           // final: resume the VM with `term` (log, SetLocalState, become primary)
  kAlarm,             // cannot fail over (reason says why); keep replicating, keep retrying where it makes sense
};
const char* StandbyActionName(StandbyAction action);

struct StandbyDecision {
  StandbyAction action = StandbyAction::kWait;
  bool send_promote = false;  // send PROMOTE{term, last applied epoch} to the witness now
  uint64_t term = 0;          // kPromote: the new term; otherwise the term to carry (heartbeats, PROMOTE)
  const char* reason = "";
  bool changed = false;       // action or reason differs from the previous Tick
};

class StandbyArbiter {
 public:
  explicit StandbyArbiter(ArbiterOptions options);

  // From HeartbeatService::peer() (standby side, HeartbeatOptions::promise_ms > 0).
  void OnPeer(bool alive, bool ever_heard, uint64_t max_term_seen, int64_t promise_until_ns);
  // Whether a complete, verified epoch exists to resume from (replicator ResumePoint).
  void OnResumePoint(bool ready) { ready_ = ready; }
  void OnLeaseReply(const LeaseReply& reply);
  void OnTermSeen(uint64_t term);
  // A manual promotion in two-host never-promote mode (no command offers it yet): the operator vouches that the
  // primary is dead. Still waits for the primary to be lost and for our promise to run out.
  void AllowManualPromotion() { manual_ = true; }

  StandbyDecision Tick(int64_t now_ns);
  int64_t NextDeadline(int64_t now_ns) const;

  // The term to carry in heartbeats: the primary's, or the granted one as soon as the witness granted it (so the
  // old primary sees it and stands down).
  uint64_t term() const { return granted_term_ != 0 ? granted_term_ : term_; }
  bool promoted() const { return promoted_; }
  WitnessReason last_deny() const { return last_deny_; }
  // The witness's GRANT of our PROMOTE (witness mode): after kPromote, feed it to the new PrimaryArbiter so the
  // lease it carries counts from the start.
  const std::optional<LeaseReply>& grant() const { return grant_; }

 private:
  StandbyDecision Decide(int64_t now_ns);

  const ArbiterOptions options_;
  uint64_t term_ = 0;          // the primary's term, as learned
  uint64_t granted_term_ = 0;  // the witness granted us this term
  bool promoted_ = false;
  bool alive_ = false, ever_heard_ = false, ready_ = false, manual_ = false;
  int64_t promise_until_ = 0;
  int64_t last_request_ns_ = -1;     // last PROMOTE sent
  int64_t awaiting_since_ns_ = -1;   // first PROMOTE sent since the last witness reply
  int64_t requesting_since_ns_ = -1; // first PROMOTE sent since the primary was lost
  WitnessReason last_deny_ = WitnessReason::kNone;
  uint64_t witness_term_ = 0;        // the highest term the witness named in a DENY
  std::optional<LeaseReply> grant_;
  StandbyAction last_action_ = StandbyAction::kWait;
  const char* last_reason_ = "";
  const char* promote_reason_ = "";
  bool ticked_ = false;
};

}  // namespace tandem::heartbeat
