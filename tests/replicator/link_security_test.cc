// The replication link's security (link_security.h) over real loopback sockets: a peer without the key neither
// ships nor acknowledges anything, a recorded session does not replay, a record altered on the way is refused
// and resynced, short keys never start; and the record ciphers on their own.
#include "replicator/link_security.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>

#include "replicator/messages.h"
#include "tests/replicator/shipper_harness.h"

namespace tandem::replicator::shipper_testing {
namespace {

// ---------------------------------------------------------------------------------------------------------------
// Record ciphers.

LinkKey TestKey(uint8_t seed) {
  LinkKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = uint8_t(seed + i * 7);
  return k;
}

std::vector<uint8_t> PlainRecord(RecordType type, size_t payload_bytes, uint8_t fill) {
  std::vector<uint8_t> payload(payload_bytes, fill), record;
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = uint8_t(fill + i);
  AppendRecord(type, payload, &record);
  return record;
}

// What the wire carries for `record` (its tag after it), sealed by `cipher`.
std::vector<uint8_t> Sealed(RecordCipher& cipher, const std::vector<uint8_t>& record) {
  std::vector<uint8_t> wire(record.size() + kRecordTagSize);
  EXPECT_TRUE(cipher.Seal(record, wire.data(), wire.data() + record.size()).ok());
  if (!cipher.encrypts()) memcpy(wire.data(), record.data(), record.size());
  return wire;
}

// Opens a sealed record the way RecordReader does: header, payload, tag.
DecodeStatus OpenWire(RecordCipher& cipher, std::vector<uint8_t> wire, std::vector<uint8_t>* plain = nullptr) {
  const size_t payload = wire.size() - kRecordHeaderSize - kRecordTagSize;
  DecodeStatus st = cipher.Open(wire.data(), {wire.data() + kRecordHeaderSize, payload},
                                wire.data() + kRecordHeaderSize + payload);
  if (plain != nullptr) *plain = {wire.begin(), wire.end() - kRecordTagSize};
  return st;
}

std::string SuiteName(const ::testing::TestParamInfo<LinkEncryption>& p) {
  return p.param == LinkEncryption::kNone ? "Hmac" : "AesGcm";
}

class RecordCipherTest : public ::testing::TestWithParam<LinkEncryption> {
 protected:
  std::unique_ptr<RecordCipher> Make(uint8_t seed = 1) {
    return std::move(RecordCipher::Create(GetParam(), TestKey(seed))).value();
  }
};

TEST_P(RecordCipherTest, SealedRecordsOpenInOrderToThePlainRecord) {
  auto sender = Make(), receiver = Make();
  for (size_t bytes : {size_t(0), size_t(24), size_t(100000)}) {
    const std::vector<uint8_t> record = PlainRecord(RecordType::kPages, bytes, uint8_t(bytes));
    const std::vector<uint8_t> wire = Sealed(*sender, record);
    if (GetParam() == LinkEncryption::kAesGcm && bytes > 0) {
      EXPECT_NE(0, memcmp(wire.data() + kRecordHeaderSize, record.data() + kRecordHeaderSize, bytes))
          << "aes-gcm sent the payload in the clear";
    }
    std::vector<uint8_t> plain;
    ASSERT_TRUE(OpenWire(*receiver, wire, &plain).ok()) << bytes;
    EXPECT_EQ(plain, record);
  }
}

TEST_P(RecordCipherTest, FlippedBitReorderedRecordOrAnotherKeyFailTheTag) {
  const std::vector<uint8_t> first = PlainRecord(RecordType::kPages, 4096, 3);
  const std::vector<uint8_t> second = PlainRecord(RecordType::kEpochEnd, kEpochEndSize, 9);
  for (size_t flip : {size_t(0), size_t(5), size_t(12), kRecordHeaderSize + 100, first.size() + 3}) {
    auto sender = Make(), receiver = Make();
    std::vector<uint8_t> wire = Sealed(*sender, first);
    wire[flip] ^= 0x01;
    EXPECT_EQ(OpenWire(*receiver, wire).error(), DecodeError::kTagMismatch) << "flipped byte " << flip;
  }
  auto sender = Make(), receiver = Make();
  Sealed(*sender, first);  // lost on the way: the second record arrives first
  EXPECT_EQ(OpenWire(*receiver, Sealed(*sender, second)).error(), DecodeError::kTagMismatch);
  auto other = Make(2);
  EXPECT_EQ(OpenWire(*Make(), Sealed(*other, first)).error(), DecodeError::kTagMismatch);
}

// encryption = none is standard HMAC-SHA256(key, counter || record) truncated to 16 bytes (FORMAT.md), so any
// HMAC implementation can check a captured stream.
TEST(RecordCipherHmacTest, TagIsHmacSha256OfTheCounterAndTheRecord) {
  const LinkKey key = TestKey(5);
  auto cipher = std::move(RecordCipher::Create(LinkEncryption::kNone, key)).value();
  const std::vector<uint8_t> record = PlainRecord(RecordType::kDeviceState, 300, 1);
  for (uint64_t counter = 0; counter < 2; ++counter) {
    uint8_t tag[kRecordTagSize];
    ASSERT_TRUE(cipher->Seal(record, nullptr, tag).ok());
    std::vector<uint8_t> message(8);
    StoreLe64(message.data(), counter);
    message.insert(message.end(), record.begin(), record.end());
    uint8_t full[32];
    unsigned int len = 0;
    ASSERT_NE(nullptr, HMAC(EVP_sha256(), key.data(), int(key.size()), message.data(), message.size(), full, &len));
    EXPECT_EQ(0, memcmp(tag, full, kRecordTagSize)) << "record " << counter;
  }
}

INSTANTIATE_TEST_SUITE_P(Suites, RecordCipherTest, ::testing::Values(LinkEncryption::kNone, LinkEncryption::kAesGcm),
                         SuiteName);

TEST(LinkKeysTest, BothNoncesAndTheKeyChangeEveryKey) {
  std::vector<uint8_t> transcript(kOpeningHelloSize + kLinkNonceSize, 0x42);
  LinkKeys a, b, c, d;
  ASSERT_TRUE(DeriveLinkKeys("a key of sixteen+ bytes", transcript, &a).ok());
  transcript.back() ^= 1;  // the standby's nonce
  ASSERT_TRUE(DeriveLinkKeys("a key of sixteen+ bytes", transcript, &b).ok());
  transcript[20] ^= 1;  // the primary's nonce
  ASSERT_TRUE(DeriveLinkKeys("a key of sixteen+ bytes", transcript, &c).ok());
  ASSERT_TRUE(DeriveLinkKeys("another key of 16+ bytes", transcript, &d).ok());
  for (const LinkKeys* k : {&b, &c, &d}) {
    EXPECT_NE(a.primary_proof, k->primary_proof);
    EXPECT_NE(a.to_standby, k->to_standby);
  }
  EXPECT_NE(a.primary_proof, a.standby_proof);  // a proof cannot be reflected back
  EXPECT_NE(a.to_standby, a.to_primary);
}

// ---------------------------------------------------------------------------------------------------------------
// Shipper and receiver over loopback, for both suites.

class LinkTest : public ::testing::TestWithParam<LinkEncryption> {
 protected:
  LinkTest() : h_(IoEngine::kPoll, 1024) { h_.encryption = GetParam(); }
  Harness h_;
};

INSTANTIATE_TEST_SUITE_P(Suites, LinkTest, ::testing::Values(LinkEncryption::kNone, LinkEncryption::kAesGcm),
                         SuiteName);

TEST_P(LinkTest, PrimaryWithAnotherKeyIsRefusedAndNothingIsApplied) {
  EpochReceiver receiver(h_.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  ShipperOptions so = h_.ShipperOpts(receiver.port());
  so.security.key = "not the standby's key, though long enough";
  EpochShipper shipper(so, SystemClock());
  ASSERT_TRUE(h_.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return receiver.stats().connections_refused >= 2; }))
      << "the primary was not refused, or did not retry";
  for (uint64_t n = 1; n <= 3; ++n) h_.SubmitEpoch(shipper, n);
  const ShipperStats s = shipper.stats();
  EXPECT_EQ(s.last_link_error, DecodeError::kAuthenticationFailed) << s.last_error;
  EXPECT_NE(s.last_error.find("unauthenticated"), std::string::npos) << s.last_error;
  EXPECT_FALSE(s.standby_connected);
  EXPECT_EQ(s.last_acked, 0u);
  shipper.Stop();
  receiver.Stop();
  const ReceiverStats r = receiver.stats();
  EXPECT_EQ(r.last_refusal, DecodeError::kAuthenticationFailed) << r.last_error;
  EXPECT_EQ(r.epochs_applied, 0u);
  EXPECT_FALSE(receiver.resume_point().has_value());
}

TEST_P(LinkTest, StandbyWithAnotherEncryptionRefusesWithTheReason) {
  ReceiverOptions ro = h_.ReceiverOpts();
  ro.security.encryption = GetParam() == LinkEncryption::kNone ? LinkEncryption::kAesGcm : LinkEncryption::kNone;
  EpochReceiver receiver(ro, SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  EpochShipper shipper(h_.ShipperOpts(receiver.port()), SystemClock());
  ASSERT_TRUE(h_.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return receiver.stats().connections_refused >= 1; }));
  shipper.Stop();
  receiver.Stop();
  EXPECT_NE(receiver.stats().last_error.find("same [replication] encryption"), std::string::npos)
      << receiver.stats().last_error;
  EXPECT_EQ(receiver.stats().epochs_applied, 0u);
}

// A byte flipped on the way inside a PAGES record: its tag fails, nothing of the epoch is applied, the primary
// resyncs and the replica ends up exact.
TEST_P(LinkTest, FlippedByteInARecordIsRejectedThenResynced) {
  Relayed link(h_);
  ASSERT_TRUE(link.Protect(h_)) << link.shipper.stats().last_error;
  ShipAndAwait(h_, link.shipper, 1, 5);
  const uint64_t applied = link.receiver.stats().epochs_applied;
  link.relay.DamageByteAfter(2 * kRecordHeaderSize + kEpochBeginSize + kRecordTagSize + 40);
  h_.SubmitEpoch(link.shipper, 6);
  ASSERT_TRUE(WaitUntil([&] { return link.receiver.stats().epochs_rejected == 1; }));
  EXPECT_EQ(link.receiver.stats().last_rejection, DecodeError::kTagMismatch) << link.receiver.stats().last_error;
  EXPECT_EQ(link.receiver.stats().epochs_applied, applied) << "the damaged epoch was applied";
  ShipAndAwait(h_, link.shipper, 7, 10);
  link.receiver.Stop();
  EXPECT_EQ(link.receiver.resume_point()->epoch, 10u);
  h_.ExpectReplicaMatches();
  link.shipper.Stop();
}

// Reads framed records (plain: the handshake's) off a raw socket until the peer closes or `timeout_ms` passes.
std::vector<std::pair<uint32_t, std::vector<uint8_t>>> ReadPlainRecords(int fd, int timeout_ms) {
  std::vector<uint8_t> bytes;
  uint8_t buf[4096];
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, timeout_ms) == 1) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    bytes.insert(bytes.end(), buf, buf + n);
  }
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> records;
  for (size_t at = 0; at + kRecordHeaderSize <= bytes.size();) {
    const size_t len = LoadLe32(&bytes[at + 4]);
    if (at + kRecordHeaderSize + len > bytes.size()) break;
    records.push_back({LoadLe32(&bytes[at]), {&bytes[at + kRecordHeaderSize], &bytes[at + kRecordHeaderSize + len]}});
    at += kRecordHeaderSize + len;
  }
  return records;
}

// Everything a real primary sent in a session that shipped epochs, replayed byte for byte to the same standby:
// the standby's fresh nonce makes the recorded proof wrong, so the replay is refused before any epoch.
TEST_P(LinkTest, ReplayedSessionIsRefusedInTheHandshake) {
  Relayed link(h_);
  ASSERT_TRUE(link.Protect(h_)) << link.shipper.stats().last_error;
  ShipAndAwait(h_, link.shipper, 1, 3);
  link.shipper.Stop();
  const std::vector<uint8_t> session = link.relay.FirstSessionToStandby();
  ASSERT_GT(session.size(), 4096u);
  ASSERT_TRUE(WaitUntil([&] { return !link.receiver.stats().primary_connected; }));
  const uint64_t applied = link.receiver.stats().epochs_applied;

  auto fd = ConnectStream("127.0.0.1:" + std::to_string(link.receiver.port()), 2000);
  ASSERT_TRUE(fd.ok());
  std::vector<std::pair<uint32_t, std::vector<uint8_t>>> answer;
  std::thread reader([&] { answer = ReadPlainRecords(fd->get(), 3000); });
  // All of it at once, as a replaying attacker would (the standby reads the proof before anything sealed).
  for (size_t at = 0; at < session.size();) {
    const ssize_t n = ::send(fd->get(), session.data() + at, session.size() - at, MSG_NOSIGNAL);
    if (n <= 0) break;  // the standby closed once it refused
    at += size_t(n);
  }
  ::shutdown(fd->get(), SHUT_WR);
  reader.join();
  ASSERT_EQ(answer.size(), 2u) << "expected the standby's nonce, then its refusal";
  EXPECT_EQ(answer[0].first, uint32_t(RecordType::kAuth));
  ASSERT_EQ(answer[1].first, uint32_t(RecordType::kAck));
  AckMessage ack;
  ASSERT_TRUE(ParseAck(answer[1].second, &ack).ok());
  EXPECT_EQ(ack.status, AckStatus::kUnauthenticated) << ack.reason;
  ASSERT_TRUE(WaitUntil([&] { return link.receiver.stats().connections_refused == 1; }));
  link.receiver.Stop();
  EXPECT_EQ(link.receiver.stats().last_refusal, DecodeError::kAuthenticationFailed);
  EXPECT_EQ(link.receiver.stats().epochs_applied, applied) << "a replayed epoch was applied";
}

// A primary that speaks the unauthenticated version 2 is told to upgrade.
TEST(LinkVersionTest, UnauthenticatedPrimaryIsRefusedAsAnOlderVersion) {
  Harness h(IoEngine::kPoll);
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  HelloMessage hello;
  hello.version = 2;
  hello.descriptor = Vm();
  std::vector<uint8_t> payload, record;
  SerializeHello(hello, &payload);
  AppendRecord(RecordType::kHello, payload, &record);
  auto fd = ConnectStream("127.0.0.1:" + std::to_string(receiver.port()), 2000);
  ASSERT_TRUE(fd.ok());
  ASSERT_EQ(::send(fd->get(), record.data(), record.size(), MSG_NOSIGNAL), ssize_t(record.size()));
  ::shutdown(fd->get(), SHUT_WR);
  const auto answer = ReadPlainRecords(fd->get(), 3000);
  ASSERT_EQ(answer.size(), 1u);
  AckMessage ack;
  ASSERT_TRUE(ParseAck(answer[0].second, &ack).ok());
  EXPECT_EQ(ack.status, AckStatus::kUnsupported);
  EXPECT_NE(ack.reason.find("without link authentication"), std::string::npos) << ack.reason;
  receiver.Stop();
  EXPECT_EQ(receiver.stats().last_refusal, DecodeError::kUnknownVersion);
}

// Version 5 (page hashes) kept the handshake: a version 4 primary's opening HELLO is answered in version 4, one of
// a version this build does not know is refused with the versions it speaks.
TEST(LinkVersionTest, Version4PrimaryIsAnsweredInVersion4AndAnUnknownVersionIsRefused) {
  Harness h(IoEngine::kPoll);
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  auto first_answer = [&](uint32_t version) {
    uint8_t opening[kOpeningHelloSize] = {};
    StoreLe32(opening, version);
    StoreLe32(opening + 4, uint32_t(PeerRole::kPrimary));
    StoreLe32(opening + 8, uint32_t(h.encryption));
    memset(opening + 16, 0x5a, kLinkNonceSize);
    std::vector<uint8_t> record;
    AppendRecord(RecordType::kHello, {opening, sizeof(opening)}, &record);
    auto fd = ConnectStream("127.0.0.1:" + std::to_string(receiver.port()), 2000);
    EXPECT_TRUE(fd.ok());
    EXPECT_EQ(::send(fd->get(), record.data(), record.size(), MSG_NOSIGNAL), ssize_t(record.size()));
    ::shutdown(fd->get(), SHUT_WR);
    auto answer = ReadPlainRecords(fd->get(), 3000);
    EXPECT_FALSE(answer.empty());
    return answer.empty() ? std::pair<uint32_t, std::vector<uint8_t>>() : answer[0];
  };
  const auto v4 = first_answer(4);
  ASSERT_EQ(v4.first, uint32_t(RecordType::kAuth));
  ASSERT_EQ(v4.second.size(), kAuthSize);
  EXPECT_EQ(LoadLe32(v4.second.data()), 4u);
  const auto v5 = first_answer(kProtocolVersion);
  ASSERT_EQ(v5.first, uint32_t(RecordType::kAuth));
  EXPECT_EQ(LoadLe32(v5.second.data()), kProtocolVersion);
  const auto v6 = first_answer(kProtocolVersion + 1);
  ASSERT_EQ(v6.first, uint32_t(RecordType::kAck));
  AckMessage ack;
  ASSERT_TRUE(ParseAck(v6.second, &ack).ok());
  EXPECT_EQ(ack.status, AckStatus::kUnsupported);
  EXPECT_NE(ack.reason.find("versions 4 to 5"), std::string::npos) << ack.reason;
  receiver.Stop();
}

TEST(LinkKeyTest, KeysShorterThanSixteenBytesNeverStart) {
  Harness h(IoEngine::kPoll);
  ReceiverOptions ro = h.ReceiverOpts();
  ro.security.key = "fifteen bytes!!";
  EpochReceiver receiver(ro, SystemClock());
  const Status r = receiver.Start();
  EXPECT_EQ(r.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.message().find("16 or more"), std::string::npos) << r.ToString();
  ShipperOptions so = h.ShipperOpts(1);
  so.security.key = "short";
  EpochShipper shipper(so, SystemClock());
  EXPECT_EQ(h.StartShipper(shipper).code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::replicator::shipper_testing
