// Who may run the VM, as the roles see it: the arbiter's decisions (heartbeat/guard.h) behind two small
// interfaces, implemented in guard.h over the heartbeat service and the lease authority, faked in tests/roles.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "heartbeat/heartbeat.h"
#include "roles/shutdown.h"
#include "roles/vm_host.h"

namespace tandem::roles {

// A primary's right to run its VM. It acts on the attached VM itself (QMP stop when fenced, cont when the right
// comes back); the checkpoint loop asks WaitRunnable() before it lets QEMU resume the VM after a checkpoint, so a
// fenced VM also stays paused inside COLO's own checkpoint pause.
class RunGuard {
 public:
  virtual ~RunGuard() = default;
  // From now on, fencing acts on `vm` (nullptr: on nothing, before the VM goes). A fence decided earlier applies
  // at once.
  virtual void AttachVm(Vm* vm) = 0;
  // Blocks while the VM may not run. True once it may; false when superseded, on shutdown or after timeout_ms.
  virtual bool WaitRunnable(int timeout_ms) = 0;
  virtual bool superseded() const = 0;
  virtual uint64_t term() const = 0;
  virtual void SetLastEpoch(uint64_t epoch) = 0;
  // "state" (acquire|run|fence|superseded) with term, lease and witness details, for status.json.
  virtual nlohmann::json StatusJson() const = 0;
  virtual heartbeat::PeerStatus peer() const = 0;
};

struct PromotionDecision {
  uint64_t term = 0;
  std::string reason;
  int64_t peer_lost_ns = 0;  // when the heartbeats lost the primary (Clock nanoseconds)
};

// A standby's way to the primary role: promoted once the primary is lost on every link, our promise to it has
// run out and the witness granted a new term (or the two-host policy allows it).
class Promotion {
 public:
  virtual ~Promotion() = default;
  // Whether a complete epoch can be resumed, and the last one applied (carried in heartbeats and PROMOTE).
  virtual void SetResumePoint(bool ready, uint64_t last_applied_epoch) = 0;
  // Sleeps up to timeout_ms; true once promoted. Wake() ends a wait early.
  virtual bool WaitPromoted(int timeout_ms) = 0;
  virtual void Wake() = 0;
  // The standby guard's state, with "term", for status.json.
  virtual nlohmann::json StatusJson() const = 0;
  virtual heartbeat::PeerStatus peer() const = 0;
  // After a promotion: stops waiting for one and says what was decided.
  virtual PromotionDecision Decision() = 0;
  // The promoted standby keeps the lease like any primary (started; the new term travels in its heartbeats).
  virtual Result<std::unique_ptr<RunGuard>> BecomePrimary(const PromotionDecision& decision, uint64_t last_epoch) = 0;
};

}  // namespace tandem::roles
