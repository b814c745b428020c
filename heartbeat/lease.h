// The lease authority seam: who may run a protected VM, as a lease with a monotonically increasing term.
//
// The primary keeps its lease with RequestRenew(term) every heartbeat interval; the standby asks for the VM with
// RequestPromote(term, epoch) once the primary is lost. Answers arrive asynchronously through PollReply(): every
// call is non-blocking, so one loop can drive heartbeats, the lease and the arbiter (heartbeat/arbiter.h) without
// a thread per request, and a slow or dead authority never stalls a fencing decision.
//
// The one rule every implementation must keep: a GRANT answering a request sent at local time S means "nobody
// else can be granted a newer term before S + lease on any honest clock". The requester therefore counts its
// lease valid until S + lease_ns - margin (heartbeat/arbiter.h), which needs no clock synchronisation, only a
// bounded clock RATE difference.
//
// Implementations:
//   - WitnessClient (heartbeat/witness_client.h): UDP to the `tandem witness` daemon (heartbeat/witness.h).
//   - etcd (future, for many VMs): one key per VM, /tandem/<vm>/holder = node, attached to an etcd lease of
//     lease_ms TTL. Renew = LeaseKeepAlive of that lease (validity from the keepalive's send time, as here);
//     registration and Promote = one Txn "if the key does not exist (the old holder's lease expired and etcd
//     deleted it) and, for Promote, the last term is `term`, then put the key with a fresh lease"; the term is
//     the key's create_revision (etcd revisions are monotonic cluster-wide, so terms never go backwards, and a
//     Raft-replicated store replaces the witness's state file). DENY = the Txn's else branch reading the current
//     holder and revision. The arbiter and the CLI stay unchanged.
#pragma once

#include <cstdint>

#include "common/status.h"
#include "heartbeat/message.h"
#include "heartbeat/witness_message.h"

namespace tandem::heartbeat {

enum class LeaseOp : uint8_t { kRenew, kPromote };

struct LeaseReply {
  LeaseOp op = LeaseOp::kRenew;  // what the answered request asked
  bool granted = false;
  WitnessReason reason = WitnessReason::kNone;  // DENY only
  NodeName holder;                              // the VM's current holder ("" = none)
  uint64_t term = 0;                            // the VM's current term (GRANT: the term granted)
  int64_t lease_ns = 0;                         // GRANT: lease length on the authority's clock
  uint64_t request_term = 0;                    // the term the answered request carried
  int64_t request_send_ns = 0;                  // OUR clock: when the answered request was sent
  int64_t receive_ns = 0;                       // OUR clock: when this reply arrived
};

struct LeaseAuthorityStatus {
  bool reachable = false;    // an authentic reply arrived within the reachability window
  int64_t last_reply_ns = -1;  // our clock; -1: never
  uint64_t requests = 0, replies = 0, rejected = 0, challenges = 0, send_errors = 0;
};

class LeaseAuthority {
 public:
  virtual ~LeaseAuthority() = default;

  // Non-blocking: send one request. An error is about this send only (the next one may work); the caller keeps
  // its schedule either way (an unreachable authority simply stops granting).
  virtual Status RequestRenew(uint64_t term) = 0;
  virtual Status RequestPromote(uint64_t term, uint64_t last_applied_epoch) = 0;

  // Non-blocking: the next authentic reply to one of our requests, if any. Replies to requests this process did
  // not send, duplicates and forgeries never come out of here (they are counted in status().rejected).
  virtual bool PollReply(LeaseReply* reply) = 0;

  // A descriptor that becomes readable when PollReply may have something (-1: none, poll on a timer).
  virtual int wait_fd() const = 0;

  virtual LeaseAuthorityStatus status() const = 0;
};

}  // namespace tandem::heartbeat
