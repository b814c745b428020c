// The RAM resync by page hashes (page_hashes.h, FORMAT.md "PAGE_HASHES"): the standby's hash list and its bad
// inputs, and the keeps epoch end to end through a real Replica: the replica equals the primary's RAM byte for
// byte after it, whatever it held before, and nothing is applied from an epoch that did not verify.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <set>

#include "replicator/page_hashes.h"
#include "stream_test_util.h"

namespace tandem::replicator::testing {
namespace {

// A layout large enough for several PAGE_HASHES records per block.
VmDescriptor BigVm() {
  VmDescriptor d = SmallVm();
  d.ram_blocks = {{"mem", (2 * kMaxPageHashesPerRecord + 100) * uint64_t{kPageSize}}, {"rom", 2 * kPageSize}};
  return d;
}

std::vector<uint8_t> Payload(const std::vector<uint8_t>& record) {
  return std::vector<uint8_t>(record.begin() + kRecordHeaderSize, record.end());
}

PageHashList SomeHashes(const VmDescriptor& d) {
  PageHashList list(d.ram_blocks.size());
  for (size_t b = 0; b < list.size(); ++b) {
    for (uint64_t p = 0; p < d.ram_blocks[b].size_bytes / kPageSize; ++p) list[b].push_back(p * 31 + b);
  }
  return list;
}

std::vector<std::vector<uint8_t>> Records(const PageHashList& list) {
  std::vector<uint8_t> stream;
  AppendPageHashesRecords(list, &stream);
  return SplitRecords(stream);
}

TEST(PageHashesTest, RecordsRoundTripAcrossSeveralRecordsPerBlock) {
  const VmDescriptor d = BigVm();
  const PageHashList list = SomeHashes(d);
  const auto records = Records(list);
  ASSERT_EQ(records.size(), 4u);  // 3 for "mem", 1 for "rom"
  PageHashesReader reader(d.ram_blocks);
  for (const auto& r : records) {
    EXPECT_EQ(LoadLe32(r.data()), uint32_t(RecordType::kPageHashes));
    EXPECT_FALSE(reader.complete());
    ASSERT_TRUE(reader.Add(Payload(r)).ok());
  }
  EXPECT_TRUE(reader.complete());
  EXPECT_EQ(reader.Take(), list);
}

TEST(PageHashesTest, TruncatedRecordIsRefused) {
  const VmDescriptor d = SmallVm();
  std::vector<uint8_t> p = Payload(Records(SomeHashes(d))[0]);
  PageHashesReader short_header(d.ram_blocks);
  EXPECT_EQ(short_header.Add(std::span(p).first(kPageHashesHeaderSize - 1)).error(), DecodeError::kTruncated);
  PageHashesReader short_list(d.ram_blocks);
  EXPECT_EQ(short_list.Add(std::span(p).first(p.size() - 8)).error(), DecodeError::kTruncated);
  EXPECT_FALSE(short_list.complete());
}

TEST(PageHashesTest, WrongCountIsRefused) {
  const VmDescriptor d = SmallVm();
  const std::vector<uint8_t> good = Payload(Records(SomeHashes(d))[0]);
  for (uint32_t count : {0u, 15u, 17u, kMaxPageHashesPerRecord + 1}) {
    std::vector<uint8_t> p = good;
    StoreLe32(p.data() + 16, count);
    PageHashesReader reader(d.ram_blocks);
    EXPECT_FALSE(reader.Add(p).ok()) << count;
  }
  // The block's page count must be the layout's.
  std::vector<uint8_t> p = good;
  StoreLe64(p.data() + 24, 17);
  PageHashesReader reader(d.ram_blocks);
  EXPECT_EQ(reader.Add(p).error(), DecodeError::kPageOrder);
  // A record more than the layout has.
  PageHashesReader full(d.ram_blocks);
  for (const auto& r : Records(SomeHashes(d))) ASSERT_TRUE(full.Add(Payload(r)).ok());
  EXPECT_EQ(full.Add(good).error(), DecodeError::kUnexpectedRecord);
}

TEST(PageHashesTest, WrongPageSizeIsUnsupported) {
  const VmDescriptor d = SmallVm();
  std::vector<uint8_t> p = Payload(Records(SomeHashes(d))[0]);
  StoreLe32(p.data() + 4, 2 * kPageSize);
  PageHashesReader reader(d.ram_blocks);
  const DecodeStatus st = reader.Add(p);
  EXPECT_EQ(st.error(), DecodeError::kUnsupported);
  EXPECT_TRUE(st.status().IsUnsupported()) << st.ToString();
}

TEST(PageHashesTest, RecordsOutOfOrderOrWithReservedBitsAreRefused) {
  const VmDescriptor d = SmallVm();
  const auto records = Records(SomeHashes(d));
  PageHashesReader skip(d.ram_blocks);
  EXPECT_EQ(skip.Add(Payload(records[1])).error(), DecodeError::kPageOrder);  // block 1 before block 0
  std::vector<uint8_t> p = Payload(records[0]);
  StoreLe32(p.data() + 20, 1);
  PageHashesReader reserved(d.ram_blocks);
  EXPECT_EQ(reserved.Add(p).error(), DecodeError::kBadField);
}

TEST(PageHashesTest, CorruptRecordFailsItsChecksumBeforeItIsRead) {
  const VmDescriptor d = SmallVm();
  std::vector<uint8_t> record = Records(SomeHashes(d))[0];
  record[kRecordHeaderSize + kPageHashesHeaderSize + 3] ^= 0x04;  // one bit of a hash
  auto t = MakeMemoryTransport(record);
  RecordReader reader(t.get());
  RecordView view;
  const DecodeStatus st = reader.Next(-1, 1000, &view);
  EXPECT_EQ(st.error(), DecodeError::kChecksumMismatch) << st.ToString();
}

TEST(PageHashesTest, HashesOfAReplicaFileSkipItsHolesWithoutAllocatingThem) {
  char path[] = "/dev/shm/tandem-hashes-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const VmDescriptor d = SmallVm();
  ASSERT_EQ(ftruncate(fd, off_t(d.ram_blocks[0].size_bytes)), 0);
  std::vector<uint8_t> page(kPageSize, 0x5c);
  ASSERT_EQ(pwrite(fd, page.data(), kPageSize, 3 * kPageSize), ssize_t(kPageSize));
  auto image = RamImage::Create(d, {{"mem", path}});
  ASSERT_TRUE(image.ok());
  PageHashList list;
  ASSERT_TRUE(HashReplicaPages(**image, {{"mem", path}}, 2, &list).ok());
  ASSERT_EQ(list.size(), 2u);
  for (uint64_t p = 0; p < 16; ++p) EXPECT_EQ(list[0][p], p == 3 ? PageHash(page.data()) : FilledPageHash(0)) << p;
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_LE(uint64_t(st.st_blocks) * 512, 2u * kPageSize) << "hashing allocated the file's holes";
  close(fd);
  unlink(path);
}

// The primary's side of a hash resync over a file-backed "mem" block (the guest's RAM file) and a copied "rom".
class HashResync : public ::testing::Test {
 protected:
  void SetUp() override {
    char dir[] = "/tmp/tandem-hash-resync-XXXXXX";
    dir_ = mkdtemp(dir);
    ram_path_ = dir_ + "/ram";
    replica_path_ = dir_ + "/replica";
  }
  void TearDown() override {
    unlink(ram_path_.c_str());
    unlink(replica_path_.c_str());
    rmdir(dir_.c_str());
  }

  // The primary's RAM: the truth's "mem" written to its file, "rom" copied.
  std::unique_ptr<GuestRam> Ram(const RamImage& truth) {
    const int fd = open(ram_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    EXPECT_GE(fd, 0);
    auto mem = truth.Block(0);
    EXPECT_EQ(pwrite(fd, mem.data(), mem.size(), 0), ssize_t(mem.size()));
    close(fd);
    auto ram = GuestRam::Open(SmallVm(), {{"mem", ram_path_}});
    EXPECT_TRUE(ram.ok());
    for (uint64_t off = 0; off < truth.Block(1).size(); off += kPageSize) {
      memcpy((*ram)->PageBuffer(1, off), truth.Block(1).data() + off, kPageSize);
    }
    return std::move(ram).value();
  }

  // The replica file holds `content` ("mem" block only) before the standby starts.
  void WriteReplica(const std::vector<uint8_t>& content) {
    const int fd = open(replica_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, content.data(), content.size(), 0), ssize_t(content.size()));
    close(fd);
  }

  ReplicaOptions StandbyOptions() {
    ReplicaOptions o = Options();
    o.file_backed_blocks = {{"mem", replica_path_}};
    return o;
  }

  // The primary's HELLO to `replica` in a new session; returns the PAGE_HASHES it answered with (empty if none).
  PageHashList Hello(Replica& replica, FakePrimary& primary, uint32_t version = kProtocolVersion) {
    replica.StartSession();
    std::vector<uint8_t> reply;
    const FeedResult r = FeedMore(replica, primary.Hello(version), &reply);
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_EQ(r.hellos.size(), 1u);
    PageHashesReader hashes(SmallVm().ram_blocks);
    auto t = MakeMemoryTransport(reply);
    RecordReader reader(t.get());
    RecordView rec;
    bool any = false;
    while (reader.Next(-1, 1000, &rec).ok()) {
      if (rec.type != uint32_t(RecordType::kPageHashes)) continue;
      any = true;
      EXPECT_TRUE(hashes.Add(rec.payload).ok());
    }
    if (!any) return {};
    EXPECT_TRUE(hashes.complete());
    EXPECT_EQ(r.hellos.empty() ? false : r.hellos[0].page_hashes, true);
    return hashes.Take();
  }

  // The keeps epoch for `theirs`, as EpochShipper sends it; *differing receives the pages it lists.
  std::vector<uint8_t> Keeping(FakePrimary& primary, const GuestRam& ram, const PageHashList& theirs,
                               uint64_t number, std::vector<PageRef>* differing, bool corrupt = false) {
    EXPECT_TRUE(DifferingPages(ram, theirs, nullptr, 2, differing).ok());
    ResyncSource source;
    source.ram = &ram;
    source.settles_after = [] { return 1u; };
    EpochEncoder encoder(PageCodecOptions{});
    if (corrupt) encoder.CorruptNextEpoch();
    BufferSink sink;
    Status st = encoder.EncodeKeeping(number, primary.term(), source, *differing, primary.device_state(), &sink);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return sink.bytes;
  }

  std::string dir_, ram_path_, replica_path_;
};

TEST_F(HashResync, ReplicaEqualsThePrimaryByteForByteAndOnlyTheDifferingPagesTravel) {
  FakePrimary primary;
  auto ram = Ram(primary.mirror());
  // The replica file of an earlier run: the primary's "mem" with pages 2, 7 and 11 different.
  std::vector<uint8_t> old(primary.mirror().Block(0).begin(), primary.mirror().Block(0).end());
  const std::set<uint64_t> changed = {2, 7, 11};
  for (uint64_t p : changed) old[p * kPageSize + 100] ^= 0xff;
  WriteReplica(old);
  Replica replica(StandbyOptions(), SystemClock());
  const PageHashList theirs = Hello(replica, primary);
  ASSERT_EQ(theirs.size(), 2u);
  std::vector<PageRef> differing;
  const std::vector<uint8_t> epoch = Keeping(primary, *ram, theirs, 5, &differing);
  std::set<uint64_t> listed_mem;
  size_t listed_rom = 0;
  for (const PageRef& p : differing) p.block == 0 ? void(listed_mem.insert(p.offset / kPageSize)) : void(++listed_rom);
  EXPECT_EQ(listed_mem, changed);
  EXPECT_EQ(listed_rom, 2u);  // the anonymous "rom" of a fresh standby is zero: it differs
  EXPECT_LT(epoch.size(), 8 * kPageSize) << "only the differing pages travel";
  const FeedResult r = FeedMore(replica, epoch, nullptr);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 1u);
  EXPECT_EQ(r.acks[0].status, AckStatus::kOk) << r.acks[0].reason;
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  // Live: a resume point once the epoch it settles at is applied.
  EXPECT_FALSE(replica.resume_point().has_value());
  ASSERT_TRUE(FeedMore(replica, primary.NextDelta(6), nullptr).status.ok());
  ASSERT_TRUE(replica.resume_point().has_value());
  EXPECT_EQ(replica.resume_point()->epoch, 6u);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

TEST_F(HashResync, ReplicaOfAllWrongContentConverges) {
  FakePrimary primary;
  auto ram = Ram(primary.mirror());
  std::vector<uint8_t> junk(primary.mirror().Block(0).size());
  std::mt19937_64 rng(5);
  for (auto& b : junk) b = uint8_t(rng());
  WriteReplica(junk);
  Replica replica(StandbyOptions(), SystemClock());
  const PageHashList theirs = Hello(replica, primary);
  std::vector<PageRef> differing;
  const std::vector<uint8_t> epoch = Keeping(primary, *ram, theirs, 3, &differing);
  EXPECT_EQ(differing.size(), 18u);  // every page of both blocks
  const FeedResult r = FeedMore(replica, epoch, nullptr);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

TEST_F(HashResync, NothingIsAppliedFromAKeepsEpochThatDoesNotVerify) {
  // The standby holds epoch 1 of an earlier primary: a new primary's keeps epoch is staged, never written
  // through, so a corrupt or cut one leaves the replica and the resume point as they were.
  FakePrimary earlier(SmallVm(), 1, 0x1111);
  WriteReplica(std::vector<uint8_t>(16 * kPageSize, 0));
  Replica replica(StandbyOptions(), SystemClock());
  Seed(earlier, replica);
  const std::vector<uint8_t> held = Snapshot(*replica.image());
  FakePrimary primary(SmallVm(), 2, 0x2222);
  for (uint64_t p : {1, 9}) primary.mirror().Block(0)[p * kPageSize] ^= 0x33;
  auto ram = Ram(primary.mirror());
  {
    const PageHashList theirs = Hello(replica, primary);
    ASSERT_FALSE(theirs.empty());
    std::vector<PageRef> differing;
    const FeedResult r = FeedMore(replica, Keeping(primary, *ram, theirs, 7, &differing, /*corrupt=*/true), nullptr);
    EXPECT_FALSE(r.status.ok());  // the page's hash, or its LZ4 block, fails
    ASSERT_FALSE(r.acks.empty());
    EXPECT_EQ(r.acks.back().status, AckStatus::kCorruption) << r.acks.back().reason;
    EXPECT_EQ(differing.size(), 2u);
  }
  EXPECT_EQ(Snapshot(*replica.image()), held);
  ASSERT_TRUE(replica.resume_point().has_value());
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
  {
    const PageHashList theirs = Hello(replica, primary);
    std::vector<PageRef> differing;
    std::vector<uint8_t> epoch = Keeping(primary, *ram, theirs, 7, &differing);
    auto records = SplitRecords(epoch);
    records.pop_back();  // no EPOCH_END
    std::vector<uint8_t> cut;
    for (const auto& rec : records) cut.insert(cut.end(), rec.begin(), rec.end());
    const FeedResult r = FeedMore(replica, cut, nullptr);
    EXPECT_TRUE(r.status.ok()) << r.status.ToString();
    EXPECT_TRUE(r.acks.empty());
    replica.StartSession();  // the connection ends: what was staged is dropped
  }
  EXPECT_EQ(Snapshot(*replica.image()), held);
  EXPECT_EQ(replica.resume_point()->epoch, 1u);
}

TEST_F(HashResync, KeepsEpochWithoutHashesOnItsConnectionIsRefused) {
  FakePrimary primary;
  auto ram = Ram(primary.mirror());
  Replica replica(StandbyOptions(), SystemClock());
  // Hashes from one connection do not carry over to the next.
  const PageHashList theirs = Hello(replica, primary);
  std::vector<PageRef> differing;
  const std::vector<uint8_t> epoch = Keeping(primary, *ram, theirs, 2, &differing);
  replica.StartSession();
  const FeedResult r = FeedMore(replica, Concat({primary.Hello(4), epoch}), nullptr);
  ExpectRejected(r, AckStatus::kCorruption, DecodeError::kBadField);
  EXPECT_EQ(replica.counters().epochs_applied, 0u);
}

// Without page hashes (a version 4 primary) a full epoch lists every page; written through to a fresh sparse
// replica, its zero pages are left as holes instead of being written (and allocated).
TEST_F(HashResync, FullEpochLeavesTheZeroPagesOfAFreshReplicaAsHoles) {
  FakePrimary primary;
  memset(primary.mirror().Block(0).data() + 4 * kPageSize, 0, 12 * kPageSize);  // pages 4..15 zero
  Replica replica(StandbyOptions(), SystemClock());
  const FeedResult r = Feed(replica, Concat({primary.Hello(4), primary.Full(1)}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 1u);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  ASSERT_EQ(msync(const_cast<uint8_t*>(replica.image()->Block(0).data()), 16 * kPageSize, MS_SYNC), 0);
  struct stat st {};
  ASSERT_EQ(stat(replica_path_.c_str(), &st), 0);
  EXPECT_LE(uint64_t(st.st_blocks) * 512, 8 * uint64_t{kPageSize}) << "the zero pages were written";
}

TEST_F(HashResync, Version4PrimaryGetsNoPageHashesAndIsAnsweredInVersion4) {
  FakePrimary primary;
  Replica replica(StandbyOptions(), SystemClock());
  replica.StartSession();
  std::vector<uint8_t> reply;
  const FeedResult r = FeedMore(replica, primary.Hello(4), &reply);
  ASSERT_TRUE(r.status.ok());
  ASSERT_EQ(r.hellos.size(), 1u);
  EXPECT_EQ(r.hellos[0].version, 4u);
  EXPECT_FALSE(r.hellos[0].page_hashes);
  EXPECT_EQ(SplitRecords(reply).size(), 1u);  // the HELLO alone
  // A standby holding an epoch of this primary's generation offers it for a catch-up instead of hashes.
  Seed(primary, replica);
  EXPECT_TRUE(Hello(replica, primary).empty());
}

}  // namespace
}  // namespace tandem::replicator::testing
