#include "heartbeat/arbiter.h"

#include <algorithm>
#include <limits>

namespace tandem::heartbeat {

const char* TwoHostPolicyName(TwoHostPolicy policy) {
  switch (policy) {
    case TwoHostPolicy::kNeverPromote: return "never-promote";
    case TwoHostPolicy::kStandbyPromotes: return "standby-promotes";
    case TwoHostPolicy::kStandbyPromotesPrimaryFences: return "standby-promotes-fenced";
  }
  return "?";
}

Result<TwoHostPolicy> ParseTwoHostPolicy(std::string_view text) {
  for (TwoHostPolicy p : {TwoHostPolicy::kNeverPromote, TwoHostPolicy::kStandbyPromotes,
                          TwoHostPolicy::kStandbyPromotesPrimaryFences}) {
    if (text == TwoHostPolicyName(p)) return p;
  }
  return Status::InvalidArgument("two_host_policy must be never-promote, standby-promotes or standby-promotes-fenced");
}

ArbiterOptions MakeArbiterOptions(bool witness, TwoHostPolicy policy, int lease_ms, int promise_ms, int interval_ms) {
  constexpr int64_t kMs = 1'000'000;
  ArbiterOptions o;
  o.witness = witness;
  o.two_host_policy = policy;
  o.lease_margin_ns = std::max<int64_t>(2 * kMs, int64_t(lease_ms) * kMs / 10);
  o.promise_margin_ns = std::max<int64_t>(2 * kMs, int64_t(promise_ms) * kMs / 10);
  o.promote_retry_ns = std::max<int64_t>(1, interval_ms) * kMs;
  o.witness_timeout_ns = std::max<int64_t>(lease_ms, 2 * interval_ms) * kMs;
  return o;
}

const char* PrimaryActionName(PrimaryAction action) {
  switch (action) {
    case PrimaryAction::kAcquire: return "acquiring";
    case PrimaryAction::kRun: return "running";
    case PrimaryAction::kFence: return "fenced";
    case PrimaryAction::kSuperseded: return "superseded";
  }
  return "?";
}

const char* StandbyActionName(StandbyAction action) {
  switch (action) {
    case StandbyAction::kWait: return "standby";
    case StandbyAction::kRequestPromotion: return "requesting promotion";
    case StandbyAction::kPromote: return "promoted";
    case StandbyAction::kAlarm: return "alarm";
  }
  return "?";
}

// ---------------------------------------------------------------------------------------------------------------
// PrimaryArbiter.

PrimaryArbiter::PrimaryArbiter(ArbiterOptions options, uint64_t term)
    : options_(options), term_(!options.witness && term == 0 ? 1 : term) {}

bool PrimaryArbiter::should_renew() const { return options_.witness && superseded_by_ == 0; }

void PrimaryArbiter::Supersede(uint64_t term, const char* source) {
  if (superseded_by_ != 0) return;
  superseded_by_ = term;
  superseded_reason_ = source;
}

void PrimaryArbiter::OnLeaseReply(const LeaseReply& r) {
  if (superseded_by_ != 0 || !options_.witness) return;
  if (term_ == 0) {
    // Acquiring: only the GRANT of our registration gives us a term. A DENY (someone else's valid lease, the
    // witness's startup hold) just means "not yet": nothing runs, so nothing is superseded.
    if (r.op == LeaseOp::kRenew && r.granted && r.request_term == 0 && r.term > 0) {
      term_ = r.term;
    } else {
      if (!r.granted) {
        last_deny_ = r.reason;
        if (r.reason == WitnessReason::kHolderLeaseValid && r.term > 0) {
          refused_for_holder_ = std::string(r.holder.view());
          refused_for_term_ = r.term;
        }
      }
      return;
    }
  }
  if (r.term > term_) {
    Supersede(r.term, "superseded: the witness granted a newer term");
    return;
  }
  if (r.granted && r.term == term_) {
    // Valid from OUR send time of the request: the witness's own expiry (its receive time + lease) is later.
    lease_until_ = std::max(lease_until_, r.request_send_ns + r.lease_ns - options_.lease_margin_ns);
    last_deny_ = WitnessReason::kNone;
  } else if (!r.granted) {
    last_deny_ = r.reason;
  }
}

void PrimaryArbiter::OnPeer(uint64_t max_term_seen, int64_t support_until_ns) {
  OnTermSeen(max_term_seen, "superseded: the peer carries a newer term");
  if (support_until_ns > 0) support_until_ = std::max(support_until_, support_until_ns - options_.promise_margin_ns);
}

void PrimaryArbiter::OnTermSeen(uint64_t term, const char* source) {
  // While acquiring there is no term to be superseded in; the witness decides.
  if (term_ != 0 && term > term_) Supersede(term, source);
}

PrimaryDecision PrimaryArbiter::Tick(int64_t now_ns) {
  PrimaryDecision d;
  d.term = term_;
  if (superseded_by_ != 0) {
    d.action = PrimaryAction::kSuperseded;
    d.reason = superseded_reason_;
    d.term = superseded_by_;
  } else if (term_ == 0) {
    d.action = PrimaryAction::kAcquire;
    switch (last_deny_) {
      case WitnessReason::kHolderLeaseValid: d.reason = "acquiring: the witness says another holder's lease is valid"; break;
      case WitnessReason::kStartupHold: d.reason = "acquiring: the witness restarted less than a lease ago"; break;
      case WitnessReason::kNone: d.reason = "acquiring: waiting for the witness to grant the lease"; break;
      default: d.reason = "acquiring: the witness denied the registration"; break;
    }
  } else {
    const bool lease_ok = options_.witness && now_ns < lease_until_;
    const bool support_ok = now_ns < support_until_;
    if (options_.witness) {
      d.action = lease_ok || support_ok ? PrimaryAction::kRun : PrimaryAction::kFence;
      if (lease_ok && support_ok) {
        d.reason = "witness lease and standby promise valid";
      } else if (lease_ok) {
        d.reason = "witness lease valid (no standby support: unprotected)";
      } else if (support_ok) {
        d.reason = "standby promise valid (no witness lease)";
        d.alarm = "witness unreachable or lease lost: failover impossible";
      } else {
        d.reason = "neither the witness lease nor the standby promise is valid";
      }
    } else if (options_.two_host_policy == TwoHostPolicy::kStandbyPromotesPrimaryFences) {
      d.action = support_ok ? PrimaryAction::kRun : PrimaryAction::kFence;
      d.reason = support_ok ? "two-host: standby promise valid" : "two-host (standby-promotes-fenced): standby promise expired";
    } else {
      d.action = PrimaryAction::kRun;
      d.reason = options_.two_host_policy == TwoHostPolicy::kNeverPromote
                     ? "two-host (never-promote): nobody takes over automatically"
                     : "two-host (standby-promotes): running unfenced";
      if (!support_ok) d.alarm = "standby lost";
    }
  }
  d.changed = !ticked_ || d.action != last_action_;
  ticked_ = true;
  last_action_ = d.action;
  return d;
}

int64_t PrimaryArbiter::NextDeadline(int64_t now_ns) const {
  int64_t next = std::numeric_limits<int64_t>::max();
  if (superseded_by_ != 0) return next;
  for (int64_t t : {lease_until_, support_until_}) {
    if (t > now_ns) next = std::min(next, t);
  }
  return next;
}

// ---------------------------------------------------------------------------------------------------------------
// StandbyArbiter.

StandbyArbiter::StandbyArbiter(ArbiterOptions options) : options_(options) {}

void StandbyArbiter::OnPeer(bool alive, bool ever_heard, uint64_t max_term_seen, int64_t promise_until_ns) {
  alive_ = alive;
  ever_heard_ = ever_heard;
  term_ = std::max(term_, max_term_seen);
  promise_until_ = std::max(promise_until_, promise_until_ns);
}

void StandbyArbiter::OnTermSeen(uint64_t term) { term_ = std::max(term_, term); }

void StandbyArbiter::OnLeaseReply(const LeaseReply& r) {
  if (r.op != LeaseOp::kPromote || promoted_) return;
  awaiting_since_ns_ = -1;  // the witness answers
  if (r.granted) {
    // The only way to a new term. Promotion itself still waits for our promise to the old primary to run out.
    if (r.term > term_ && r.term >= granted_term_) {
      granted_term_ = r.term;
      grant_ = r;  // the latest (a re-grant after a lost reply carries a later lease)
    }
    last_deny_ = WitnessReason::kNone;
    return;
  }
  last_deny_ = r.reason;
  witness_term_ = std::max(witness_term_, r.term);
}

StandbyDecision StandbyArbiter::Decide(int64_t now_ns) {
  StandbyDecision d;
  d.term = term();
  if (promoted_) {
    d.action = StandbyAction::kPromote;
    d.reason = promote_reason_;
    return d;
  }
  if (granted_term_ != 0) {
    if (term_ > granted_term_) {
      d.action = StandbyAction::kAlarm;
      d.reason = "a newer term than the one granted to us exists: not promoting";
      return d;
    }
    if (now_ns >= promise_until_) {
      promoted_ = true;
      d.action = StandbyAction::kPromote;
      d.reason = promote_reason_ = "witness granted the new term and our promise to the old primary ran out";
      return d;
    }
    d.action = StandbyAction::kWait;
    d.reason = "witness granted the new term: waiting for our promise to the old primary to run out";
    return d;
  }
  if (!ever_heard_) {
    d.reason = "primary never heard";
    return d;
  }
  if (alive_) {
    last_request_ns_ = -1;
    awaiting_since_ns_ = -1;
    requesting_since_ns_ = -1;
    last_deny_ = WitnessReason::kNone;  // a new loss asks afresh
    d.reason = "primary alive";
    return d;
  }
  if (!ready_) {
    d.action = StandbyAction::kAlarm;
    d.reason = "primary lost, but no complete epoch to resume from";
    return d;
  }
  if (now_ns < promise_until_) {
    d.reason = "primary lost: waiting for our promise to it to run out";
    return d;
  }
  if (!options_.witness) {
    if (options_.two_host_policy == TwoHostPolicy::kNeverPromote && !manual_) {
      d.action = StandbyAction::kAlarm;
      d.reason =
          "primary lost: two-host mode never-promote does not fail over; once the primary is known dead, start the "
          "VM again by hand (a witness makes failover automatic)";
      return d;
    }
    promoted_ = true;
    d.action = StandbyAction::kPromote;
    d.term = term_ + 1;
    granted_term_ = term_ + 1;
    d.reason = promote_reason_ = manual_ ? "primary lost: promoted by the operator (two-host mode)"
                                         : "primary lost: two-host mode standby-promotes";
    return d;
  }
  // Witness mode: ask, and keep asking every retry interval until granted.
  if (last_request_ns_ < 0 || now_ns - last_request_ns_ >= options_.promote_retry_ns) {
    d.send_promote = true;
    last_request_ns_ = now_ns;
    if (awaiting_since_ns_ < 0) awaiting_since_ns_ = now_ns;
    if (requesting_since_ns_ < 0) requesting_since_ns_ = now_ns;
  }
  if (witness_term_ > term_) {
    d.action = StandbyAction::kAlarm;
    d.reason = "the witness holds a newer term than the primary we replicate: not promoting";
    d.send_promote = false;
  } else if (awaiting_since_ns_ >= 0 && now_ns - awaiting_since_ns_ >= options_.witness_timeout_ns) {
    d.action = StandbyAction::kAlarm;
    d.reason = "primary lost, witness unreachable: failover impossible";
  } else if (last_deny_ == WitnessReason::kHolderLeaseValid &&
             now_ns - requesting_since_ns_ < options_.witness_timeout_ns) {
    // Expected right after a loss: the primary's last renewal is still running out on the witness.
    d.action = StandbyAction::kRequestPromotion;
    d.reason = "primary lost: waiting for its witness lease to run out";
  } else if (last_deny_ == WitnessReason::kHolderLeaseValid) {
    d.action = StandbyAction::kAlarm;
    d.reason = "primary lost here, but it still holds the witness lease (host links cut?): no failover";
  } else if (last_deny_ == WitnessReason::kStartupHold) {
    d.action = StandbyAction::kRequestPromotion;
    d.reason = "witness restarted recently: waiting out its startup hold";
  } else if (last_deny_ != WitnessReason::kNone) {
    d.action = StandbyAction::kAlarm;
    d.reason = "primary lost: the witness denied promotion";
  } else {
    d.action = StandbyAction::kRequestPromotion;
    d.reason = "primary lost on every link and our promise ran out: asking the witness";
  }
  return d;
}

StandbyDecision StandbyArbiter::Tick(int64_t now_ns) {
  StandbyDecision d = Decide(now_ns);
  d.changed = !ticked_ || d.action != last_action_ || d.reason != last_reason_;
  ticked_ = true;
  last_action_ = d.action;
  last_reason_ = d.reason;
  return d;
}

int64_t StandbyArbiter::NextDeadline(int64_t now_ns) const {
  int64_t next = std::numeric_limits<int64_t>::max();
  if (promoted_) return next;
  if (promise_until_ > now_ns) next = promise_until_;
  if (last_request_ns_ >= 0) next = std::min(next, std::max(now_ns, last_request_ns_ + options_.promote_retry_ns));
  return next;
}

}  // namespace tandem::heartbeat
