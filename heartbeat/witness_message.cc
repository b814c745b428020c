#include "heartbeat/witness_message.h"


#include <cstring>

#include "common/fd.h"

namespace tandem::heartbeat {
namespace {

constexpr size_t kOffVersion = 4;
constexpr size_t kOffType = 5;
constexpr size_t kOffReason = 6;
constexpr size_t kOffFlags = 7;
constexpr size_t kOffVm = 8;
constexpr size_t kOffNode = 40;
constexpr size_t kOffHolder = 72;
constexpr size_t kOffIncarnation = 104;
constexpr size_t kOffSequence = 112;
constexpr size_t kOffSendNs = 120;
constexpr size_t kOffTerm = 128;
constexpr size_t kOffLastApplied = 136;
constexpr size_t kOffPeerIncarnation = 144;
constexpr size_t kOffEchoSequence = 152;
constexpr size_t kOffEchoSendNs = 160;
constexpr size_t kOffLeaseMs = 168;
constexpr size_t kOffLeaseRemainingMs = 172;
static_assert(kOffLeaseRemainingMs + 4 == kWitnessMacOffset);

bool KnownType(uint8_t t) {
  return (t >= uint8_t(WitnessType::kLeaseRenew) && t <= uint8_t(WitnessType::kStatusQuery)) ||
         (t >= uint8_t(WitnessType::kGrant) && t <= uint8_t(WitnessType::kStatusReply));
}

// The per-type rules shared by the encoder and the decoder, so whatever decodes re-encodes to the same bytes.
// Why `m` may not be on the wire (nullptr: it may), and the WireError a decoder reports for it.
struct Refusal {
  WireError error = WireError::kNone;
  const char* why = nullptr;
};

Refusal Invalid(const WitnessMessage& m) {
  using E = WireError;
  if (!KnownType(uint8_t(m.type))) return {E::kUnknownType, "unknown type"};
  if (m.vm.view().empty()) return {E::kBadName, "empty vm name"};
  if (m.node.view().empty()) return {E::kBadName, "empty node name"};
  if (m.incarnation == 0) return {E::kZeroId, "zero incarnation"};
  if (m.sequence == 0) return {E::kZeroId, "zero sequence"};
  if (m.send_ns < 0 || m.echo_send_ns < 0) return {E::kNegativeTime, "negative time"};
  if (uint8_t(m.reason) > kMaxWitnessReason) return {E::kUnknownReason, "unknown reason"};
  if ((m.type == WitnessType::kDeny) != (m.reason != WitnessReason::kNone)) {
    return {E::kFieldRule, "reason on a non-DENY or none on DENY"};
  }
  if (m.type != WitnessType::kStatusReply ? m.flags != 0 : (m.flags & ~kWitnessFlagStartupHold) != 0) {
    return {E::kReservedSet, "unknown flags"};
  }
  if (m.type != WitnessType::kPromote && m.last_applied_epoch != 0) return {E::kFieldRule, "epoch on a non-PROMOTE"};
  if (IsRequest(m.type)) {
    if (!m.holder.view().empty()) return {E::kFieldRule, "holder in a request"};
    if (m.echo_sequence != 0 || m.echo_send_ns != 0) return {E::kFieldRule, "echo in a request"};
    if (m.lease_ms != 0 || m.lease_remaining_ms != 0) return {E::kFieldRule, "lease in a request"};
    return {};
  }
  if (m.peer_incarnation == 0 || m.echo_sequence == 0) return {E::kFieldRule, "reply echoes no request"};
  if (m.type == WitnessType::kGrant) {
    if (m.term == 0 || m.lease_ms == 0) return {E::kFieldRule, "GRANT without term or lease"};
    if (!(m.holder.view() == m.node.view())) return {E::kFieldRule, "GRANT to a node that is not the holder"};
  }
  if (m.type != WitnessType::kGrant && m.type != WitnessType::kStatusReply && m.lease_ms != 0) {
    return {E::kFieldRule, "lease on a DENY"};
  }
  if (m.type != WitnessType::kStatusReply && m.lease_remaining_ms != 0) {
    return {E::kFieldRule, "remaining lease outside STATUS_REPLY"};
  }
  return {};
}

}  // namespace

const char* WitnessTypeName(WitnessType type) {
  switch (type) {
    case WitnessType::kLeaseRenew: return "LEASE_RENEW";
    case WitnessType::kPromote: return "PROMOTE";
    case WitnessType::kStatusQuery: return "STATUS_QUERY";
    case WitnessType::kGrant: return "GRANT";
    case WitnessType::kDeny: return "DENY";
    case WitnessType::kStatusReply: return "STATUS_REPLY";
  }
  return "?";
}

const char* WitnessReasonName(WitnessReason reason) {
  switch (reason) {
    case WitnessReason::kNone: return "none";
    case WitnessReason::kChallenge: return "challenge (resend with the witness incarnation)";
    case WitnessReason::kStaleTerm: return "stale term (superseded)";
    case WitnessReason::kFutureTerm: return "term never issued by this witness";
    case WitnessReason::kNotHolder: return "not the lease holder";
    case WitnessReason::kHolderLeaseValid: return "holder lease valid";
    case WitnessReason::kStartupHold: return "witness startup hold (a lease granted before its restart may be held)";
    case WitnessReason::kUnknownVm: return "unknown VM (not registered)";
    case WitnessReason::kAlreadyHolder: return "already the holder";
    case WitnessReason::kInternal: return "witness could not persist its state";
    case WitnessReason::kTooManyVms: return "witness VM table full";
  }
  return "?";
}

Status EncodeWitnessMessage(const WitnessMessage& m, const MacKey& key, std::span<uint8_t> out) {
  if (out.size() < kWitnessMessageSize) return Status::InvalidArgument("witness: encode buffer too small");
  if (const char* why = Invalid(m).why) return Status::InvalidArgument(std::string("witness: ") + why);
  uint8_t* p = out.data();
  std::memcpy(p, kWitnessMagic, 4);
  p[kOffVersion] = kWitnessVersion;
  p[kOffType] = uint8_t(m.type);
  p[kOffReason] = uint8_t(m.reason);
  p[kOffFlags] = m.flags;
  m.vm.Store(p + kOffVm);
  m.node.Store(p + kOffNode);
  m.holder.Store(p + kOffHolder);
  StoreLe64(p + kOffIncarnation, m.incarnation);
  StoreLe64(p + kOffSequence, m.sequence);
  StoreLe64(p + kOffSendNs, uint64_t(m.send_ns));
  StoreLe64(p + kOffTerm, m.term);
  StoreLe64(p + kOffLastApplied, m.last_applied_epoch);
  StoreLe64(p + kOffPeerIncarnation, m.peer_incarnation);
  StoreLe64(p + kOffEchoSequence, m.echo_sequence);
  StoreLe64(p + kOffEchoSendNs, uint64_t(m.echo_send_ns));
  StoreLe32(p + kOffLeaseMs, m.lease_ms);
  StoreLe32(p + kOffLeaseRemainingMs, m.lease_remaining_ms);
  return key.Compute(std::span<const uint8_t>(p, kWitnessMacOffset), p + kWitnessMacOffset);
}

Result<WitnessMessage> DecodeWitnessMessage(std::span<const uint8_t> d, WireError* error) {
  static_assert(kOffVersion == 4);
  TANDEM_RETURN_IF_ERROR(CheckWireHeader(d, kWitnessMagic, kWitnessVersion, kWitnessMessageSize, "witness", error));
  auto fail = [error](WireError e, const char* detail) { return WireFailure(error, e, "witness", detail); };
  const uint8_t* p = d.data();
  if (!KnownType(p[kOffType])) return fail(WireError::kUnknownType, "unknown type");
  WitnessMessage m;
  m.type = WitnessType(p[kOffType]);
  m.reason = WitnessReason(p[kOffReason]);
  m.flags = p[kOffFlags];
  if (!NodeName::Load(p + kOffVm, /*allow_empty=*/true, &m.vm)) {
    return fail(WireError::kBadName, "bad vm name");
  }
  if (!NodeName::Load(p + kOffNode, /*allow_empty=*/true, &m.node)) {
    return fail(WireError::kBadName, "bad node name");
  }
  if (!NodeName::Load(p + kOffHolder, /*allow_empty=*/true, &m.holder)) {
    return fail(WireError::kBadName, "bad holder name");
  }
  m.incarnation = LoadLe64(p + kOffIncarnation);
  m.sequence = LoadLe64(p + kOffSequence);
  m.send_ns = int64_t(LoadLe64(p + kOffSendNs));
  m.term = LoadLe64(p + kOffTerm);
  m.last_applied_epoch = LoadLe64(p + kOffLastApplied);
  m.peer_incarnation = LoadLe64(p + kOffPeerIncarnation);
  m.echo_sequence = LoadLe64(p + kOffEchoSequence);
  m.echo_send_ns = int64_t(LoadLe64(p + kOffEchoSendNs));
  m.lease_ms = LoadLe32(p + kOffLeaseMs);
  m.lease_remaining_ms = LoadLe32(p + kOffLeaseRemainingMs);
  if (const Refusal r = Invalid(m); r.why != nullptr) return fail(r.error, r.why);
  return m;
}

Status VerifyWitnessMac(std::span<const uint8_t> d, const MacKey& key, WireError* error) {
  return VerifyTrailingMac(d, kWitnessMessageSize, kWitnessMacOffset, key, "witness", error);
}

Result<WitnessMessage> DecodeAuthenticatedWitnessMessage(std::span<const uint8_t> d, const MacKey& key,
                                                         WireError* error) {
  auto m = DecodeWitnessMessage(d, error);
  if (!m.ok()) return m.status();
  TANDEM_RETURN_IF_ERROR(VerifyWitnessMac(d, key, error));
  return m;
}

}  // namespace tandem::heartbeat
