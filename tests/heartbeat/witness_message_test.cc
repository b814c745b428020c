#include "heartbeat/witness_message.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstring>
#include <functional>
#include <random>
#include <vector>

namespace tandem::heartbeat {
namespace {

MacKey Key(std::string_view psk = "witness-test-key") {
  auto key = MacKey::Create(psk);
  EXPECT_TRUE(key.ok());
  return std::move(key).value();
}

WitnessMessage Promote() {
  WitnessMessage m;
  m.type = WitnessType::kPromote;
  m.vm.Set("vm0");
  m.node.Set("host-b");
  m.incarnation = 0x0102030405060708ull;
  m.sequence = 9;
  m.send_ns = 123'456'789'000;
  m.term = 4;
  m.last_applied_epoch = 77;
  m.peer_incarnation = 0xaabbccddeeff0011ull;
  return m;
}

WitnessMessage Grant() {
  WitnessMessage m;
  m.type = WitnessType::kGrant;
  m.vm.Set("vm0");
  m.node.Set("host-b");
  m.holder.Set("host-b");
  m.incarnation = 0xaabbccddeeff0011ull;
  m.sequence = 1;
  m.send_ns = 5;
  m.term = 5;
  m.peer_incarnation = 0x0102030405060708ull;
  m.echo_sequence = 9;
  m.echo_send_ns = 123'456'789'000;
  m.lease_ms = 150;
  return m;
}

std::vector<uint8_t> Encoded(const WitnessMessage& m, const MacKey& key) {
  std::vector<uint8_t> buf(kWitnessMessageSize);
  Status st = EncodeWitnessMessage(m, key, buf);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return buf;
}

void Remac(std::vector<uint8_t>& buf, const MacKey& key) {
  ASSERT_TRUE(key.Compute(std::span<const uint8_t>(buf.data(), kWitnessMacOffset), buf.data() + kWitnessMacOffset).ok());
}

TEST(WitnessMessageTest, RoundTripKeepsEveryField) {
  const MacKey key = Key();
  for (const WitnessMessage& in : {Promote(), Grant()}) {
    auto out = DecodeAuthenticatedWitnessMessage(Encoded(in, key), key);
    ASSERT_TRUE(out.ok()) << out.status().ToString();
    EXPECT_EQ(out->type, in.type);
    EXPECT_EQ(out->reason, in.reason);
    EXPECT_EQ(out->vm.view(), in.vm.view());
    EXPECT_EQ(out->node.view(), in.node.view());
    EXPECT_EQ(out->holder.view(), in.holder.view());
    EXPECT_EQ(out->incarnation, in.incarnation);
    EXPECT_EQ(out->sequence, in.sequence);
    EXPECT_EQ(out->send_ns, in.send_ns);
    EXPECT_EQ(out->term, in.term);
    EXPECT_EQ(out->last_applied_epoch, in.last_applied_epoch);
    EXPECT_EQ(out->peer_incarnation, in.peer_incarnation);
    EXPECT_EQ(out->echo_sequence, in.echo_sequence);
    EXPECT_EQ(out->echo_send_ns, in.echo_send_ns);
    EXPECT_EQ(out->lease_ms, in.lease_ms);
  }
}

TEST(WitnessMessageTest, LayoutIsLittleEndianAtDocumentedOffsets) {
  const MacKey key = Key();
  const auto buf = Encoded(Grant(), key);
  ASSERT_EQ(buf.size(), 192u);
  EXPECT_EQ(0, std::memcmp(buf.data(), "TDWT", 4));
  EXPECT_EQ(buf[4], 1);   // version
  EXPECT_EQ(buf[5], 16);  // GRANT
  EXPECT_EQ(0, std::memcmp(buf.data() + 8, "vm0\0", 4));
  EXPECT_EQ(0, std::memcmp(buf.data() + 40, "host-b\0", 7));
  EXPECT_EQ(0, std::memcmp(buf.data() + 72, "host-b\0", 7));
  EXPECT_EQ(buf[104], 0x11);  // incarnation LSB first
  EXPECT_EQ(buf[128], 5);     // term
  EXPECT_EQ(buf[144], 0x08);  // peer incarnation
  EXPECT_EQ(buf[152], 9);     // echo sequence
  EXPECT_EQ(buf[168], 150);   // lease_ms
  // The MAC is HMAC-SHA256 of the first 176 bytes, truncated.
  unsigned char full[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const std::string psk = "witness-test-key";
  ASSERT_NE(nullptr, HMAC(EVP_sha256(), psk.data(), int(psk.size()), buf.data(), 176, full, &len));
  EXPECT_EQ(0, std::memcmp(full, buf.data() + 176, 16));
}

TEST(WitnessMessageTest, WrongKey) {
  WireError error;
  auto out = DecodeAuthenticatedWitnessMessage(Encoded(Promote(), Key("one")), Key("two"), &error);
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(out.status().IsCorruption());
  EXPECT_EQ(error, WireError::kBadMac);
}

TEST(WitnessMessageTest, AnyFlippedBitIsRefused) {
  const MacKey key = Key();
  for (const WitnessMessage& m : {Promote(), Grant()}) {
    const auto good = Encoded(m, key);
    for (size_t byte = 0; byte < kWitnessMessageSize; ++byte) {
      for (int bit = 0; bit < 8; ++bit) {
        auto bad = good;
        bad[byte] ^= uint8_t(1 << bit);
        EXPECT_FALSE(DecodeAuthenticatedWitnessMessage(bad, key).ok()) << byte << ":" << bit;
      }
    }
  }
}

TEST(WitnessMessageTest, Truncated) {
  const MacKey key = Key();
  const auto good = Encoded(Promote(), key);
  for (size_t len = 0; len < kWitnessMessageSize; ++len) {
    WireError error;
    auto out = DecodeWitnessMessage(std::span<const uint8_t>(good.data(), len), &error);
    ASSERT_FALSE(out.ok());
    EXPECT_TRUE(out.status().IsCorruption()) << len;
    EXPECT_EQ(error, len < 5 ? WireError::kTruncated : WireError::kBadLength) << len;
  }
}

TEST(WitnessMessageTest, TooLong) {
  const MacKey key = Key();
  auto buf = Encoded(Promote(), key);
  buf.push_back(0);
  WireError error;
  auto out = DecodeWitnessMessage(buf, &error);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(error, WireError::kBadLength);
}

TEST(WitnessMessageTest, UnknownVersion) {
  const MacKey key = Key();
  auto buf = Encoded(Promote(), key);
  buf[4] = 2;
  buf.resize(300);
  WireError error;
  auto out = DecodeWitnessMessage(buf, &error);
  ASSERT_FALSE(out.ok());
  EXPECT_TRUE(out.status().IsUnsupported()) << out.status().ToString();
  EXPECT_EQ(error, WireError::kUnknownVersion);
}

TEST(WitnessMessageTest, HeartbeatDatagramIsNotAWitnessMessage) {
  std::vector<uint8_t> buf(kWitnessMessageSize, 0);
  std::memcpy(buf.data(), "TDHB\x02", 5);
  WireError error;
  auto out = DecodeWitnessMessage(buf, &error);
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(error, WireError::kBadMagic);
}

// Each structurally wrong but correctly MACed datagram: only the decoder's field rules can refuse it.
TEST(WitnessMessageTest, FieldRulesRefuseInconsistentMessages) {
  const MacKey key = Key();
  struct Case {
    const char* name;
    WitnessMessage base;
    std::function<void(std::vector<uint8_t>&)> edit;
    WireError error;
  };
  const std::vector<Case> cases = {
      {"UnknownType", Promote(), [](auto& b) { b[5] = 4; }, WireError::kUnknownType},
      {"UnknownReason", Grant(), [](auto& b) { b[5] = 17, b[6] = 11; }, WireError::kUnknownReason},
      {"DenyWithoutReason", Grant(), [](auto& b) { b[5] = 17, b[168] = 0; }, WireError::kFieldRule},
      {"ReasonOnARequest", Promote(), [](auto& b) { b[6] = 2; }, WireError::kFieldRule},
      {"FlagsOnARequest", Promote(), [](auto& b) { b[7] = 1; }, WireError::kReservedSet},
      {"EmptyVmName", Promote(), [](auto& b) { std::memset(b.data() + 8, 0, 32); }, WireError::kBadName},
      {"EmptyNodeName", Promote(), [](auto& b) { std::memset(b.data() + 40, 0, 32); }, WireError::kBadName},
      {"BytesAfterNamePadding", Promote(), [](auto& b) { b[8 + 20] = 'x'; }, WireError::kBadName},
      {"HolderInARequest", Promote(), [](auto& b) { b[72] = 'h'; }, WireError::kFieldRule},
      {"ZeroIncarnation", Promote(), [](auto& b) { std::memset(b.data() + 104, 0, 8); }, WireError::kZeroId},
      {"ZeroSequence", Promote(), [](auto& b) { std::memset(b.data() + 112, 0, 8); }, WireError::kZeroId},
      {"NegativeSendTime", Promote(), [](auto& b) { b[127] = 0x80; }, WireError::kNegativeTime},
      {"EchoInARequest", Promote(), [](auto& b) { b[152] = 1; }, WireError::kFieldRule},
      {"LeaseInARequest", Promote(), [](auto& b) { b[168] = 1; }, WireError::kFieldRule},
      {"EpochOnARenew", Promote(), [](auto& b) { b[5] = 1; }, WireError::kFieldRule},
      {"ReplyEchoingNoRequest", Grant(), [](auto& b) { std::memset(b.data() + 152, 0, 8); }, WireError::kFieldRule},
      {"GrantWithoutTerm", Grant(), [](auto& b) { std::memset(b.data() + 128, 0, 8); }, WireError::kFieldRule},
      {"GrantWithoutLease", Grant(), [](auto& b) { std::memset(b.data() + 168, 0, 4); }, WireError::kFieldRule},
      {"GrantToANonHolder", Grant(), [](auto& b) { b[72] = 'X'; }, WireError::kFieldRule},
      {"RemainingLeaseOnAGrant", Grant(), [](auto& b) { b[172] = 1; }, WireError::kFieldRule},
  };
  for (const Case& c : cases) {
    auto buf = Encoded(c.base, key);
    c.edit(buf);
    Remac(buf, key);
    WireError error;
    auto out = DecodeAuthenticatedWitnessMessage(buf, key, &error);
    EXPECT_FALSE(out.ok()) << c.name;
    if (!out.ok()) {
      EXPECT_TRUE(out.status().IsCorruption()) << c.name << ": " << out.status().ToString();
      EXPECT_EQ(error, c.error) << c.name << ": " << out.status().ToString();
    }
  }
}

TEST(WitnessMessageTest, EncoderRefusesWhatTheDecoderWould) {
  const MacKey key = Key();
  std::vector<uint8_t> out(kWitnessMessageSize);
  WitnessMessage m = Promote();
  m.sequence = 0;
  EXPECT_EQ(EncodeWitnessMessage(m, key, out).code(), Status::Code::kInvalidArgument);
  m = Grant();
  m.reason = WitnessReason::kStaleTerm;
  EXPECT_EQ(EncodeWitnessMessage(m, key, out).code(), Status::Code::kInvalidArgument);
  std::vector<uint8_t> small(kWitnessMessageSize - 1);
  EXPECT_EQ(EncodeWitnessMessage(Promote(), key, small).code(), Status::Code::kInvalidArgument);
}

TEST(WitnessMessageTest, RandomGarbageIsRefusedWithoutCrashing) {
  const MacKey key = Key();
  std::mt19937_64 rng(4242);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> buf(rng() % 400);
    for (auto& b : buf) b = uint8_t(rng());
    if (i % 2 == 0 && buf.size() >= 6) {
      std::memcpy(buf.data(), "TDWT\x01", 5);
      if (i % 4 == 0) buf.resize(kWitnessMessageSize);
    }
    EXPECT_FALSE(DecodeAuthenticatedWitnessMessage(buf, key).ok());
    auto structural = DecodeWitnessMessage(buf);
    if (structural.ok()) {
      // Whatever decodes must re-encode to the same bytes (nothing silently dropped or normalised).
      std::vector<uint8_t> again(kWitnessMessageSize);
      ASSERT_TRUE(EncodeWitnessMessage(*structural, key, again).ok());
      EXPECT_EQ(0, std::memcmp(again.data(), buf.data(), kWitnessMacOffset));
    }
  }
}

}  // namespace
}  // namespace tandem::heartbeat
