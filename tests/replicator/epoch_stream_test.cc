// The replication stream end to end without a network: epochs encoded by the primary's encoder, fed to the
// standby's Replica, and every kind of bad input refused with nothing applied.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <random>
#include <fcntl.h>

#include "replicator/format.h"
#include "tests/replicator/stream_test_util.h"

namespace tandem::replicator::testing {
namespace {

TEST(EpochStreamTest, FullThenDeltaEpochsReproduceThePrimaryRamAndDeviceState) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  FeedResult hello = Feed(replica, primary.Hello());
  ASSERT_EQ(hello.hellos.size(), 1u);
  EXPECT_TRUE(hello.hellos[0].has_resume_point);
  EXPECT_EQ(hello.hellos[0].last_applied, 1u);
  EXPECT_EQ(hello.hellos[0].generation, 0x1234u);

  std::vector<uint8_t> stream = primary.Hello();
  for (uint64_t n = 2; n <= 12; ++n) {
    std::vector<uint8_t> e = primary.NextDelta(n);
    stream.insert(stream.end(), e.begin(), e.end());
  }
  FeedResult r = Feed(replica, stream);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 11u);
  for (size_t i = 0; i < r.acks.size(); ++i) {
    EXPECT_EQ(r.acks[i].epoch, i + 2);
    EXPECT_EQ(r.acks[i].status, AckStatus::kOk);
  }
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  auto point = replica.resume_point();
  ASSERT_TRUE(point.has_value());
  EXPECT_EQ(point->epoch, 12u);
  EXPECT_EQ(point->device_state, primary.device_state());
  EXPECT_EQ(point->descriptor.vm_name, "vm1");
  EXPECT_EQ(point->descriptor.ram_blocks, SmallVm().ram_blocks);
  EXPECT_EQ(point->descriptor.qemu_vmdesc_json, SmallVm().qemu_vmdesc_json);
  EXPECT_EQ(replica.counters().epochs_applied, 12u);
}

class EpochStreamCodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(EpochStreamCodecTest, EpochsRoundTripWithEveryCompression) {
  PageCodecOptions codec;
  codec.compression = GetParam();
  FakePrimary primary(SmallVm(), 1, 0x1234, codec);
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  std::vector<uint8_t> stream = primary.Hello();
  uint64_t compressed = 0;
  for (uint64_t n = 2; n <= 9; ++n) {
    std::vector<uint8_t> e = primary.NextDelta(n);
    const auto& by = primary.encoder().last_epoch_stats().by_encoding;
    compressed += by[int(PageEncoding::kXorLz4)] + by[int(PageEncoding::kLz4)] + by[int(PageEncoding::kXorZstd)] +
                  by[int(PageEncoding::kZstd)];
    stream.insert(stream.end(), e.begin(), e.end());
  }
  if (GetParam() == Compression::kNone) {
    EXPECT_EQ(compressed, 0u);
  } else {
    EXPECT_GT(compressed, 0u);
  }
  FeedResult r = Feed(replica, stream);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(replica.counters().last_applied, 9u);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

INSTANTIATE_TEST_SUITE_P(AllCompressions, EpochStreamCodecTest,
                         ::testing::Values(Compression::kNone, Compression::kLz4, Compression::kZstd));

TEST(EpochStreamTest, EveryPageEncodingIsUsedAndDecodes) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  std::vector<uint8_t> stream = primary.Hello();
  uint64_t seen[8] = {};
  for (uint64_t n = 2; n <= 5; ++n) {
    std::vector<uint8_t> e = primary.NextDelta(n);
    for (int i = 0; i < 8; ++i) seen[i] += primary.encoder().last_epoch_stats().by_encoding[i];
    stream.insert(stream.end(), e.begin(), e.end());
  }
  EXPECT_GT(seen[int(PageEncoding::kXorLz4)], 0u);
  EXPECT_GT(seen[int(PageEncoding::kFilled)], 0u);
  EXPECT_GT(seen[int(PageEncoding::kUnchanged)], 0u);
  EXPECT_GT(seen[int(PageEncoding::kRaw)], 0u);
  ASSERT_TRUE(Feed(replica, stream).status.ok());
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

// Sparse and unchanged pages are staged relative to the replica as it was before the epoch; a page listed again
// later in the same epoch must still end up as its last entry says.
TEST(EpochStreamTest, PageListedTwiceInOneEpochEndsAsItsLastEntry) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  std::vector<uint8_t> stream = primary.Hello();
  const auto block0 = primary.mirror().Block(0);
  std::mt19937_64 rng(5);
  Epoch e;
  e.Reset(2, false);
  // Page 1: rewritten (raw), then listed again with one word changed from the old copy (sparse).
  uint8_t* p = e.PageBuffer(0, kPageSize);
  for (size_t i = 0; i < kPageSize; ++i) p[i] = uint8_t(rng());
  p = e.PageBuffer(0, kPageSize);
  memcpy(p, block0.data() + kPageSize, kPageSize);
  p[80] ^= 0x11;
  // Page 2: two different sparse edits; only the second one's word may change.
  for (size_t word : {3, 9}) {
    p = e.PageBuffer(0, 2 * kPageSize);
    memcpy(p, block0.data() + 2 * kPageSize, kPageSize);
    p[word * 8] ^= 0x22;
  }
  // Page 3: rewritten, then listed as it was before the epoch (unchanged).
  p = e.PageBuffer(0, 3 * kPageSize);
  for (size_t i = 0; i < kPageSize; ++i) p[i] = uint8_t(rng());
  memcpy(e.PageBuffer(0, 3 * kPageSize), block0.data() + 3 * kPageSize, kPageSize);
  const std::vector<uint8_t> delta = primary.Delta(e);
  const auto& by = primary.encoder().last_epoch_stats().by_encoding;
  EXPECT_EQ(by[int(PageEncoding::kSparse)], 3u);
  EXPECT_EQ(by[int(PageEncoding::kUnchanged)], 1u);
  stream.insert(stream.end(), delta.begin(), delta.end());
  ASSERT_TRUE(Feed(replica, stream).status.ok());
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

TEST(EpochStreamTest, StreamWrittenToAFileReplaysIdentically) {
  FakePrimary primary;
  char path[] = "/tmp/tandem-stream-XXXXXX";
  int raw = mkstemp(path);
  ASSERT_GE(raw, 0);
  {
    auto file = MakeFileTransport(UniqueFd(raw));
    TransportSink sink(file.get(), 1000);
    HelloMessage h;
    h.term = 1;
    h.generation = 0x1234;
    h.descriptor = SmallVm();
    ASSERT_TRUE(primary.encoder().EncodeHello(h, &sink).ok());
    ASSERT_TRUE(primary.encoder().EncodeFull(1, 1, primary.mirror(), primary.device_state(), &sink).ok());
    Epoch e;
    for (uint64_t n = 2; n <= 4; ++n) {
      primary.MakeEpoch(n, &e);
      ASSERT_TRUE(primary.encoder().EncodeEpoch(e, 1, &primary.mirror(), &sink).ok());
      ASSERT_TRUE(primary.mirror().Apply(e).ok());
    }
    ASSERT_TRUE(sink.Flush().ok());
  }
  Replica replica(Options(), SystemClock());
  replica.StartSession();
  auto file = MakeFileTransport(UniqueFd(::open(path, O_RDONLY | O_CLOEXEC)));
  RecordReader reader(file.get());
  RecordView rec;
  Status st;
  int records = 0;
  while ((st = reader.Next(-1, 1000, &rec)).ok()) {
    std::vector<uint8_t> reply;
    ASSERT_TRUE(replica.OnRecord(rec, &reply).ok());
    ++records;
  }
  unlink(path);
  EXPECT_TRUE(st.IsClosed());
  EXPECT_EQ(st.message(), "end of stream");
  EXPECT_GE(records, 1 + 4 * 3);
  EXPECT_EQ(replica.counters().last_applied, 4u);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

TEST(EpochStreamTest, ChecksumMismatch) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const auto before = Snapshot(*replica.image());
  std::vector<uint8_t> stream = Concat({primary.Hello(), primary.NextDelta(2)});
  stream[stream.size() - kEpochEndSize - kRecordHeaderSize - 5] ^= 0x01;  // inside the last record before END
  FeedResult r = Feed(replica, stream);
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kChecksumMismatch);
  EXPECT_EQ(r.acks.back().epoch, 2u);
  EXPECT_EQ(Snapshot(*replica.image()), before);
  EXPECT_EQ(replica.counters().epochs_rejected, 1u);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST(EpochStreamTest, BadLength) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const auto before = Snapshot(*replica.image());
  std::vector<uint8_t> hello = primary.Hello();
  std::vector<uint8_t> epoch = primary.NextDelta(2);
  // A length past the limit is refused from the header alone.
  std::vector<uint8_t> huge = epoch;
  StoreLe32(huge.data() + 4, kMaxRecordPayload + 1);
  FeedResult r = Feed(replica, Concat({hello, huge}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kBadLength);
  // A length that lies inside the limit frames the wrong bytes: the checksum catches it.
  std::vector<uint8_t> shorter = epoch;
  StoreLe32(shorter.data() + 4, kEpochBeginSize - 1);
  r = Feed(replica, Concat({hello, shorter}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kChecksumMismatch);
  EXPECT_EQ(Snapshot(*replica.image()), before);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST(EpochStreamTest, TruncatedTrailingRecordIsNeverApplied) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  std::vector<uint8_t> e2 = primary.NextDelta(2);
  const auto after2 = Snapshot(primary.mirror());
  std::vector<uint8_t> e3 = primary.NextDelta(3);
  std::vector<uint8_t> stream = Concat({primary.Hello(), e2, e3});
  stream.resize(stream.size() - 3);  // EPOCH_END of epoch 3 cut short
  FeedResult r = Feed(replica, stream);
  EXPECT_TRUE(r.status.IsClosed()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 1u);  // epoch 2 only; nobody left to tell about 3
  EXPECT_EQ(r.acks[0].epoch, 2u);
  EXPECT_EQ(replica.resume_point()->epoch, 2u);
  EXPECT_EQ(Snapshot(*replica.image()), after2);
  EXPECT_EQ(replica.counters().epochs_rejected, 0u);
}

TEST(EpochStreamTest, ReorderedRecords) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const auto before = Snapshot(*replica.image());
  // An epoch with two PAGES records: swapping them keeps every record valid, the chain hash does not.
  Epoch e;
  primary.MakeEpoch(2, &e);
  for (uint32_t i = 0; i < kMaxPagesPerRecord; ++i) e.FilledPage(0, (i % 16) * kPageSize, uint8_t(i));
  std::vector<uint8_t> hello = primary.Hello();
  auto records = SplitRecords(primary.Delta(e));
  ASSERT_GE(records.size(), 4u);
  ASSERT_EQ(LoadLe32(records[1].data()), uint32_t(RecordType::kPages));
  ASSERT_EQ(LoadLe32(records[2].data()), uint32_t(RecordType::kPages));
  std::swap(records[1], records[2]);
  std::vector<uint8_t> stream = hello;
  for (const auto& rec : records) stream.insert(stream.end(), rec.begin(), rec.end());
  ExpectRejected(Feed(replica, stream), AckStatus::kCorruption, DecodeError::kRecordChainMismatch);
  // A PAGES record before EPOCH_BEGIN.
  std::swap(records[0], records[1]);
  stream = hello;
  for (const auto& rec : records) stream.insert(stream.end(), rec.begin(), rec.end());
  ExpectRejected(Feed(replica, stream), AckStatus::kCorruption, DecodeError::kUnexpectedRecord);
  // An epoch before HELLO.
  ExpectRejected(Feed(replica, records[1]), AckStatus::kCorruption, DecodeError::kUnexpectedRecord);
  EXPECT_EQ(Snapshot(*replica.image()), before);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST(EpochStreamTest, ReplayedEpoch) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  std::vector<uint8_t> e2 = primary.NextDelta(2);
  ASSERT_TRUE(Feed(replica, Concat({primary.Hello(), e2})).status.ok());
  const auto after2 = Snapshot(*replica.image());
  // The same epoch again on a new connection.
  ExpectRejected(Feed(replica, Concat({primary.Hello(), e2})), AckStatus::kReplay, DecodeError::kReplayedEpoch);
  // An epoch that skips one.
  primary.NextDelta(3);
  std::vector<uint8_t> e4 = primary.NextDelta(4);
  FeedResult r = Feed(replica, Concat({primary.Hello(), e4}));
  ExpectRejected(r, AckStatus::kReplay, DecodeError::kOutOfOrderEpoch);
  EXPECT_EQ(r.acks.back().epoch, 4u);
  // A full epoch older than the last applied one.
  ExpectRejected(Feed(replica, Concat({primary.Hello(), primary.Full(1)})), AckStatus::kReplay,
                 DecodeError::kReplayedEpoch);
  EXPECT_EQ(Snapshot(*replica.image()), after2);
  EXPECT_EQ(replica.resume_point()->epoch, 2u);
  EXPECT_EQ(replica.counters().epochs_rejected, 3u);
}

// Epochs 2, 3 and 4 merged into one (the primary's queue overflowed while it could not ship) take the standby
// from epoch 1 to epoch 4 in one step.
TEST(EpochStreamTest, MergedEpochTakesTheStandbyOverEveryCheckpointItHolds) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  Epoch e2, e3, e4;
  primary.MakeEpoch(2, &e2);
  primary.MakeEpoch(3, &e3);
  primary.MakeEpoch(4, &e4);
  ASSERT_TRUE(e2.Absorb(e3).ok());
  ASSERT_TRUE(e2.Absorb(e4).ok());
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.Delta(e2), primary.NextDelta(5)}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 2u);
  EXPECT_EQ(r.acks[0].epoch, 4u);
  EXPECT_EQ(r.acks[1].epoch, 5u);
  EXPECT_EQ(replica.resume_point()->epoch, 5u);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

TEST(EpochStreamTest, MergedEpochThatDoesNotContinueTheLastApplied) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const auto before = Snapshot(*replica.image());
  Epoch e3, e4;
  primary.MakeEpoch(3, &e3);
  primary.MakeEpoch(4, &e4);
  ASSERT_TRUE(e3.Absorb(e4).ok());  // holds 3..4, but the standby is at 1
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.Delta(e3)}));
  ExpectRejected(r, AckStatus::kReplay, DecodeError::kOutOfOrderEpoch);
  EXPECT_EQ(Snapshot(*replica.image()), before);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST(EpochStreamTest, EpochBeginThatMergesMoreThanPrecedeItOrMergesIntoAFullEpoch) {
  uint8_t payload[kEpochBeginSize];
  EpochBeginMessage parsed;
  SerializeEpochBegin({5, 1, false, 4}, payload);  // 1..5: fine
  ASSERT_TRUE(ParseEpochBegin(payload, &parsed).ok());
  EXPECT_EQ(parsed.merged, 4u);
  SerializeEpochBegin({5, 1, false, 5}, payload);  // would start at epoch 0, before any delta
  EXPECT_EQ(ParseEpochBegin(payload, &parsed).error(), DecodeError::kBadField);
  SerializeEpochBegin({5, 1, true, 1}, payload);
  EXPECT_EQ(ParseEpochBegin(payload, &parsed).error(), DecodeError::kBadField);
}

TEST(EpochStreamTest, FullEpochRepeatingTheAppliedOneIsAccepted) {
  // A resync after a connection broke just after the standby applied the primary's latest epoch.
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  ASSERT_TRUE(Feed(replica, Concat({primary.Hello(), primary.NextDelta(2)})).status.ok());
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.Full(2), primary.NextDelta(3)}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(replica.resume_point()->epoch, 3u);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

TEST(EpochStreamTest, DeltaEpochWithoutAFullOneFirst) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.NextDelta(1)}));
  ExpectRejected(r, AckStatus::kReplay, DecodeError::kOutOfOrderEpoch);
  EXPECT_FALSE(replica.resume_point().has_value());
  // A new primary generation: its deltas are not based on what the standby holds either.
  Seed(primary, replica, 1);
  FakePrimary other(SmallVm(), 1, 0x9999);
  r = Feed(replica, Concat({other.Hello(), other.NextDelta(2)}));
  ExpectRejected(r, AckStatus::kReplay, DecodeError::kOutOfOrderEpoch);
  // But its full epoch replaces everything, whatever its number.
  r = Feed(replica, Concat({other.Hello(), other.Full(0)}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(replica.resume_point()->epoch, 0u);
}

TEST(EpochStreamTest, UnknownVersion) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  FeedResult r = Feed(replica, Concat({primary.Hello(kProtocolVersion + 1), primary.Full(1)}));
  ExpectRejected(r, AckStatus::kUnsupported, DecodeError::kUnknownVersion);
  EXPECT_TRUE(r.status.IsUnsupported());
  EXPECT_FALSE(replica.resume_point().has_value());
}

TEST(EpochStreamTest, OldTerm) {
  FakePrimary newer(SmallVm(), 2, 0x2222);
  Replica replica(Options(), SystemClock());
  Seed(newer, replica);
  const auto before = Snapshot(*replica.image());
  FakePrimary older(SmallVm(), 1, 0x1111);
  FeedResult r = Feed(replica, Concat({older.Hello(), older.Full(5)}));
  ExpectRejected(r, AckStatus::kOldTerm, DecodeError::kOldTerm);
  EXPECT_EQ(Snapshot(*replica.image()), before);
  // An EPOCH_BEGIN whose term differs from its HELLO's.
  std::vector<uint8_t> hello = newer.Hello();
  auto records = SplitRecords(newer.Full(2));
  EpochBeginMessage begin{2, 1, true};
  uint8_t payload[kEpochBeginSize];
  SerializeEpochBegin(begin, payload);
  records[0].clear();
  AppendRecord(RecordType::kEpochBegin, payload, &records[0]);
  std::vector<uint8_t> stream = hello;
  for (const auto& rec : records) stream.insert(stream.end(), rec.begin(), rec.end());
  ExpectRejected(Feed(replica, stream), AckStatus::kCorruption, DecodeError::kTermMismatch);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST(EpochStreamTest, WrongVmName) {
  FakePrimary primary(SmallVm("other-vm"));
  Replica replica(Options("vm1"), SystemClock());
  ExpectRejected(Feed(replica, Concat({primary.Hello(), primary.Full(1)})), AckStatus::kMismatch,
                 DecodeError::kWrongPeer);
  EXPECT_EQ(replica.image(), nullptr);
}

TEST(EpochStreamTest, PageHashMismatchAfterDecode) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const auto before = Snapshot(*replica.image());
  primary.encoder().CorruptNextEpoch();
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.NextDelta(2)}));
  EXPECT_FALSE(r.status.ok());
  ASSERT_FALSE(r.acks.empty());
  EXPECT_EQ(r.acks.back().status, AckStatus::kCorruption);
  EXPECT_EQ(r.acks.back().epoch, 2u);
  // Either the page no longer decodes or it decodes to the wrong bytes; never a record checksum error.
  EXPECT_TRUE(r.error == DecodeError::kPageHashMismatch || r.error == DecodeError::kDecompressFailed)
      << DecodeErrorName(r.error) << ": " << r.acks.back().reason;
  EXPECT_EQ(Snapshot(*replica.image()), before);
}

// A page rebuilt from the replica's copy that fails its hash says the replica differs from what the primary
// shipped (here: a byte of it gone bad on the standby). The standby keeps its resume point to fail over to, but
// offers it for no catch-up and takes no delta epoch until a full epoch has replaced the replica.
TEST(EpochStreamTest, ReplicaThatFailsARebuiltPagesHashOffersNoEpochUntilAFullOne) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const_cast<RamImage*>(replica.image())->PageBuffer(0, 0)[100] ^= 1;  // behind the replica's back
  Epoch e;
  e.Reset(2, false);
  uint8_t* p = e.PageBuffer(0, 0);
  memcpy(p, primary.mirror().Page(0, 0), kPageSize);
  p[8] ^= 0xff;  // one word changed: sent sparse, rebuilt from the damaged copy
  ExpectRejected(Feed(replica, Concat({primary.Hello(), primary.Delta(e)})), AckStatus::kCorruption,
                 DecodeError::kPageHashMismatch);

  FeedResult hello = Feed(replica, primary.Hello());
  ASSERT_EQ(hello.hellos.size(), 1u);
  EXPECT_FALSE(hello.hellos[0].has_resume_point);
  ASSERT_TRUE(replica.resume_point().has_value());
  EXPECT_EQ(replica.resume_point()->epoch, 1u) << "kept to fail over to";
  ExpectRejected(Feed(replica, Concat({primary.Hello(), primary.NextDelta(2)})), AckStatus::kReplay,
                 DecodeError::kOutOfOrderEpoch);

  FeedResult full = Feed(replica, Concat({primary.Hello(), primary.Full(3)}));
  ASSERT_TRUE(full.status.ok()) << full.status.ToString();
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  EXPECT_TRUE(Feed(replica, primary.Hello()).hellos.at(0).has_resume_point);
}

// A page that fails its hash on its own (raw: nothing of the replica in it) says nothing about the replica, which
// is still the epoch the standby holds: it is offered for a catch-up as before.
TEST(EpochStreamTest, RawPageHashMismatchAfterDecode) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  Epoch e;
  e.Reset(2, false);
  std::mt19937_64 rng(5);
  uint8_t* p = e.PageBuffer(0, 0);
  for (size_t i = 0; i < kPageSize; ++i) p[i] = uint8_t(rng());
  primary.encoder().CorruptNextEpoch();
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.Delta(e)}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kPageHashMismatch);
  FeedResult hello = Feed(replica, primary.Hello());
  ASSERT_EQ(hello.hellos.size(), 1u);
  EXPECT_TRUE(hello.hellos[0].has_resume_point);
  EXPECT_EQ(hello.hellos[0].last_applied, 1u);
}

TEST(EpochStreamTest, DeviceStateHashMismatch) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  Epoch e;
  e.Reset(2, false);
  e.device_state().assign(5000, 7);
  primary.encoder().CorruptNextEpoch();
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.Delta(e)}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kDeviceStateHashMismatch);
  EXPECT_EQ(replica.resume_point()->device_state, std::vector<uint8_t>(300, 0xd5));
}

TEST(EpochStreamTest, DiskWritesRecordIsUnsupported) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  auto records = SplitRecords(primary.NextDelta(2));
  std::vector<uint8_t> disk;
  AppendRecord(RecordType::kDiskWrites, std::vector<uint8_t>(64, 1), &disk);
  records.insert(records.begin() + 1, disk);
  std::vector<uint8_t> stream = primary.Hello();
  for (const auto& rec : records) stream.insert(stream.end(), rec.begin(), rec.end());
  ExpectRejected(Feed(replica, stream), AckStatus::kUnsupported, DecodeError::kUnsupportedRecord);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST(EpochStreamTest, UnknownRecordType) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  auto records = SplitRecords(primary.NextDelta(2));
  std::vector<uint8_t> odd;
  AppendRecord(static_cast<RecordType>(FourCc('T', 'Z', 'Z', 'Z')), std::vector<uint8_t>(8, 1), &odd);
  records.insert(records.begin() + 1, odd);
  std::vector<uint8_t> stream = primary.Hello();
  for (const auto& rec : records) stream.insert(stream.end(), rec.begin(), rec.end());
  ExpectRejected(Feed(replica, stream), AckStatus::kCorruption, DecodeError::kUnknownRecord);
}

TEST(EpochStreamTest, PageOutsideTheRamLayout) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  // The primary believes block 0 is larger than the standby's: it encodes without a base.
  Epoch e;
  e.Reset(2, false);
  e.FilledPage(0, 64 * kPageSize, 1);
  BufferSink sink;
  ASSERT_TRUE(primary.encoder().EncodeEpoch(e, 1, nullptr, &sink).ok());
  ExpectRejected(Feed(replica, Concat({primary.Hello(), sink.bytes})), AckStatus::kCorruption,
                 DecodeError::kPageOutsideLayout);
}

}  // namespace
}  // namespace tandem::replicator::testing
