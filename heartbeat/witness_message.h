// The witness datagram: what a host and the `tandem witness` daemon exchange about who may run a protected VM.
// Pure functions only (no I/O, no clocks), like heartbeat/message.h, so the codec is unit-tested per bad input and
// fuzzed (DecodeWitnessMessage takes any byte span).
//
// Requests (host -> witness): LEASE_RENEW, PROMOTE, STATUS_QUERY. Replies (witness -> host): GRANT, DENY,
// STATUS_REPLY. A reply answers exactly one request: it echoes the request's incarnation, sequence and send_ns, so
// a host accepts a reply only for a request it sent itself, in this process, and only once.
//
// Wire layout, version 1 (kWitnessMessageSize = 192 bytes, all integers little-endian):
//   off len  field
//     0   4  magic "TDWT"
//     4   1  version (1)
//     5   1  type: 1 LEASE_RENEW, 2 PROMOTE, 3 STATUS_QUERY, 16 GRANT, 17 DENY, 18 STATUS_REPLY
//     6   1  reason: DENY only (WitnessReason, never 0); 0 otherwise
//     7   1  flags: STATUS_REPLY bit 0 = the witness is in its startup hold; 0 otherwise
//     8  32  vm name, NUL-padded (1..32 bytes)
//    40  32  node: requests: the sending host; replies: the host whose request is answered
//    72  32  holder: replies: the node holding the VM's lease ("" = none yet); requests: all zero
//   104   8  incarnation: random, fixed for the life of the sending process, never 0
//   112   8  sequence: per sender incarnation, starts at 1, +1 per datagram
//   120   8  send_ns: the sender's monotonic clock when sending (never compared across hosts)
//   128   8  term: requests: the sender's term (0 = "none yet": a registration); replies: the VM's current term
//   136   8  last_applied_epoch: PROMOTE only (for the log and status); 0 otherwise
//   144   8  peer_incarnation: requests: the witness incarnation last heard (0 = none, answered by a challenge);
//            replies: the incarnation of the request answered
//   152   8  echo_sequence: replies: the sequence of the request answered; requests: 0
//   160   8  echo_send_ns: replies: the send_ns of the request answered; requests: 0
//   168   4  lease_ms: GRANT and STATUS_REPLY: the witness's lease length; 0 otherwise
//   172   4  lease_remaining_ms: STATUS_REPLY: what is left of the holder's lease on the witness clock; 0 otherwise
//   176  16  HMAC-SHA256(psk, bytes [0, 176)) truncated to 16 bytes
//
// Replay protection: the witness accepts a LEASE_RENEW or PROMOTE only if it carries the witness's current
// incarnation (a per-start nonce; requests recorded before a witness restart are answered with a challenge and
// change nothing) and a sequence above the last accepted one of that sender incarnation. A host accepts a reply
// only as the answer to one of its own outstanding requests (incarnation + sequence + send_ns echoed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/status.h"
#include "heartbeat/message.h"

namespace tandem::heartbeat {

inline constexpr uint8_t kWitnessMagic[4] = {'T', 'D', 'W', 'T'};
inline constexpr uint8_t kWitnessVersion = 1;
inline constexpr size_t kWitnessMacOffset = 176;
inline constexpr size_t kWitnessMessageSize = kWitnessMacOffset + kMacSize;
inline constexpr uint8_t kWitnessFlagStartupHold = 1;

enum class WitnessType : uint8_t {
  kLeaseRenew = 1,
  kPromote = 2,
  kStatusQuery = 3,
  kGrant = 16,
  kDeny = 17,
  kStatusReply = 18,
};
const char* WitnessTypeName(WitnessType type);
inline bool IsRequest(WitnessType t) { return uint8_t(t) < 16; }

// Why the witness said no. Every DENY carries one (and the current holder and term).
enum class WitnessReason : uint8_t {
  kNone = 0,
  kChallenge = 1,         // the request lacked this witness process's incarnation: resend with it (not a decision)
  kStaleTerm = 2,         // the request's term is older than the VM's current term: the sender is superseded
  kFutureTerm = 3,        // a term the witness never created (forged, corrupted, or the witness state rolled back)
  kNotHolder = 4,         // renew from a node (or process) that does not hold the lease
  kHolderLeaseValid = 5,  // promotion or registration refused: the holder's lease has not expired on the witness
  kStartupHold = 6,       // the witness restarted less than a lease ago: a lease granted before may still be held
  kUnknownVm = 7,         // no record of the VM and the request is not a registration (term 0)
  kAlreadyHolder = 8,     // promotion asked by the node that already holds the lease
  kInternal = 9,          // the witness could not persist a new term: nothing changed, retry
  kTooManyVms = 10,       // the witness's table is full
};
inline constexpr uint8_t kMaxWitnessReason = 10;
const char* WitnessReasonName(WitnessReason reason);

struct WitnessMessage {
  WitnessType type = WitnessType::kLeaseRenew;
  WitnessReason reason = WitnessReason::kNone;
  uint8_t flags = 0;
  NodeName vm;
  NodeName node;
  NodeName holder;  // empty: none
  uint64_t incarnation = 0;
  uint64_t sequence = 0;
  int64_t send_ns = 0;
  uint64_t term = 0;
  uint64_t last_applied_epoch = 0;
  uint64_t peer_incarnation = 0;
  uint64_t echo_sequence = 0;
  int64_t echo_send_ns = 0;
  uint32_t lease_ms = 0;
  uint32_t lease_remaining_ms = 0;
};

// Writes the kWitnessMessageSize-byte datagram into `out`. InvalidArgument for an unsendable message (what the
// decoder would refuse: empty names, zero incarnation/sequence, negative times, fields set for the wrong type).
Status EncodeWitnessMessage(const WitnessMessage& message, const MacKey& key, std::span<uint8_t> out);

// Structural decode WITHOUT authentication: size, magic, version, type, per-type field rules, name padding.
// Corruption for bad bytes, Unsupported for another version, and the reason in *error (when given; kNone on
// success). Safe on any input (the fuzz entry point).
Result<WitnessMessage> DecodeWitnessMessage(std::span<const uint8_t> datagram, WireError* error = nullptr);

// Corruption unless the datagram carries a valid MAC under `key` (constant-time comparison); *error: kBadLength
// or kBadMac.
Status VerifyWitnessMac(std::span<const uint8_t> datagram, const MacKey& key, WireError* error = nullptr);

// Structure first (cheap, rejects garbage before any crypto), then the MAC.
Result<WitnessMessage> DecodeAuthenticatedWitnessMessage(std::span<const uint8_t> datagram, const MacKey& key,
                                                         WireError* error = nullptr);

}  // namespace tandem::heartbeat
