// The replication link's security (FORMAT.md "Link", common/SECURITY.md): before anything else on a connection,
// the primary and the standby prove to each other that they hold the same pre-shared key, in a challenge-response
// handshake whose two fresh nonces derive the connection's keys (HKDF-SHA256); a peer without the key can neither
// ship nor acknowledge epochs, and a recorded handshake does not verify against the other side's new nonce. Every
// record after the handshake carries a tag under the key of its direction and its position in the connection (a
// record counter): HMAC-SHA256 with encryption = none, AES-256-GCM over the encrypted record with aes-gcm. A
// record altered, lost, repeated or reordered on the way fails its tag.
//
// Stream files (tests, the bench) are not a link: they hold plain records and never go through this.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "replicator/decode_error.h"
#include "replicator/format.h"
#include "replicator/transport.h"

namespace tandem::replicator {

// What protects the records after the handshake. The values are the handshake's suite on the wire.
enum class LinkEncryption : uint32_t {
  kNone = 1,    // authenticated, not encrypted: HMAC-SHA256 tag (guest memory readable on the wire)
  kAesGcm = 2,  // authenticated and encrypted: AES-256-GCM
};
// "none" or "aes-gcm".
Result<LinkEncryption> ParseLinkEncryption(std::string_view name);
const char* LinkEncryptionName(LinkEncryption encryption);

struct LinkSecurity {
  std::string key;  // pre-shared, the same on both hosts; at least kMinKeyBytes (common/key_file.h)
  LinkEncryption encryption = LinkEncryption::kAesGcm;
};
// InvalidArgument when the key is too short (the option that holds it is named `what`).
Status CheckLinkSecurity(const LinkSecurity& security, std::string_view what);

using LinkKey = std::array<uint8_t, 32>;

// One direction of an authenticated connection: Seal on the sender, Open on the receiver; each call is that
// direction's next record (the counter is the AES-GCM nonce and is under the HMAC). The OpenSSL contexts are
// made once, keyed once: sealing and opening allocate nothing. Not thread-safe: one per direction and thread.
class RecordCipher {
 public:
  static Result<std::unique_ptr<RecordCipher>> Create(LinkEncryption encryption, const LinkKey& key);
  ~RecordCipher();
  RecordCipher(const RecordCipher&) = delete;
  RecordCipher& operator=(const RecordCipher&) = delete;

  bool encrypts() const { return encryption_ == LinkEncryption::kAesGcm; }
  // `record` is a whole plain record (header + payload). Computes its tag; when encrypts(), also writes the record
  // as it goes on the wire to `out` (record.size() bytes: type and length in the clear, checksum and payload
  // encrypted); otherwise the record goes as it is and `out` is unused.
  Status Seal(std::span<const uint8_t> record, uint8_t* out, uint8_t tag[kRecordTagSize]);
  // A received record: its 16-byte header and payload as they came, and the tag after them. Checks the tag and,
  // when encrypts(), decrypts header bytes 8..15 and the payload in place. kTagMismatch when the tag is wrong.
  DecodeStatus Open(uint8_t* header, std::span<uint8_t> payload, const uint8_t tag[kRecordTagSize]);
  uint64_t records() const { return counter_; }

 private:
  struct Impl;
  RecordCipher(LinkEncryption encryption, std::unique_ptr<Impl> impl);
  const LinkEncryption encryption_;
  std::unique_ptr<Impl> impl_;
  uint64_t counter_ = 0;
};

// An established link: the cipher of each direction.
struct SecureLink {
  std::unique_ptr<RecordCipher> send;
  std::unique_ptr<RecordCipher> receive;
};

// The keys of one connection, from the pre-shared key and the handshake's transcript (the primary's opening HELLO
// payload, then the standby's nonce): HKDF-SHA256(salt = transcript, key = psk) expanded to four 32-byte values.
struct LinkKeys {
  LinkKey primary_proof;
  LinkKey standby_proof;
  LinkKey to_standby;  // the primary's records
  LinkKey to_primary;  // the standby's records
};
Status DeriveLinkKeys(std::string_view psk, std::span<const uint8_t> transcript, LinkKeys* keys);

// The handshake, first thing on a fresh connection (FORMAT.md draws it). Primary side: its opening HELLO, the
// standby's nonce, its proof, the standby's proof. kAuthenticationFailed when the standby did not prove it holds
// the key, or refused ours (its ACK says why; other refusals, e.g. a version it cannot speak, keep their code).
DecodeStatus HandshakeAsPrimary(Transport* transport, const LinkSecurity& security, int timeout_ms,
                                SecureLink* link);
// Standby side. On failure *refusal holds the ACK to send back in the clear, if there is one to send (the
// primary's proof was wrong: ACK unauthenticated; a primary of an older version: unsupported; another suite:
// mismatch); a connection that broke or stalled gets none.
DecodeStatus HandshakeAsStandby(Transport* transport, const LinkSecurity& security, int timeout_ms,
                                SecureLink* link, std::vector<uint8_t>* refusal);

}  // namespace tandem::replicator
