// The witness (`tandem witness`): the third vote that lets a standby take over a VM without ever running it twice.
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
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "common/env.h"
#include "common/status.h"
#include "heartbeat/message.h"
#include "heartbeat/witness_message.h"

namespace tandem::heartbeat {

struct WitnessOptions {
  std::string listen_address = "0.0.0.0:7450";  // ip:port (UDP); port 0 = any free port (tests)
  std::string psk;                               // required, shared with the hosts
  std::string state_path;                        // required: the term file (and state_path + ".lock")
  int lease_ms = 150;
  int startup_hold_ms = -1;  // -1: lease_ms. Values below lease_ms are raised to lease_ms.
  size_t max_vms = 1024;
};

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

// The persisted part: term and holder per VM.
struct PersistedVm {
  uint64_t term = 0;
  std::string holder;
};
using WitnessTable = std::map<std::string, PersistedVm, std::less<>>;

// The state file: {"format":"tandem-witness","version":1,"vms":{"vm0":{"term":3,"holder":"host-b"}}}.
// A missing file is an empty table; an unreadable or malformed one is an error (never guess a term).
Result<WitnessTable> LoadWitnessState(const std::string& path);
Status SaveWitnessState(const std::string& path, const WitnessTable& table);

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

// WitnessCore on a UDP socket, with one thread, the state file and its lock.
class WitnessServer {
 public:
  WitnessServer(WitnessOptions options, Clock* clock);
  ~WitnessServer();  // Stop()s
  WitnessServer(const WitnessServer&) = delete;
  WitnessServer& operator=(const WitnessServer&) = delete;

  // Validates the options, locks state_path + ".lock" (a second witness on the same state is refused: two
  // witnesses would be two term authorities), loads the state, binds and starts the thread.
  Status Start();
  int port() const;  // the bound UDP port (after Start)
  // Idempotent; joins the thread and closes the socket (the state file stays).
  void Stop();

  WitnessVmState state(std::string_view vm) const;
  WitnessCounters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `tandem witness`: runs a WitnessServer on the system clock until `stop_requested` returns true (polled every
// 100 ms), or, when it is empty, until SIGINT or SIGTERM (blocked in the calling thread and waited for).
Status RunWitnessDaemon(const WitnessOptions& options, const std::function<bool()>& stop_requested = {});

}  // namespace tandem::heartbeat
