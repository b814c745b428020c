// The standby's resume point across epochs: what a full epoch cut short, a replica file reopened, a live
// resync that has not settled yet and a version 1 peer leave it holding; bit flips and truncations anywhere.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fcntl.h>
#include <random>

#include "replicator/format.h"
#include "tests/replicator/stream_test_util.h"

namespace tandem::replicator::testing {
namespace {

TEST(ReplicaResumeTest, FullEpochCutShortLeavesTheOldResumePointAndReplica) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica, 7);
  const auto before = Snapshot(*replica.image());
  // A new primary generation starts a full epoch of different memory and dies half way through it.
  FakePrimary other(SmallVm(), 1, 0x7777);
  for (uint32_t b = 0; b < 2; ++b) memset(other.mirror().Block(b).data(), 0x3c, other.mirror().Block(b).size());
  std::vector<uint8_t> full = other.Full(1);
  auto records = SplitRecords(full);
  ASSERT_GE(records.size(), 3u);
  std::vector<uint8_t> stream = other.Hello();
  for (size_t i = 0; i + 1 < records.size(); ++i) stream.insert(stream.end(), records[i].begin(), records[i].end());
  FeedResult r = Feed(replica, stream);  // everything but EPOCH_END
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();  // the stream just ended
  EXPECT_TRUE(r.acks.empty());
  auto point = replica.resume_point();
  ASSERT_TRUE(point.has_value());
  EXPECT_EQ(point->epoch, 7u);
  EXPECT_EQ(point->device_state, primary.device_state());
  EXPECT_EQ(Snapshot(*replica.image()), before);
  // The complete full epoch then replaces everything.
  ASSERT_TRUE(Feed(replica, Concat({other.Hello(), full})).status.ok());
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(other.mirror()));
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST(ReplicaResumeTest, FullEpochCutShortOnAnEmptyStandbyLeavesNoResumePointAndTheNextOneCompletes) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  std::vector<uint8_t> full = primary.Full(1);
  auto records = SplitRecords(full);
  ASSERT_GE(records.size(), 3u);
  std::vector<uint8_t> stream = primary.Hello();
  for (size_t i = 0; i + 1 < records.size(); ++i) stream.insert(stream.end(), records[i].begin(), records[i].end());
  FeedResult r = Feed(replica, stream);  // everything but EPOCH_END: its pages are written, nothing is resumable
  EXPECT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_TRUE(r.acks.empty());
  EXPECT_FALSE(replica.resume_point().has_value());
  ASSERT_TRUE(Feed(replica, Concat({primary.Hello(), full})).status.ok());
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  ASSERT_TRUE(replica.resume_point().has_value());
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

// Property: every single-bit flip anywhere in a valid stream (HELLO + one delta epoch) is refused, and the
// replica is byte for byte what it was.
TEST(ReplicaResumeTest, EverySingleBitFlipIsRejectedAndNothingApplied) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const auto before = Snapshot(*replica.image());
  const std::vector<uint8_t> stream = Concat({primary.Hello(), primary.NextDelta(2)});
  ASSERT_LT(stream.size(), 8000u) << "keep the property test small";
  std::vector<uint8_t> flipped = stream;
  for (size_t bit = 0; bit < stream.size() * 8; ++bit) {
    flipped[bit / 8] ^= uint8_t(1u << (bit % 8));
    FeedResult r = Feed(replica, flipped);
    flipped[bit / 8] ^= uint8_t(1u << (bit % 8));
    ASSERT_FALSE(r.status.ok()) << "flip of bit " << bit << " accepted";
    ASSERT_NE(r.error, DecodeError::kNone) << "bit " << bit << ": " << r.status.ToString();
    for (const AckMessage& a : r.acks) ASSERT_NE(a.status, AckStatus::kOk) << "bit " << bit;
    ASSERT_EQ(replica.counters().last_applied, 1u) << "bit " << bit;
    if (bit % 97 == 0) {
      ASSERT_EQ(Snapshot(*replica.image()), before) << "bit " << bit;
    }
  }
  EXPECT_EQ(Snapshot(*replica.image()), before);
  // The intact stream still applies.
  FeedResult ok = Feed(replica, stream);
  ASSERT_TRUE(ok.status.ok()) << ok.status.ToString();
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

// Property: every truncation of a valid stream applies nothing.
TEST(ReplicaResumeTest, EveryTruncationAppliesNothing) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const auto before = Snapshot(*replica.image());
  const std::vector<uint8_t> stream = Concat({primary.Hello(), primary.NextDelta(2)});
  for (size_t len = 0; len < stream.size(); ++len) {
    FeedResult r = Feed(replica, std::span<const uint8_t>(stream.data(), len));
    ASSERT_EQ(replica.counters().last_applied, 1u) << "prefix of " << len << " bytes";
    // Cut between records (a clean end) or inside one; nothing else.
    ASSERT_TRUE(r.error == DecodeError::kNone || r.error == DecodeError::kTruncated)
        << "prefix of " << len << " bytes: " << DecodeErrorName(r.error);
    EXPECT_EQ(r.error == DecodeError::kNone, r.status.ok()) << "prefix of " << len << " bytes";
    for (const AckMessage& a : r.acks) ASSERT_NE(a.status, AckStatus::kOk) << "prefix of " << len << " bytes";
  }
  EXPECT_EQ(Snapshot(*replica.image()), before);
  EXPECT_EQ(replica.counters().epochs_rejected, 0u);
  ASSERT_TRUE(Feed(replica, stream).status.ok());
  EXPECT_EQ(replica.counters().last_applied, 2u);
}

TEST(ReplicaResumeTest, FullEpochRewritesAReplicaFileAndKeepsItsContentsAcrossReplicas) {
  char path[] = "/tmp/tandem-replica-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  FakePrimary primary;
  ReplicaOptions o = Options();
  o.file_backed_blocks = {{"mem", path}};
  {
    Replica replica(o, SystemClock());
    memset(primary.mirror().Block(0).data(), 0x42, kPageSize);
    Seed(primary, replica);
  }
  {
    // A new standby process maps the same file: the memory is there before any epoch arrives.
    auto image = RamImage::Create(SmallVm(), {{"mem", path}});
    ASSERT_TRUE(image.ok());
    EXPECT_EQ((*image)->Block(0)[0], 0x42);
    EXPECT_EQ(0, memcmp((*image)->Block(0).data(), primary.mirror().Block(0).data(), 16 * kPageSize));
  }
  unlink(path);
}


// A resync read from the running guest (EpochShipper with QEMU's RAM file) mixes checkpoints until the epochs
// submitted while it was read are applied: the standby applies and acknowledges it but offers no resume point,
// neither for a failover nor in its HELLO, until the epoch it settles at.
TEST(ReplicaResumeTest, LiveResyncIsNoResumePointUntilTheEpochItSettlesAtIsApplied) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.LiveFull(1, 2)}));  // exact at epoch 3
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 1u);
  EXPECT_EQ(r.acks[0].epoch, 1u);
  EXPECT_FALSE(replica.resume_point().has_value());
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  r = Feed(replica, Concat({primary.Hello(), primary.NextDelta(2)}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.hellos.size(), 1u);
  EXPECT_FALSE(r.hellos[0].has_resume_point) << "a settling replica must not be offered for a catch-up";
  EXPECT_FALSE(replica.resume_point().has_value());
  // Epochs 2.. still continue epoch 1: the replica is not offered, but it takes them.
  ASSERT_EQ(r.acks.size(), 1u);
  EXPECT_EQ(r.acks[0].status, AckStatus::kOk);
  r = Feed(replica, Concat({primary.Hello(), primary.NextDelta(3)}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_TRUE(replica.resume_point().has_value());
  EXPECT_EQ(replica.resume_point()->epoch, 3u);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  r = Feed(replica, primary.Hello());
  ASSERT_EQ(r.hellos.size(), 1u);
  EXPECT_TRUE(r.hellos[0].has_resume_point);
  EXPECT_EQ(r.hellos[0].last_applied, 3u);
}

// A full epoch that is not live ends the settling at once (it is exact as of its own checkpoint).
TEST(ReplicaResumeTest, FullEpochThatIsNotLiveEndsASettlingReplica) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  ASSERT_TRUE(Feed(replica, Concat({primary.Hello(), primary.LiveFull(1, 5)})).status.ok());
  EXPECT_FALSE(replica.resume_point().has_value());
  ASSERT_TRUE(Feed(replica, Concat({primary.Hello(), primary.NextDelta(2), primary.Full(2)})).status.ok());
  ASSERT_TRUE(replica.resume_point().has_value());
  EXPECT_EQ(replica.resume_point()->epoch, 2u);
}

// Version 2 only adds the live flag and settles_after: a version 1 primary's stream (which never sets them) is
// read as before, and the standby answers it in version 1.
TEST(ReplicaResumeTest, Version1StreamIsStillReadAndAnsweredInVersion1) {
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  FeedResult r = Feed(replica, Concat({primary.Hello(1), primary.Full(1), primary.NextDelta(2)}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.hellos.size(), 1u);
  EXPECT_EQ(r.hellos[0].version, 1u);
  ASSERT_TRUE(replica.resume_point().has_value());
  EXPECT_EQ(replica.resume_point()->epoch, 2u);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  // A live epoch is not version 1: refused on a version 1 connection.
  FakePrimary other(SmallVm(), 1, 0x5678);
  r = Feed(replica, Concat({other.Hello(1), other.LiveFull(1, 1)}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kBadField);
  EXPECT_EQ(replica.resume_point()->epoch, 2u);
}

TEST(ReplicaResumeTest, UnknownEpochFlagsAndInconsistentSettlesAfterAreRefused) {
  uint8_t payload[kEpochBeginSize];
  EpochBeginMessage parsed;
  SerializeEpochBegin({5, 1, true, 0, true}, payload);
  ASSERT_TRUE(ParseEpochBegin(payload, &parsed).ok());
  EXPECT_TRUE(parsed.live);
  StoreLe32(payload + 16, kEpochFull | kEpochLive | (1u << 3));  // a flag this version does not know
  EXPECT_EQ(ParseEpochBegin(payload, &parsed).error(), DecodeError::kBadField);

  // EPOCH_END's settles_after must be set exactly for a live epoch (the record re-checksummed: only the field
  // is wrong).
  auto with_settles_after = [](std::vector<uint8_t> stream, uint32_t settles_after) {
    std::vector<std::vector<uint8_t>> records = SplitRecords(stream);
    std::vector<uint8_t>& end = records.back();
    EXPECT_EQ(LoadLe32(end.data()), uint32_t(RecordType::kEpochEnd));
    StoreLe32(end.data() + kRecordHeaderSize + 44, settles_after);
    FinishRecord(RecordType::kEpochEnd, end.data(), uint32_t(end.size() - kRecordHeaderSize));
    std::vector<uint8_t> out;
    for (const auto& rec : records) out.insert(out.end(), rec.begin(), rec.end());
    return out;
  };
  FakePrimary primary;
  Replica replica(Options(), SystemClock());
  Seed(primary, replica);
  const auto before = Snapshot(*replica.image());
  FeedResult r = Feed(replica, Concat({primary.Hello(), with_settles_after(primary.NextDelta(2), 1)}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kBadField);
  r = Feed(replica, Concat({primary.Hello(), with_settles_after(primary.LiveFull(2, 1), 0)}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kBadField);
  EXPECT_EQ(Snapshot(*replica.image()), before);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

}  // namespace
}  // namespace tandem::replicator::testing
