#include "heartbeat/message.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstring>

#include "common/fd.h"

namespace tandem::heartbeat {
namespace {

// Field offsets of the v2 layout (see message.h).
constexpr size_t kOffVersion = 4;
constexpr size_t kOffRole = 5;
constexpr size_t kOffLink = 6;
constexpr size_t kOffReserved = 7;
constexpr size_t kOffSender = 8;
constexpr size_t kOffReceiver = 40;
constexpr size_t kOffIncarnation = 72;
constexpr size_t kOffSequence = 80;
constexpr size_t kOffSendNs = 88;
constexpr size_t kOffEchoNs = 96;
constexpr size_t kOffHoldNs = 104;
constexpr size_t kOffTerm = 112;
constexpr size_t kOffLastEpoch = 120;
constexpr size_t kOffPromiseMs = 128;
constexpr size_t kOffReserved2 = 132;
static_assert(kOffReserved2 + 4 == kMacOffset);


}  // namespace

const char* RoleName(Role role) {
  switch (role) {
    case Role::kNone: return "none";
    case Role::kPrimary: return "primary";
    case Role::kStandby: return "standby";
    case Role::kWitness: return "witness";
  }
  return "?";
}

bool ValidNodeName(std::string_view name) {
  return !name.empty() && name.size() <= kMaxNodeName && name.find('\0') == std::string_view::npos;
}

bool NodeName::Set(std::string_view name) {
  if (!ValidNodeName(name)) return false;
  bytes_.fill(0);
  std::memcpy(bytes_.data(), name.data(), name.size());
  size_ = uint8_t(name.size());
  return true;
}

void NodeName::Store(uint8_t* field) const { std::memcpy(field, bytes_.data(), kMaxNodeName); }

bool NodeName::Load(const uint8_t* field, bool allow_empty, NodeName* name) {
  size_t len = 0;
  while (len < kMaxNodeName && field[len] != 0) ++len;
  for (size_t i = len; i < kMaxNodeName; ++i) {
    if (field[i] != 0) return false;
  }
  if (len == 0 && allow_empty) {
    *name = NodeName();
    return true;
  }
  return name->Set(std::string_view(reinterpret_cast<const char*>(field), len));
}

struct MacKey::Impl {
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
  ~Impl() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};

MacKey::MacKey(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MacKey::~MacKey() = default;
MacKey::MacKey(MacKey&&) noexcept = default;
MacKey& MacKey::operator=(MacKey&&) noexcept = default;

Result<MacKey> MacKey::Create(std::string_view psk) {
  if (psk.empty()) return Status::InvalidArgument("heartbeat: empty pre-shared key");
  auto impl = std::make_unique<Impl>();
  impl->mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (!impl->mac) return Status::IoError("heartbeat: OpenSSL has no HMAC");
  impl->ctx = EVP_MAC_CTX_new(impl->mac);
  if (!impl->ctx) return Status::IoError("heartbeat: EVP_MAC_CTX_new failed");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(impl->ctx, reinterpret_cast<const unsigned char*>(psk.data()), psk.size(), params) != 1) {
    return Status::IoError("heartbeat: HMAC-SHA256 init failed");
  }
  return MacKey(std::move(impl));
}

Status MacKey::Compute(std::span<const uint8_t> data, uint8_t out[kMacSize]) const {
  uint8_t full[EVP_MAX_MD_SIZE];
  size_t len = 0;
  // A NULL key restarts the MAC with the key set in Create().
  if (EVP_MAC_init(impl_->ctx, nullptr, 0, nullptr) != 1 || EVP_MAC_update(impl_->ctx, data.data(), data.size()) != 1 ||
      EVP_MAC_final(impl_->ctx, full, &len, sizeof(full)) != 1 || len < kMacSize) {
    return Status::IoError("heartbeat: HMAC computation failed");
  }
  std::memcpy(out, full, kMacSize);
  return Status::Ok();
}

Status EncodeMessage(const Message& m, const MacKey& key, std::span<uint8_t> out) {
  if (out.size() < kMessageSize) return Status::InvalidArgument("heartbeat: encode buffer too small");
  if (m.sender.view().empty() || m.receiver.view().empty()) return Status::InvalidArgument("heartbeat: empty name");
  if (m.incarnation == 0 || m.sequence == 0) {
    return Status::InvalidArgument("heartbeat: zero incarnation or sequence");
  }
  if (m.send_ns < 0 || m.echo_ns < 0 || m.hold_ns < 0) return Status::InvalidArgument("heartbeat: negative time");
  if (static_cast<uint8_t>(m.role) > static_cast<uint8_t>(Role::kWitness)) {
    return Status::InvalidArgument("heartbeat: unknown role");
  }
  uint8_t* p = out.data();
  std::memcpy(p, kMessageMagic, 4);
  p[kOffVersion] = kMessageVersion;
  p[kOffRole] = static_cast<uint8_t>(m.role);
  p[kOffLink] = m.link_index;
  p[kOffReserved] = 0;
  m.sender.Store(p + kOffSender);
  m.receiver.Store(p + kOffReceiver);
  StoreLe64(p + kOffIncarnation, m.incarnation);
  StoreLe64(p + kOffSequence, m.sequence);
  StoreLe64(p + kOffSendNs, uint64_t(m.send_ns));
  StoreLe64(p + kOffEchoNs, uint64_t(m.echo_ns));
  StoreLe64(p + kOffHoldNs, uint64_t(m.hold_ns));
  StoreLe64(p + kOffTerm, m.term);
  StoreLe64(p + kOffLastEpoch, m.last_epoch);
  for (int i = 0; i < 4; ++i) p[kOffPromiseMs + i] = uint8_t(m.promise_ms >> (8 * i));
  std::memset(p + kOffReserved2, 0, 4);
  return key.Compute(std::span<const uint8_t>(p, kMacOffset), p + kMacOffset);
}

const char* WireErrorName(WireError error) {
  switch (error) {
    case WireError::kNone: return "none";
    case WireError::kTruncated: return "truncated";
    case WireError::kBadMagic: return "bad magic";
    case WireError::kUnknownVersion: return "unknown version";
    case WireError::kBadLength: return "bad length";
    case WireError::kUnknownType: return "unknown type";
    case WireError::kUnknownReason: return "unknown reason";
    case WireError::kBadName: return "bad name";
    case WireError::kReservedSet: return "reserved bits set";
    case WireError::kZeroId: return "zero incarnation or sequence";
    case WireError::kNegativeTime: return "negative time";
    case WireError::kFieldRule: return "field rule";
    case WireError::kBadMac: return "MAC mismatch";
  }
  return "?";
}

Status WireFailure(WireError* out, WireError error, const char* what, std::string_view detail) {
  if (out != nullptr) *out = error;
  const std::string msg = std::string(what) + ": " + std::string(detail);
  return error == WireError::kUnknownVersion ? Status::Unsupported(msg) : Status::Corruption(msg);
}

Status CheckWireHeader(std::span<const uint8_t> d, const uint8_t (&magic)[4], uint8_t version, size_t size,
                       const char* what, WireError* error) {
  if (error != nullptr) *error = WireError::kNone;
  if (d.size() < 5) return WireFailure(error, WireError::kTruncated, what, "truncated datagram");
  if (std::memcmp(d.data(), magic, 4) != 0) return WireFailure(error, WireError::kBadMagic, what, "bad magic");
  if (d[4] != version) return WireFailure(error, WireError::kUnknownVersion, what, "unknown version");
  if (d.size() != size) return WireFailure(error, WireError::kBadLength, what, "bad length");
  return Status::Ok();
}

Result<Message> DecodeMessage(std::span<const uint8_t> d, WireError* error) {
  static_assert(kOffVersion == 4);
  TANDEM_RETURN_IF_ERROR(CheckWireHeader(d, kMessageMagic, kMessageVersion, kMessageSize, "heartbeat", error));
  auto fail = [error](WireError e, const char* detail) { return WireFailure(error, e, "heartbeat", detail); };
  const uint8_t* p = d.data();
  if (p[kOffRole] > static_cast<uint8_t>(Role::kWitness)) return fail(WireError::kUnknownType, "unknown role");
  if (p[kOffReserved] != 0) return fail(WireError::kReservedSet, "reserved byte set");
  Message m;
  m.role = static_cast<Role>(p[kOffRole]);
  m.link_index = p[kOffLink];
  if (!NodeName::Load(p + kOffSender, /*allow_empty=*/false, &m.sender)) {
    return fail(WireError::kBadName, "bad sender name");
  }
  if (!NodeName::Load(p + kOffReceiver, /*allow_empty=*/false, &m.receiver)) {
    return fail(WireError::kBadName, "bad receiver name");
  }
  m.incarnation = LoadLe64(p + kOffIncarnation);
  m.sequence = LoadLe64(p + kOffSequence);
  m.send_ns = static_cast<int64_t>(LoadLe64(p + kOffSendNs));
  m.echo_ns = static_cast<int64_t>(LoadLe64(p + kOffEchoNs));
  m.hold_ns = static_cast<int64_t>(LoadLe64(p + kOffHoldNs));
  m.term = LoadLe64(p + kOffTerm);
  m.last_epoch = LoadLe64(p + kOffLastEpoch);
  m.promise_ms = uint32_t(LoadLe64(p + kOffPromiseMs) & 0xffffffffu);
  if (LoadLe64(p + kOffPromiseMs) >> 32 != 0) return fail(WireError::kReservedSet, "reserved bytes set");
  if (m.incarnation == 0) return fail(WireError::kZeroId, "zero incarnation");
  if (m.sequence == 0) return fail(WireError::kZeroId, "zero sequence");
  if (m.send_ns < 0 || m.echo_ns < 0 || m.hold_ns < 0) return fail(WireError::kNegativeTime, "negative time");
  return m;
}

Status VerifyTrailingMac(std::span<const uint8_t> d, size_t size, size_t mac_offset, const MacKey& key,
                         const char* what, WireError* error) {
  if (error != nullptr) *error = WireError::kNone;
  if (d.size() != size) return WireFailure(error, WireError::kBadLength, what, "bad length");
  uint8_t expected[kMacSize];
  TANDEM_RETURN_IF_ERROR(key.Compute(d.first(mac_offset), expected));
  if (CRYPTO_memcmp(expected, d.data() + mac_offset, kMacSize) != 0) {
    return WireFailure(error, WireError::kBadMac, what, "MAC mismatch");
  }
  return Status::Ok();
}

Status VerifyMessageMac(std::span<const uint8_t> d, const MacKey& key, WireError* error) {
  return VerifyTrailingMac(d, kMessageSize, kMacOffset, key, "heartbeat", error);
}

Result<Message> DecodeAuthenticatedMessage(std::span<const uint8_t> d, const MacKey& key, WireError* error) {
  auto m = DecodeMessage(d, error);
  if (!m.ok()) return m.status();
  TANDEM_RETURN_IF_ERROR(VerifyMessageMac(d, key, error));
  return m;
}

}  // namespace tandem::heartbeat
