// The guest's disk in the replication stream: an epoch's DISK_WRITES reach the standby's disk with that epoch's
// RAM and never without it; a torn, corrupt or unwritable one is refused with nothing applied; a crash mid-apply
// leaves the previous epoch's disk. Real files (the standby's journaled image), the Replica fed like the
// receiver feeds it; disk_resync_test.cc has the shipper and receiver over real sockets.
#include <gtest/gtest.h>

#include "disk/block_hash.h"
#include "disk/disk_writes.h"
#include "disk/replica.h"
#include "tests/disk/disk_test_util.h"
#include "tests/replicator/stream_test_util.h"

namespace tandem::replicator {
namespace {

using namespace testing;  // the replicator stream helpers
using disk::testing::FaultyFileSystem;
using disk::testing::Pattern;
using disk::testing::ReadWholeFile;
using disk::testing::TempDir;
using disk::testing::WriteWholeFile;

constexpr uint64_t kDisk = 1 << 20;

// Epoch `epoch`'s disk writes: data at a place of its own, and a zeroed range.
std::vector<uint8_t> DiskEpoch(uint64_t epoch, size_t bytes = 20000) {
  disk::DiskWritesEncoder enc(kDisk);
  enc.AddData((epoch * 40000) % (kDisk - bytes), Pattern(bytes, uint8_t(epoch)));
  enc.Add(disk::WriteKind::kZero, 900000 + epoch * 512, 512);
  return enc.Finish(epoch);
}

std::vector<uint8_t> NoDiskWrites(uint64_t epoch) { return disk::DiskWritesEncoder(kDisk).Finish(epoch); }

// What the image holds after `payload`.
std::vector<uint8_t> Applied(std::vector<uint8_t> image, const std::vector<uint8_t>& payload) {
  auto d = disk::DecodeDiskWrites(payload);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  for (const disk::DiskWrite& w : d->writes) {
    if (w.kind == disk::WriteKind::kData) {
      std::copy(w.data.begin(), w.data.end(), image.begin() + long(w.offset));
    } else {
      std::fill_n(image.begin() + long(w.offset), w.length, 0);
    }
  }
  return image;
}

class DiskReplicationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    image_path_ = dir_ / "disk.raw";
    initial_ = Pattern(kDisk, 42);
    WriteWholeFile(image_path_, initial_);
  }

  std::unique_ptr<disk::DiskReplica> OpenDisk(disk::FileSystem* fs = disk::DefaultFileSystem()) {
    disk::DiskReplicaOptions o;
    o.image_path = image_path_;
    auto r = disk::DiskReplica::Open(o, fs);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  ReplicaOptions DiskOptions(disk::DiskReplica* disk) {
    ReplicaOptions o = Options();
    o.disk = disk;
    return o;
  }

  // The standby took full epoch 1 (its disk as it is: no writes) from `primary`.
  void SeedWithDisk(FakePrimary& primary, Replica& replica) {
    FeedResult r = Feed(replica, Concat({primary.Hello(kProtocolVersion, true), primary.Full(1, NoDiskWrites(1))}));
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    ASSERT_EQ(r.acks.size(), 1u);
    EXPECT_EQ(r.acks[0].status, AckStatus::kOk) << r.acks[0].reason;
    ASSERT_FALSE(r.disk_hashes.empty()) << "a standby with a disk answers with its block hashes";
  }

  // Delta epoch `number` of `primary` carrying `disk_writes`.
  std::vector<uint8_t> DeltaWithDisk(FakePrimary& primary, uint64_t number, std::vector<uint8_t> disk_writes) {
    Epoch e;
    primary.MakeEpoch(number, &e);
    e.disk_writes() = std::move(disk_writes);
    return primary.Delta(e);
  }

  TempDir dir_;
  std::string image_path_;
  std::vector<uint8_t> initial_;
};

TEST_F(DiskReplicationTest, WritesOfEpochNAreAppliedWithEpochNAndNotBefore) {
  auto disk = OpenDisk();
  Replica replica(DiskOptions(disk.get()), SystemClock());
  FakePrimary primary;
  SeedWithDisk(primary, replica);
  EXPECT_EQ(ReadWholeFile(image_path_), initial_);

  const std::vector<uint8_t> two = DiskEpoch(2), three = DiskEpoch(3);
  const std::vector<uint8_t> epoch2 = DeltaWithDisk(primary, 2, two);
  const std::vector<uint8_t> epoch3 = DeltaWithDisk(primary, 3, three);
  // Epoch 3 arrives up to, not including, its EPOCH_END (the connection dies there): only epoch 2 applies.
  std::vector<uint8_t> torn3(epoch3.begin(), epoch3.end() - long(kRecordHeaderSize + kEpochEndSize));
  FeedResult r = Feed(replica, Concat({primary.Hello(kProtocolVersion, true), epoch2, torn3}));
  ASSERT_EQ(r.acks.size(), 1u);
  EXPECT_EQ(r.acks[0].epoch, 2u);
  EXPECT_EQ(replica.resume_point()->epoch, 2u);
  const std::vector<uint8_t> after2 = Applied(initial_, two);
  EXPECT_EQ(ReadWholeFile(image_path_), after2) << "the disk holds exactly epoch 2's writes";

  // Reconnected, epoch 3 whole: disk and RAM move to 3 together.
  r = Feed(replica, Concat({primary.Hello(kProtocolVersion, true), epoch3}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 1u);
  EXPECT_EQ(r.acks[0].status, AckStatus::kOk) << r.acks[0].reason;
  EXPECT_EQ(replica.resume_point()->epoch, 3u);
  EXPECT_EQ(ReadWholeFile(image_path_), Applied(after2, three));
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  EXPECT_EQ(replica.counters().disk_writes_applied, 4u);
}

TEST_F(DiskReplicationTest, ACorruptDiskWritesPayloadIsRefusedWithNothingApplied) {
  auto disk = OpenDisk();
  Replica replica(DiskOptions(disk.get()), SystemClock());
  FakePrimary primary;
  SeedWithDisk(primary, replica);
  const std::vector<uint8_t> ram_before = Snapshot(*replica.image());
  // An epoch of disk writes alone: the encoder's fault flips a bit inside the DISK_WRITES bytes after their
  // hashes were taken and before the record checksum, so only the payload's own hashes can catch it.
  Epoch e;
  e.Reset(2, false);
  e.disk_writes() = DiskEpoch(2);
  primary.encoder().CorruptNextEpoch();
  BufferSink sink;
  ASSERT_TRUE(primary.encoder().EncodeEpoch(e, primary.term(), &primary.mirror(), &sink).ok());
  FeedResult r = Feed(replica, Concat({primary.Hello(kProtocolVersion, true), sink.bytes}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kDiskWritesCorrupt);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
  EXPECT_EQ(Snapshot(*replica.image()), ram_before) << "RAM untouched";
  EXPECT_EQ(ReadWholeFile(image_path_), initial_) << "disk untouched";
}

TEST_F(DiskReplicationTest, ALostDiskWritesRecordIsRefusedWithNothingApplied) {
  auto disk = OpenDisk();
  Replica replica(DiskOptions(disk.get()), SystemClock());
  FakePrimary primary;
  SeedWithDisk(primary, replica);
  // 1.5 MiB of writes travel as two DISK_WRITES records; the second is lost on the way.
  const std::vector<uint8_t> big = [] {
    disk::DiskWritesEncoder enc(kDisk);
    enc.AddData(0, Pattern(kDisk - 4096, 9));
    enc.AddData(0, Pattern(kDisk / 2, 10));
    return enc.Finish(2);
  }();
  auto records = SplitRecords(DeltaWithDisk(primary, 2, big));
  size_t disk_records = 0, second = 0;
  for (size_t i = 0; i < records.size(); ++i) {
    if (LoadLe32(records[i].data()) == uint32_t(RecordType::kDiskWrites) && ++disk_records == 2) second = i;
  }
  ASSERT_EQ(disk_records, 2u);
  records.erase(records.begin() + long(second));
  std::vector<uint8_t> stream = primary.Hello(kProtocolVersion, true);
  for (const auto& rec : records) stream.insert(stream.end(), rec.begin(), rec.end());
  FeedResult r = Feed(replica, stream);
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kTotalsMismatch);  // EPOCH_END counted it
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
  EXPECT_EQ(ReadWholeFile(image_path_), initial_);
}

TEST_F(DiskReplicationTest, AnEpochWithoutItsDiskWritesIsRefused) {
  auto disk = OpenDisk();
  Replica replica(DiskOptions(disk.get()), SystemClock());
  FakePrimary primary;
  SeedWithDisk(primary, replica);
  FeedResult r = Feed(replica, Concat({primary.Hello(kProtocolVersion, true), primary.NextDelta(2)}));
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kDiskWritesOrder);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST_F(DiskReplicationTest, AStandbyDiskFullRefusesTheEpochClearlyAndAppliesNothing) {
  FaultyFileSystem fs;
  fs.space_bytes = 10000;  // the journal entry (20 KB of writes) does not fit
  auto disk = OpenDisk(&fs);
  Replica replica(DiskOptions(disk.get()), SystemClock());
  FakePrimary primary;
  SeedWithDisk(primary, replica);
  const std::vector<uint8_t> ram_before = Snapshot(*replica.image());
  FeedResult r = Feed(replica, Concat({primary.Hello(kProtocolVersion, true), DeltaWithDisk(primary, 2, DiskEpoch(2))}));
  ASSERT_FALSE(r.status.ok());
  ASSERT_EQ(r.acks.size(), 1u);
  EXPECT_EQ(r.acks[0].status, AckStatus::kInternal);
  EXPECT_EQ(r.acks[0].epoch, 2u);
  EXPECT_NE(r.acks[0].reason.find("standby disk full"), std::string::npos) << r.acks[0].reason;
  EXPECT_EQ(replica.resume_point()->epoch, 1u) << "the epoch is not acknowledged nor applied";
  EXPECT_EQ(Snapshot(*replica.image()), ram_before);
  EXPECT_EQ(ReadWholeFile(image_path_), initial_);
}

TEST_F(DiskReplicationTest, AKillMidApplyLeavesThePreviousEpochsDisk) {
  // Count the file operations one epoch's apply takes, then die before each of those up to the journal's
  // commit: after a restart (DiskReplica::Open) the image is the previous epoch's.
  const std::vector<uint8_t> two = DiskEpoch(2), three = DiskEpoch(3);
  for (int crash_at = 0;; ++crash_at) {
    WriteWholeFile(image_path_, initial_);
    ::unlink((image_path_ + ".journal").c_str());
    FaultyFileSystem fs;
    auto disk = OpenDisk(&fs);
    Replica replica(DiskOptions(disk.get()), SystemClock());
    FakePrimary primary;
    SeedWithDisk(primary, replica);
    FeedResult r = Feed(replica, Concat({primary.Hello(kProtocolVersion, true), DeltaWithDisk(primary, 2, two)}));
    ASSERT_EQ(r.acks.size(), 1u);
    const std::vector<uint8_t> epoch3 = DeltaWithDisk(primary, 3, three);
    fs.crash_after = fs.mutations() + crash_at;
    r = Feed(replica, Concat({primary.Hello(kProtocolVersion, true), epoch3}));
    const bool died = fs.crashed();
    disk.reset();
    auto reopened = OpenDisk();  // the restarted standby
    ASSERT_NE(reopened, nullptr);
    const std::vector<uint8_t> image = ReadWholeFile(image_path_);
    if (!died) {  // the apply finished before the crash point: past every step
      EXPECT_EQ(image, Applied(Applied(initial_, two), three));
      break;
    }
    // Whole epochs only: 2 (nothing of 3 acknowledged) or 3 (its journal had committed: replayed at Open, or
    // the crash came after the image was complete).
    EXPECT_TRUE(r.acks.empty() || r.acks[0].status != AckStatus::kOk) << "crash at step " << crash_at;
    const std::vector<uint8_t> epoch2_disk = Applied(initial_, two);
    const std::vector<uint8_t> epoch3_disk = Applied(epoch2_disk, three);
    EXPECT_TRUE(image == epoch2_disk || image == epoch3_disk) << "a partial epoch after a crash at step " << crash_at;
    if (reopened->recovery().replayed) {
      EXPECT_EQ(image, epoch3_disk) << "crash at step " << crash_at;
    }
    ASSERT_LT(crash_at, 50);
  }
}

TEST_F(DiskReplicationTest, ADiskOnOneSideOnlyIsAMismatch) {
  auto disk = OpenDisk();
  Replica with_disk(DiskOptions(disk.get()), SystemClock());
  FakePrimary primary;
  ExpectRejected(Feed(with_disk, Concat({primary.Hello(), primary.Full(1)})), AckStatus::kMismatch,
                 DecodeError::kWrongPeer);
  Replica without_disk(Options(), SystemClock());
  FeedResult r = Feed(without_disk, Concat({primary.Hello(kProtocolVersion, true), primary.Full(1, NoDiskWrites(1))}));
  ExpectRejected(r, AckStatus::kMismatch, DecodeError::kWrongPeer);
  EXPECT_NE(r.acks.back().reason.find("[disk]"), std::string::npos) << r.acks.back().reason;
}

TEST_F(DiskReplicationTest, TheStandbysHashesDescribeItsImage) {
  auto disk = OpenDisk();
  Replica replica(DiskOptions(disk.get()), SystemClock());
  FakePrimary primary;
  FeedResult r = Feed(replica, primary.Hello(kProtocolVersion, true));
  auto hashes = disk::DecodeBlockHashes(r.disk_hashes);
  ASSERT_TRUE(hashes.ok()) << hashes.status().ToString();
  EXPECT_EQ(hashes->disk_size, kDisk);
  disk::testing::WriteWholeFile(dir_ / "same.raw", initial_);
  auto same = disk::DefaultFileSystem()->Open(dir_ / "same.raw", disk::FileSystem::Mode::kReadOnly);
  ASSERT_TRUE(same.ok());
  auto mine = disk::HashBlocks(**same, hashes->block_size);
  ASSERT_TRUE(mine.ok());
  EXPECT_TRUE(disk::BlocksToSend(*mine, *hashes).empty());
}

}  // namespace
}  // namespace tandem::replicator
