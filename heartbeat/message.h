// The heartbeat datagram: a fixed-size, little-endian, HMAC-authenticated record. Pure functions only (no I/O, no
// clocks), so the codec can be unit-tested per bad input and fuzzed (DecodeMessage takes any byte span).
//
// Wire layout, version 2 (kMessageSize = 152 bytes, all integers little-endian):
//   off len  field
//     0   4  magic "TDHB"
//     4   1  version (2)
//     5   1  role of the sender (0 none, 1 primary, 2 standby, 3 witness)
//     6   1  link index of the sender (links pair up by position; a mismatch means miswired addresses)
//     7   1  reserved, 0
//     8  32  sender node name, NUL-padded (1..32 bytes, no NUL inside)
//    40  32  receiver node name, NUL-padded (who the sender believes it talks to)
//    72   8  incarnation: random, fixed for the life of the sending process, never 0
//    80   8  sequence: per link, starts at 1, +1 per datagram sent on that link
//    88   8  send_ns: sender's monotonic clock when sending
//    96   8  echo_ns: the send_ns of the last datagram the sender received from us on this link (0: none yet)
//   104   8  hold_ns: how long the sender held that echo before this send (RTT = now - echo_ns - hold_ns)
//   112   8  term: the sender's view of the current term (0 = not known yet); older terms are refused
//   120   8  last_epoch: last epoch the sender shipped (primary) or applied (standby)
//   128   4  promise_ms: standby only (0 otherwise): "I will not ask for promotion before promise_ms after I
//            received the datagram whose send_ns I echo". The primary counts the standby's support valid until
//            echo_ns + promise_ms - margin on its own clock (heartbeat/arbiter.h).
//   132   4  reserved, 0
//   136  16  HMAC-SHA256(psk, bytes [0, 136)) truncated to 16 bytes
//
// Version 1 (144 bytes, no promise) is refused as Unsupported: a v1 standby makes no promise, and mixing versions
// in one pair is a deployment error, not something to guess around.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "common/status.h"

namespace tandem::heartbeat {

enum class Role : uint8_t { kNone = 0, kPrimary = 1, kStandby = 2, kWitness = 3 };
const char* RoleName(Role role);

inline constexpr uint8_t kMessageMagic[4] = {'T', 'D', 'H', 'B'};
inline constexpr uint8_t kMessageVersion = 2;
inline constexpr size_t kMaxNodeName = 32;
inline constexpr size_t kMacSize = 16;
inline constexpr size_t kMacOffset = 136;
inline constexpr size_t kMessageSize = kMacOffset + kMacSize;

// A node name as it travels: fixed storage so decoding never allocates.
class NodeName {
 public:
  NodeName() = default;
  // False if `name` is empty, longer than kMaxNodeName or contains a NUL.
  bool Set(std::string_view name);
  std::string_view view() const { return std::string_view(bytes_.data(), size_); }
  bool operator==(std::string_view other) const { return view() == other; }

  // The wire field: kMaxNodeName bytes, the name then NUL padding (heartbeat and witness datagrams alike).
  void Store(uint8_t* field) const;
  // False unless the field is a valid name followed only by NUL padding. An all-NUL field is an empty name when
  // `allow_empty` (the witness's "no holder"), else invalid.
  static bool Load(const uint8_t* field, bool allow_empty, NodeName* name);

 private:
  std::array<char, kMaxNodeName> bytes_{};
  uint8_t size_ = 0;
};

// True if `name` can travel as a NodeName.
bool ValidNodeName(std::string_view name);

struct Message {
  Role role = Role::kNone;
  uint8_t link_index = 0;
  NodeName sender;
  NodeName receiver;
  uint64_t incarnation = 0;
  uint64_t sequence = 0;
  int64_t send_ns = 0;
  int64_t echo_ns = 0;
  int64_t hold_ns = 0;
  uint64_t term = 0;
  uint64_t last_epoch = 0;
  uint32_t promise_ms = 0;
};

// The HMAC key with its OpenSSL MAC context fetched and keyed once (no per-datagram algorithm fetch or key
// schedule). Not thread-safe: one MacKey per thread.
class MacKey {
 public:
  // InvalidArgument for an empty psk.
  static Result<MacKey> Create(std::string_view psk);
  ~MacKey();
  MacKey(MacKey&&) noexcept;
  MacKey& operator=(MacKey&&) noexcept;

  // HMAC-SHA256(psk, data) truncated to kMacSize bytes.
  Status Compute(std::span<const uint8_t> data, uint8_t out[kMacSize]) const;

 private:
  struct Impl;
  explicit MacKey(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Why a datagram was refused, beside the Status (whose message is for people): the heartbeat and witness decoders
// and MAC checks set it, counters and tests read it.
enum class WireError : uint8_t {
  kNone = 0,
  kTruncated,       // too short to hold magic and version
  kBadMagic,
  kUnknownVersion,  // the only one reported as Unsupported; every other error is Corruption
  kBadLength,       // right magic and version, wrong size
  kUnknownType,     // witness message type, or heartbeat role, out of range
  kUnknownReason,   // witness DENY reason out of range
  kBadName,         // not NUL-padded, NUL inside, or empty where a name is required
  kReservedSet,     // a reserved byte or an unknown flag is not zero
  kZeroId,          // zero incarnation or sequence
  kNegativeTime,
  kFieldRule,       // a field set, or missing, for this message type
  kBadMac,          // wrong key or forged
};
const char* WireErrorName(WireError error);
// For the decoders: sets *out (when given) and returns "`what`: `detail`" as Unsupported for kUnknownVersion,
// else as Corruption.
Status WireFailure(WireError* out, WireError error, const char* what, std::string_view detail);
// The checks every datagram type starts with: magic (bytes 0-3), version (byte 4), then size. In that order, so
// that a future, longer version is reported as kUnknownVersion rather than as kBadLength. Sets *error to kNone
// when they pass.
Status CheckWireHeader(std::span<const uint8_t> datagram, const uint8_t (&magic)[4], uint8_t version, size_t size,
                       const char* what, WireError* error);

// Writes the kMessageSize-byte datagram for `message` into `out` (which must hold kMessageSize bytes).
// InvalidArgument for an unsendable message (empty name, zero incarnation or sequence, negative times).
Status EncodeMessage(const Message& message, const MacKey& key, std::span<uint8_t> out);

// Structural decode WITHOUT authentication: size, magic, version, field ranges, name padding. Corruption for bad
// bytes, Unsupported for another version, and the reason in *error (when given; kNone on success). Safe on any
// input (the fuzz entry point).
Result<Message> DecodeMessage(std::span<const uint8_t> datagram, WireError* error = nullptr);

// Corruption unless `datagram` is `size` bytes ending in the MAC of its first `mac_offset` bytes under `key`
// (constant-time comparison). `what` names the message kind in the error. Shared by every datagram type.
// *error (when given): kBadLength or kBadMac.
Status VerifyTrailingMac(std::span<const uint8_t> datagram, size_t size, size_t mac_offset, const MacKey& key,
                         const char* what, WireError* error = nullptr);

// Corruption unless the datagram carries a valid MAC under `key` (constant-time comparison).
Status VerifyMessageMac(std::span<const uint8_t> datagram, const MacKey& key, WireError* error = nullptr);

// What a receiver uses: structure first (cheap, rejects garbage before any crypto), then the MAC.
Result<Message> DecodeAuthenticatedMessage(std::span<const uint8_t> datagram, const MacKey& key,
                                           WireError* error = nullptr);

}  // namespace tandem::heartbeat
