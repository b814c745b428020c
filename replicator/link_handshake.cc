// The replication link's handshake (link_security.h; FORMAT.md draws it):
//
//   primary                                        standby
//     HELLO{3, primary, suite, nonce_p}  ------->
//                                        <-------  AUTH{3, suite, nonce_s, 0}      or ACK(refusal)
//     AUTH{3, suite, 0, proof_p}         ------->
//                                        <-------  AUTH{3, suite, 0, proof_s}      or ACK(unauthenticated)
//     ... every record sealed from here (the HELLOs of FORMAT.md first) ...
//
// Keys and proofs are HKDF(psk, transcript = opening HELLO || nonce_s). The standby proves itself last, so a peer
// that does not hold the key never gets a proof out of it to test guesses against.
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <cstring>

#include "replicator/link_security.h"
#include "replicator/messages.h"

namespace tandem::replicator {
namespace {

// A plain Status failure (I/O, a timeout) out of a function that returns a DecodeStatus: not about the bytes.
#define RETURN_IF_FAILED(expr) TANDEM_RETURN_IF_DECODE_ERROR(::tandem::replicator::DecodeStatus(expr))

struct Auth {
  uint32_t version = 0;
  uint32_t suite = 0;
  uint8_t nonce[kLinkNonceSize] = {};
  uint8_t proof[kLinkProofSize] = {};
};

bool AllZero(const uint8_t* p, size_t n) {
  uint8_t acc = 0;
  for (size_t i = 0; i < n; ++i) acc |= p[i];
  return acc == 0;
}

Status SendRecord(Transport* t, RecordType type, std::span<const uint8_t> payload, int timeout_ms) {
  std::vector<uint8_t> record;
  AppendRecord(type, payload, &record);
  iovec iov{record.data(), record.size()};
  return t->Send({&iov, 1}, timeout_ms);
}

Status SendAuth(Transport* t, const Auth& a, int timeout_ms) {
  uint8_t payload[kAuthSize];
  StoreLe32(payload, a.version);
  StoreLe32(payload + 4, a.suite);
  memcpy(payload + 8, a.nonce, kLinkNonceSize);
  memcpy(payload + 8 + kLinkNonceSize, a.proof, kLinkProofSize);
  return SendRecord(t, RecordType::kAuth, payload, timeout_ms);
}

// An AUTH of `version` (the one the primary's opening HELLO named: the standby answers in it) and `suite`,
// whose nonce is zero unless `with_nonce` (only the standby's first one has one) and whose proof is zero unless
// `with_proof`.
DecodeStatus ParseAuth(const RecordView& rec, uint32_t version, uint32_t suite, bool with_nonce, bool with_proof,
                       Auth* a) {
  if (rec.type != uint32_t(RecordType::kAuth)) {
    return DecodeStatus::Corrupt(DecodeError::kUnexpectedRecord,
                                 std::string("link handshake: expected AUTH, got ") + RecordTypeName(rec.type));
  }
  if (rec.payload.size() != kAuthSize) {
    return DecodeStatus::Corrupt(DecodeError::kBadLength, "AUTH of " + std::to_string(rec.payload.size()) + " bytes");
  }
  a->version = LoadLe32(rec.payload.data());
  a->suite = LoadLe32(rec.payload.data() + 4);
  memcpy(a->nonce, rec.payload.data() + 8, kLinkNonceSize);
  memcpy(a->proof, rec.payload.data() + 8 + kLinkNonceSize, kLinkProofSize);
  if (a->version != version || a->suite != suite || with_nonce == AllZero(a->nonce, kLinkNonceSize) ||
      (!with_proof && !AllZero(a->proof, kLinkProofSize))) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, "AUTH with another version or suite, or misplaced fields");
  }
  return DecodeStatus::Ok();
}

// The ACK a standby refuses with, as the primary reads it in the handshake.
DecodeStatus RefusedBy(const RecordView& rec) {
  AckMessage ack;
  TANDEM_RETURN_IF_DECODE_ERROR(ParseAck(rec.payload, &ack));
  DecodeError error = DecodeError::kNone;
  if (ack.status == AckStatus::kUnauthenticated) error = DecodeError::kAuthenticationFailed;
  if (ack.status == AckStatus::kUnsupported) error = DecodeError::kUnknownVersion;
  return DecodeStatus(error, Status::Aborted("standby refused the connection (" +
                                             std::string(AckStatusName(uint32_t(ack.status))) + "): " + ack.reason));
}

DecodeStatus MakeLink(const LinkSecurity& security, const LinkKey& send, const LinkKey& receive, SecureLink* link) {
  auto s = RecordCipher::Create(security.encryption, send);
  if (!s.ok()) return DecodeStatus(s.status());
  auto r = RecordCipher::Create(security.encryption, receive);
  if (!r.ok()) return DecodeStatus(r.status());
  link->send = std::move(s).value();
  link->receive = std::move(r).value();
  return DecodeStatus::Ok();
}

struct Transcript {
  uint8_t bytes[kOpeningHelloSize + kLinkNonceSize];
};

class KeysGuard {  // wipes the connection's keys once the ciphers have them
 public:
  ~KeysGuard() { OPENSSL_cleanse(&keys, sizeof(keys)); }
  LinkKeys keys;
};

}  // namespace

DecodeStatus HandshakeAsPrimary(Transport* t, const LinkSecurity& security, int timeout_ms, SecureLink* link) {
  if (Status st = CheckLinkSecurity(security, "the replication key"); !st.ok()) return DecodeStatus(st);
  const uint32_t suite = uint32_t(security.encryption);
  Transcript tr;
  uint8_t* opening = tr.bytes;
  StoreLe32(opening, kProtocolVersion);
  StoreLe32(opening + 4, uint32_t(PeerRole::kPrimary));
  StoreLe32(opening + 8, suite);
  StoreLe32(opening + 12, 0);
  if (RAND_bytes(opening + 16, int(kLinkNonceSize)) != 1) return DecodeStatus(Status::IoError("RAND_bytes failed"));
  RETURN_IF_FAILED(SendRecord(t, RecordType::kHello, {opening, kOpeningHelloSize}, timeout_ms)
                             .WithContext("send the opening HELLO"));
  RecordReader reader(t);
  RecordView rec;
  TANDEM_RETURN_IF_DECODE_ERROR(reader.Next(timeout_ms, timeout_ms, &rec).WithContext("await the standby's nonce"));
  if (rec.type == uint32_t(RecordType::kAck)) return RefusedBy(rec);
  Auth theirs;
  TANDEM_RETURN_IF_DECODE_ERROR(
      ParseAuth(rec, kProtocolVersion, suite, /*with_nonce=*/true, /*with_proof=*/false, &theirs));
  memcpy(tr.bytes + kOpeningHelloSize, theirs.nonce, kLinkNonceSize);
  KeysGuard k;
  RETURN_IF_FAILED(DeriveLinkKeys(security.key, tr.bytes, &k.keys));
  Auth ours;
  ours.version = kProtocolVersion;
  ours.suite = suite;
  memcpy(ours.proof, k.keys.primary_proof.data(), kLinkProofSize);
  RETURN_IF_FAILED(SendAuth(t, ours, timeout_ms).WithContext("send the primary's proof"));
  TANDEM_RETURN_IF_DECODE_ERROR(reader.Next(timeout_ms, timeout_ms, &rec).WithContext("await the standby's proof"));
  if (rec.type == uint32_t(RecordType::kAck)) return RefusedBy(rec);
  TANDEM_RETURN_IF_DECODE_ERROR(
      ParseAuth(rec, kProtocolVersion, suite, /*with_nonce=*/false, /*with_proof=*/true, &theirs));
  if (CRYPTO_memcmp(theirs.proof, k.keys.standby_proof.data(), kLinkProofSize) != 0) {
    return DecodeStatus::Corrupt(DecodeError::kAuthenticationFailed,
                                 "the standby did not prove it holds the replication key (its proof does not "
                                 "verify: a different key on the two hosts, or not our standby)");
  }
  return MakeLink(security, k.keys.to_standby, k.keys.to_primary, link);
}

DecodeStatus HandshakeAsStandby(Transport* t, const LinkSecurity& security, int timeout_ms, SecureLink* link,
                                std::vector<uint8_t>* refusal) {
  refusal->clear();
  if (Status st = CheckLinkSecurity(security, "the replication key"); !st.ok()) return DecodeStatus(st);
  auto refuse = [refusal](AckStatus status, DecodeStatus why) {
    AckMessage ack;
    ack.status = status;
    ack.reason = why.status().message();
    std::vector<uint8_t> payload;
    SerializeAck(ack, &payload);
    AppendRecord(RecordType::kAck, payload, refusal);
    return why;
  };
  const uint32_t suite = uint32_t(security.encryption);
  RecordReader reader(t);
  RecordView rec;
  TANDEM_RETURN_IF_DECODE_ERROR(reader.Next(timeout_ms, timeout_ms, &rec).WithContext("await the primary's HELLO"));
  if (rec.type != uint32_t(RecordType::kHello)) {
    return refuse(AckStatus::kCorruption,
                  DecodeStatus::Corrupt(DecodeError::kUnexpectedRecord,
                                        std::string(RecordTypeName(rec.type)) + " record before HELLO"));
  }
  const std::span<const uint8_t> opening = rec.payload;
  const uint32_t version = opening.size() >= 4 ? LoadLe32(opening.data()) : 0;
  if (version < kMinLinkProtocolVersion || version > kProtocolVersion) {
    const std::string why =
        version < kMinLinkProtocolVersion
            ? "peer speaks replication protocol version " + std::to_string(version) +
                  ", without link authentication; this standby takes only authenticated primaries (version " +
                  std::to_string(kMinLinkProtocolVersion) + "): upgrade the primary"
            : "peer speaks replication protocol version " + std::to_string(version) + ", this build speaks versions " +
                  std::to_string(kMinLinkProtocolVersion) + " to " + std::to_string(kProtocolVersion);
    return refuse(AckStatus::kUnsupported, DecodeStatus(DecodeError::kUnknownVersion, Status::Unsupported(why)));
  }
  if (opening.size() != kOpeningHelloSize || LoadLe32(opening.data() + 12) != 0) {
    return refuse(AckStatus::kCorruption, DecodeStatus::Corrupt(DecodeError::kBadLength, "malformed opening HELLO"));
  }
  if (LoadLe32(opening.data() + 4) != uint32_t(PeerRole::kPrimary)) {
    return refuse(AckStatus::kMismatch,
                  DecodeStatus::Corrupt(DecodeError::kWrongPeer, "opening HELLO from a standby: both ends are standbys"));
  }
  const uint32_t theirs = LoadLe32(opening.data() + 8);
  if (theirs != suite) {
    auto name = [](uint32_t s) {
      return s == uint32_t(LinkEncryption::kNone) || s == uint32_t(LinkEncryption::kAesGcm)
                 ? std::string(LinkEncryptionName(LinkEncryption(s)))
                 : "unknown suite " + std::to_string(s);
    };
    return refuse(AckStatus::kMismatch,
                  DecodeStatus(DecodeError::kUnsupported,
                               Status::InvalidArgument("the primary asks for encryption = " + name(theirs) +
                                                       ", this standby is configured with " + name(suite) +
                                                       ": set the same [replication] encryption on both hosts")));
  }
  Transcript tr;
  memcpy(tr.bytes, opening.data(), kOpeningHelloSize);
  Auth ours;
  ours.version = version;  // a version 4 primary is answered in version 4
  ours.suite = suite;
  if (RAND_bytes(ours.nonce, int(kLinkNonceSize)) != 1) return DecodeStatus(Status::IoError("RAND_bytes failed"));
  memcpy(tr.bytes + kOpeningHelloSize, ours.nonce, kLinkNonceSize);
  RETURN_IF_FAILED(SendAuth(t, ours, timeout_ms).WithContext("send the standby's nonce"));
  KeysGuard k;
  RETURN_IF_FAILED(DeriveLinkKeys(security.key, tr.bytes, &k.keys));
  TANDEM_RETURN_IF_DECODE_ERROR(reader.Next(timeout_ms, timeout_ms, &rec).WithContext("await the primary's proof"));
  Auth proof;
  if (DecodeStatus st = ParseAuth(rec, version, suite, /*with_nonce=*/false, /*with_proof=*/true, &proof); !st.ok()) {
    return refuse(AckStatus::kCorruption, st);
  }
  if (CRYPTO_memcmp(proof.proof, k.keys.primary_proof.data(), kLinkProofSize) != 0) {
    return refuse(AckStatus::kUnauthenticated,
                  DecodeStatus::Corrupt(DecodeError::kAuthenticationFailed,
                                        "the primary did not prove it holds this standby's replication key (a "
                                        "different key on the two hosts, or a replayed handshake)"));
  }
  memset(ours.nonce, 0, kLinkNonceSize);
  memcpy(ours.proof, k.keys.standby_proof.data(), kLinkProofSize);
  RETURN_IF_FAILED(SendAuth(t, ours, timeout_ms).WithContext("send the standby's proof"));
  return MakeLink(security, k.keys.to_primary, k.keys.to_standby, link);
}

}  // namespace tandem::replicator
