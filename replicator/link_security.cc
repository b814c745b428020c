// Record ciphers and key derivation of the replication link (link_security.h); the handshake is in
// link_handshake.cc.
// SHA256_Init & co. (deprecated in OpenSSL 3.0, still shipped): the allocation-free HMAC below needs them.
#define OPENSSL_SUPPRESS_DEPRECATED
#include "replicator/link_security.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#include <cstring>

#include "common/key_file.h"

namespace tandem::replicator {
namespace {

constexpr char kKdfInfo[] = "tandem replication link v3";
constexpr size_t kGcmIvSize = 12;

}  // namespace

Result<LinkEncryption> ParseLinkEncryption(std::string_view name) {
  if (name == "none") return LinkEncryption::kNone;
  if (name == "aes-gcm") return LinkEncryption::kAesGcm;
  return Status::InvalidArgument("unknown link encryption '" + std::string(name) + "' (none, aes-gcm)");
}

const char* LinkEncryptionName(LinkEncryption encryption) {
  switch (encryption) {
    case LinkEncryption::kNone: return "none";
    case LinkEncryption::kAesGcm: return "aes-gcm";
  }
  return "?";
}

Status CheckLinkSecurity(const LinkSecurity& security, std::string_view what) {
  if (security.encryption != LinkEncryption::kNone && security.encryption != LinkEncryption::kAesGcm) {
    return Status::InvalidArgument("unknown link encryption");
  }
  return CheckKeyLength(security.key, what);
}

Status DeriveLinkKeys(std::string_view psk, std::span<const uint8_t> transcript, LinkKeys* keys) {
  EVP_KDF* kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return Status::IoError("OpenSSL has no HKDF");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  EVP_KDF_free(kdf);
  if (ctx == nullptr) return Status::IoError("EVP_KDF_CTX_new failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(psk.data()), psk.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(transcript.data()),
                                        transcript.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(kKdfInfo), sizeof(kKdfInfo) - 1),
      OSSL_PARAM_construct_end()};
  uint8_t out[4 * sizeof(LinkKey)];
  const bool ok = EVP_KDF_derive(ctx, out, sizeof(out), params) == 1;
  EVP_KDF_CTX_free(ctx);
  if (!ok) return Status::IoError("HKDF-SHA256 failed");
  LinkKey* parts[] = {&keys->primary_proof, &keys->standby_proof, &keys->to_standby, &keys->to_primary};
  for (size_t i = 0; i < 4; ++i) memcpy(parts[i]->data(), out + i * sizeof(LinkKey), sizeof(LinkKey));
  OPENSSL_cleanse(out, sizeof(out));
  return Status::Ok();
}

struct RecordCipher::Impl {
  EVP_CIPHER* cipher = nullptr;
  EVP_CIPHER_CTX* gcm = nullptr;
  // HMAC-SHA256 (RFC 2104) from SHA-256 states that have absorbed the padded key, copied per record. Not EVP:
  // OpenSSL 3.0 allocates a fresh digest state at every EVP digest or HMAC (re)initialisation, which the hot path
  // must not do; SHA256_CTX is a plain struct (same SHA-NI code underneath).
  SHA256_CTX inner_start{}, outer_start{};
  ~Impl() {
    EVP_CIPHER_CTX_free(gcm);
    EVP_CIPHER_free(cipher);
    OPENSSL_cleanse(&inner_start, sizeof(inner_start));
    OPENSSL_cleanse(&outer_start, sizeof(outer_start));
  }
  void SetHmacKey(const LinkKey& key) {
    uint8_t ipad[SHA256_CBLOCK], opad[SHA256_CBLOCK];
    static_assert(sizeof(LinkKey) <= SHA256_CBLOCK);
    for (size_t i = 0; i < SHA256_CBLOCK; ++i) {
      const uint8_t k = i < key.size() ? key[i] : 0;
      ipad[i] = k ^ 0x36;
      opad[i] = k ^ 0x5c;
    }
    SHA256_Init(&inner_start);
    SHA256_Update(&inner_start, ipad, sizeof(ipad));
    SHA256_Init(&outer_start);
    SHA256_Update(&outer_start, opad, sizeof(opad));
    OPENSSL_cleanse(ipad, sizeof(ipad));
    OPENSSL_cleanse(opad, sizeof(opad));
  }
  // HMAC-SHA256(key, counter || a || b), truncated to the tag.
  void Hmac(const uint8_t counter[8], std::span<const uint8_t> a, std::span<const uint8_t> b,
            uint8_t tag[kRecordTagSize]) const {
    SHA256_CTX c = inner_start;
    uint8_t hash[SHA256_DIGEST_LENGTH];
    SHA256_Update(&c, counter, 8);
    SHA256_Update(&c, a.data(), a.size());
    SHA256_Update(&c, b.data(), b.size());
    SHA256_Final(hash, &c);
    c = outer_start;
    SHA256_Update(&c, hash, sizeof(hash));
    SHA256_Final(hash, &c);
    memcpy(tag, hash, kRecordTagSize);
    OPENSSL_cleanse(&c, sizeof(c));
  }
};

RecordCipher::RecordCipher(LinkEncryption encryption, std::unique_ptr<Impl> impl)
    : encryption_(encryption), impl_(std::move(impl)) {}
RecordCipher::~RecordCipher() = default;

Result<std::unique_ptr<RecordCipher>> RecordCipher::Create(LinkEncryption encryption, const LinkKey& key) {
  auto impl = std::make_unique<Impl>();
  if (encryption == LinkEncryption::kAesGcm) {
    impl->cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
    if (impl->cipher == nullptr) return Status::IoError("OpenSSL has no AES-256-GCM");
    impl->gcm = EVP_CIPHER_CTX_new();
    // Keyed once here; each record only sets its IV (no key schedule per record).
    if (impl->gcm == nullptr || EVP_CipherInit_ex(impl->gcm, impl->cipher, nullptr, key.data(), nullptr, 1) != 1) {
      return Status::IoError("AES-256-GCM init failed");
    }
  } else {
    impl->SetHmacKey(key);
  }
  return std::unique_ptr<RecordCipher>(new RecordCipher(encryption, std::move(impl)));
}

Status RecordCipher::Seal(std::span<const uint8_t> record, uint8_t* out, uint8_t tag[kRecordTagSize]) {
  uint8_t counter[8];
  StoreLe64(counter, counter_++);
  if (!encrypts()) {
    // HMAC-SHA256(key, counter || record), truncated: the counter makes a record valid only at its position.
    impl_->Hmac(counter, record, {}, tag);
    return Status::Ok();
  }
  // AES-256-GCM, nonce = counter || 0: type and length stay in the clear (the reader needs them to frame the
  // record) but are authenticated; the checksum (a hash of the plaintext) and the payload are encrypted.
  uint8_t iv[kGcmIvSize] = {};
  memcpy(iv, counter, 8);
  int len = 0;
  memcpy(out, record.data(), 8);
  if (EVP_CipherInit_ex(impl_->gcm, nullptr, nullptr, nullptr, iv, 1) != 1 ||
      EVP_CipherUpdate(impl_->gcm, nullptr, &len, record.data(), 8) != 1 ||
      EVP_CipherUpdate(impl_->gcm, out + 8, &len, record.data() + 8, int(record.size() - 8)) != 1 ||
      EVP_CipherFinal_ex(impl_->gcm, out + record.size(), &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(impl_->gcm, EVP_CTRL_GCM_GET_TAG, int(kRecordTagSize), tag) != 1) {
    return Status::IoError("AES-256-GCM encryption of a record failed");
  }
  return Status::Ok();
}

DecodeStatus RecordCipher::Open(uint8_t* header, std::span<uint8_t> payload, const uint8_t tag[kRecordTagSize]) {
  const uint64_t number = counter_++;
  uint8_t counter[8];
  StoreLe64(counter, number);
  bool ok;
  if (!encrypts()) {
    uint8_t expected[kRecordTagSize];
    impl_->Hmac(counter, {header, kRecordHeaderSize}, payload, expected);
    ok = CRYPTO_memcmp(expected, tag, kRecordTagSize) == 0;
  } else {
    uint8_t iv[kGcmIvSize] = {};
    memcpy(iv, counter, 8);
    int len = 0;
    ok = EVP_CipherInit_ex(impl_->gcm, nullptr, nullptr, nullptr, iv, 0) == 1 &&
         EVP_CipherUpdate(impl_->gcm, nullptr, &len, header, 8) == 1 &&
         EVP_CipherUpdate(impl_->gcm, header + 8, &len, header + 8, 8) == 1 &&
         (payload.empty() || EVP_CipherUpdate(impl_->gcm, payload.data(), &len, payload.data(),
                                              int(payload.size())) == 1) &&
         EVP_CIPHER_CTX_ctrl(impl_->gcm, EVP_CTRL_GCM_SET_TAG, int(kRecordTagSize), const_cast<uint8_t*>(tag)) == 1;
    if (!ok) return DecodeStatus(Status::IoError("AES-256-GCM decryption of a record failed"));
    ok = EVP_CipherFinal_ex(impl_->gcm, payload.data() + payload.size(), &len) == 1;
  }
  if (ok) return DecodeStatus::Ok();
  return DecodeStatus::Corrupt(DecodeError::kTagMismatch,
                               "record " + std::to_string(number) + " of the connection (" +
                                   RecordTypeName(LoadLe32(header)) + ", " + std::to_string(payload.size()) +
                                   " bytes) failed its authentication tag: altered on the way, or not sent by a "
                                   "peer that holds the key");
}

}  // namespace tandem::replicator
