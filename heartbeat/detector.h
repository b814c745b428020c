// The failure detector without I/O: it is told "this authenticated message arrived on link i at time t" and "it is
// now t", and answers with verdicts and transitions. The service owns the sockets, the clock and the callbacks.
//
// Which messages count (everything else never touches liveness):
//   - sender is the configured peer, receiver is us, link index equals the receiving link, sender is not us;
//   - the message belongs to the peer incarnation we accept and its sequence is above the last one accepted on
//     that link (replays and duplicates are refused);
//   - a new incarnation (peer process restarted, or our first contact) is adopted only when one of its messages
//     echoes one of OUR send timestamps from this process that is at most timeout old. Only a peer that heard us
//     within the last timeout can produce that, so recorded datagrams of an old or dead peer process replayed
//     later cannot make a dead peer look alive; no clock synchronisation between hosts is assumed (the echo is
//     our own monotonic clock). Until confirmed, its messages count as `unconfirmed` and are only used to echo
//     back (which is what lets both sides confirm each other after a simultaneous restart). Replaced
//     incarnations are remembered and never accepted again.
// The price: a peer that cannot hear us at all is never adopted (it shows as never heard). Once adopted, hearing
// one direction is enough to keep it alive, so a one-way link failure never fakes a dead peer.
//
// Liveness: a link is up while an accepted message arrived on it within timeout; the peer is alive while any link
// is up. "Lost" is reported once per alive -> dead transition, and only after the peer was heard at least once.
//
// Terms and promises (the inputs of heartbeat/arbiter.h):
//   - A message whose term is older than our own (SetLocalTerm; 0 = "not known yet" on either side is never
//     stale) is refused as kStaleTerm: it neither keeps the peer alive nor gets echoed. The highest term carried
//     by any authentic message of the peer is remembered (max_term_seen): a higher term than ours means we were
//     superseded.
//   - Standby side (promise_ns > 0): every message whose send_ns we may echo and whose sender says it is the
//     primary extends our promise "no promotion before its receive time + promise_ns"; promise_until_ns is the
//     latest such time, and at least start + promise_ns (a previous process of ours may have promised just before
//     it died). A peer that says it is a standby runs no VM that could lean on a promise (re-protection: an old
//     primary that rejoined, or handed the VM over).
//   - Primary side: an accepted standby message with promise_ms > 0 that echoes one of our send times S makes
//     the standby's support valid until S + promise_ms (support_until_ns; the arbiter subtracts its margin).
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "heartbeat/message.h"
#include "heartbeat/types.h"

namespace tandem::heartbeat {

enum class Verdict {
  kAccepted,
  kOwnMessage,              // our own node name: a loop or a peer_address pointing at ourselves
  kWrongSender,             // not the configured peer
  kWrongReceiver,           // the sender thinks it talks to someone else
  kWrongLink,               // sent on another link index: addresses are miswired
  kReplay,                  // sequence not above the last accepted one on this link
  kRetiredIncarnation,      // a peer process that has since been replaced
  kUnconfirmedIncarnation,  // authentic but not (yet) proven fresh; not a rejection
  kStaleTerm,               // the sender's term is older than ours: a superseded node
};
const char* VerdictName(Verdict v);

// Transitions caused by one call; several may be set.
struct DetectorEvents {
  bool peer_found = false;      // first time alive
  bool peer_recovered = false;  // alive again after a reported loss
  bool peer_lost = false;
  bool peer_restarted = false;  // a new incarnation replaced old_incarnation
  uint64_t old_incarnation = 0, new_incarnation = 0;
  uint32_t links_up = 0, links_down = 0;  // bit i: link i changed

  bool any() const {
    return peer_found || peer_recovered || peer_lost || peer_restarted || links_up != 0 || links_down != 0;
  }
};

class PeerDetector {
 public:
  // `start_ns`: when this process started sending (echoes older than that are not ours). `promise_ns`: what this
  // node promises as a standby (0: nothing).
  PeerDetector(std::string node_name, std::string peer_name, size_t links, int64_t timeout_ns, int64_t start_ns,
               int64_t promise_ns = 0);

  // Our current term: messages carrying an older (non-zero) term are refused from now on.
  void SetLocalTerm(uint64_t term) { local_term_ = term; }

  // An authenticated, structurally valid message arrived on `link` at `now_ns`.
  Verdict OnMessage(size_t link, const Message& m, int64_t now_ns, DetectorEvents* events);
  // A datagram on `link` failed decoding or authentication.
  void OnMalformed(size_t link) { links_[link].rejected++; }
  void OnSent(size_t link) { links_[link].sent++; }
  void OnSendError(size_t link) { links_[link].send_errors++; }

  // Applies timeouts up to `now_ns`.
  DetectorEvents Tick(int64_t now_ns);
  // The earliest time at which Tick can report something (INT64_MAX: nothing pending).
  int64_t NextDeadline() const;

  // Echo fields for the next message sent on `link`.
  void FillEcho(size_t link, int64_t now_ns, Message* m) const;

  // Status with addresses left empty (the service fills them).
  PeerStatus Snapshot(int64_t now_ns) const;
  bool alive() const { return alive_; }
  uint64_t max_term_seen() const { return max_term_seen_; }
  int64_t support_until_ns() const { return support_until_ns_; }
  int64_t promise_until_ns() const;
  uint64_t incarnation() const { return incarnation_; }

 private:
  struct Link {
    bool up = false;
    bool heard = false;
    int64_t last_rx_ns = 0;
    uint64_t last_seq = 0;  // in incarnation_; 0 = none yet
    uint64_t window = 0;    // bit 0: last_seq received, bit k: last_seq - k received
    uint32_t window_len = 0;
    int64_t echo_send_ns = 0;  // peer's send_ns of the message we will echo
    int64_t echo_rx_ns = 0;    // when we received it
    double srtt_ns = 0;
    bool has_rtt = false;
    uint64_t sent = 0, received = 0, rejected = 0, unconfirmed = 0, send_errors = 0;
  };

  bool IsRetired(uint64_t incarnation) const;
  void NoteEchoable(const Message& m, int64_t now_ns);  // a message we may echo: the promise runs from it
  bool EchoIsFresh(const Message& m, int64_t now_ns) const;
  void Adopt(uint64_t incarnation, DetectorEvents* events);

  const std::string node_name_, peer_name_;
  const int64_t timeout_ns_;
  const int64_t start_ns_;
  const int64_t promise_ns_;
  std::vector<Link> links_;
  uint64_t local_term_ = 0;
  uint64_t max_term_seen_ = 0;
  // Latest receive time of a message whose send_ns we may echo and whose sender said it is the primary.
  int64_t last_primary_rx_ns_ = 0;
  int64_t support_until_ns_ = 0;
  uint64_t incarnation_ = 0;
  std::array<uint64_t, 8> retired_{};
  size_t retired_next_ = 0;
  uint64_t restarts_ = 0;
  bool ever_heard_ = false;
  bool alive_ = false;
  bool lost_reported_ = false;
  int64_t last_rx_ns_ = 0;
  LocalState remote_;
};

}  // namespace tandem::heartbeat
