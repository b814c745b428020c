// The witness's decisions (`tandem witness`): the third vote that lets a standby take over a VM without ever
// running it twice.
// It holds, per VM, the current term, the node holding the lease and when that lease expires on the witness's own
// monotonic clock, and answers LEASE_RENEW / PROMOTE / STATUS_QUERY datagrams (heartbeat/witness_message.h).
//
// Rules (WitnessCore; every decision is logged with its reason, repeated renew GRANTs at debug level):
//   - Only the witness creates terms, each new holder gets term+1, and the term is persisted (temp file, fsync,
//     rename, fsync of the directory) BEFORE the GRANT leaves, so a restarted witness never hands out a term twice.
//   - LEASE_RENEW{term T} from the holder process at the current term -> GRANT, lease = receive time + lease_ms.
//     An older term -> DENY(stale term), a newer one -> DENY(future term), another node -> DENY(not holder).
//   - Registration = LEASE_RENEW{term 0}: for a VM without record, or whose holder's lease expired, the sender
//     becomes holder with term+1 (1 for a new VM); else DENY(holder lease valid).
//   - PROMOTE{term T} from a non-holder: GRANT term T+1 only if T is the current term and the holder's lease has
//     expired on the witness clock; else DENY (with the current holder and term).
//   - Startup hold: for startup_hold_ms (>= lease_ms) after the witness starts, no holder change is granted: a
//     holder may still hold a lease the previous witness process granted just before it stopped.
//   - A repeat of a request whose GRANT was lost (same sender process) is granted again, not denied.
//   - Requests that are malformed, unauthenticated, replayed, or that lack this witness process's incarnation
//     (challenge) never change anything; the first three get no reply at all.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "heartbeat/message.h"
#include "heartbeat/witness_message.h"
#include "heartbeat/witness_state.h"

namespace tandem::heartbeat {

// What the witness knows about one VM (for status and tests).
struct WitnessVmState {
  bool known = false;
  uint64_t term = 0;
  std::string holder;
  bool lease_valid = false;
  int64_t lease_remaining_ns = 0;
  int64_t lease_expiry_ns = 0;  // witness clock
  bool startup_hold = false;
  std::string last_grant;  // e.g. "PROMOTE standby-b term 3"
  uint64_t grants = 0, denies = 0;
};

struct WitnessCounters {
  uint64_t received = 0;
  uint64_t malformed = 0;        // failed structural decoding (wrong size, magic, version, field rules)
  uint64_t unauthenticated = 0;  // bad MAC
  uint64_t misdirected = 0;      // a reply type sent to the witness
  uint64_t replayed = 0;         // sequence not above the last accepted, or a retired sender incarnation
  uint64_t challenged = 0;       // lacked the witness incarnation: answered with DENY(challenge)
  uint64_t granted = 0;
  uint64_t denied = 0;           // decisions (challenges not included)
  uint64_t status_queries = 0;
  uint64_t persist_errors = 0;
  uint64_t table_full = 0;       // sender or VM table full
};

// The decision logic with no I/O: datagram in, reply out, time passed in. Not thread-safe.
class WitnessCore {
 public:
  using Persist = std::function<Status(const WitnessTable&)>;
  struct Options {
    int64_t lease_ns = 150'000'000;
    int64_t startup_hold_ns = 150'000'000;
    size_t max_vms = 1024;
    size_t max_senders = 4096;
    uint64_t incarnation = 1;  // this witness process (never 0)
  };
  WitnessCore(Options options, MacKey key, WitnessTable loaded, int64_t start_ns, Persist persist);
  ~WitnessCore();
  WitnessCore(WitnessCore&&) noexcept;

  // Handles one datagram received at `now_ns`; returns the length of the reply written to `reply` (which must
  // hold kWitnessMessageSize bytes), 0 for no reply.
  size_t OnDatagram(std::span<const uint8_t> datagram, int64_t now_ns, std::span<uint8_t> reply);

  WitnessVmState state(std::string_view vm, int64_t now_ns) const;
  WitnessCounters counters() const;
  uint64_t incarnation() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::heartbeat
