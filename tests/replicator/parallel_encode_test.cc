// Large epochs encoded on several threads: byte for byte the single-threaded encoder's stream (delta and full
// epochs, every codec), accepted by a standby, robust to a sink that fails part way, and allocation-free in
// steady state. Counts every operator new in this binary (all threads).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <random>

#include "tests/replicator/counting_new.h"
#include "tests/replicator/stream_test_util.h"

namespace tandem::replicator::testing {
namespace {

// Block sizes that are not multiples of a record's 256 pages, so records straddle blocks in full epochs.
VmDescriptor LargeVm() {
  VmDescriptor d = SmallVm("big");
  d.ram_blocks = {
      {"mem", 3000 * uint64_t(kPageSize)}, {"vga", 37 * uint64_t(kPageSize)}, {"rom", 1100 * uint64_t(kPageSize)}};
  return d;
}

std::unique_ptr<RamImage> MakeImage(const VmDescriptor& d, uint64_t seed) {
  auto image = std::move(RamImage::Create(d, {})).value();
  std::mt19937_64 rng(seed);
  for (uint32_t b = 0; b < image->blocks().size(); ++b) {
    auto block = image->Block(b);
    for (size_t page = 0; page < block.size() / kPageSize; ++page) {
      uint8_t* p = block.data() + page * kPageSize;
      switch (page % 5) {
        case 0: break;  // zero (mmap'd memory)
        case 1:
          for (size_t i = 0; i < kPageSize; ++i) p[i] = uint8_t(rng());  // incompressible
          break;
        default:
          for (size_t i = 0; i < kPageSize; ++i) p[i] = uint8_t((i / (page % 7 + 3)) ^ b ^ page);  // compressible
      }
    }
  }
  return image;
}

// `count` pages of every kind the encoder distinguishes, against `mirror`: sparse edits, rewrites (XOR +
// compression), filled pages declared as such and zero pages that are not, unchanged pages, random pages, and
// pages listed twice.
void MakeLargeEpoch(uint64_t number, size_t count, const RamImage& mirror, Epoch* epoch) {
  epoch->Reset(number, false);
  std::mt19937_64 rng(number);
  const auto& blocks = mirror.blocks();
  for (size_t i = 0; i < count; ++i) {
    const uint32_t b = uint32_t(rng() % blocks.size());
    const uint64_t off = (rng() % (blocks[b].size_bytes / kPageSize)) * kPageSize;
    const uint8_t* old = mirror.Page(b, off);
    switch (rng() % 8) {
      case 0:
        epoch->FilledPage(b, off, uint8_t(rng() % 3 == 0 ? 0xff : 0));
        break;
      case 1: {  // zero, not declared filled
        uint8_t* p = epoch->PageBuffer(b, off);
        memset(p, 0, kPageSize);
        break;
      }
      case 2:  // rewritten as it was
        memcpy(epoch->PageBuffer(b, off), old, kPageSize);
        break;
      case 3: {  // random
        uint8_t* p = epoch->PageBuffer(b, off);
        for (size_t k = 0; k < kPageSize; k += 8) {
          const uint64_t v = rng();
          memcpy(p + k, &v, 8);
        }
        break;
      }
      case 4: {  // many words changed: XOR + compression
        uint8_t* p = epoch->PageBuffer(b, off);
        memcpy(p, old, kPageSize);
        for (size_t k = 0; k < kPageSize; k += 16) p[k] ^= uint8_t(number + k);
        break;
      }
      default: {  // a few words changed: sparse
        uint8_t* p = epoch->PageBuffer(b, off);
        memcpy(p, old, kPageSize);
        for (int k = 0; k < 3; ++k) p[rng() % kPageSize] ^= uint8_t(1 + rng() % 255);
        break;
      }
    }
  }
  epoch->device_state().assign(3000 + number % 7, uint8_t(number));
}

void ExpectSameStats(const EncodeStats& a, const EncodeStats& b) {
  EXPECT_EQ(a.pages, b.pages);
  EXPECT_EQ(a.records, b.records);
  EXPECT_EQ(a.wire_bytes, b.wire_bytes);
  EXPECT_EQ(a.page_payload_bytes, b.page_payload_bytes);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(a.by_encoding[i], b.by_encoding[i]) << "encoding " << i;
}

struct CodecCase {
  Compression compression;
  bool xor_delta;
};
const CodecCase kCodecs[] = {
    {Compression::kLz4, true}, {Compression::kZstd, true}, {Compression::kNone, true}, {Compression::kLz4, false}};

// The HELLO a primary of term 1 and `generation` opens its stream with.
HelloMessage PrimaryHello(const VmDescriptor& vm, uint64_t generation) {
  HelloMessage hello;
  hello.role = PeerRole::kPrimary;
  hello.term = 1;
  hello.generation = generation;
  hello.descriptor = vm;
  return hello;
}

TEST(ParallelEncodeTest, DeltaEpochIsByteIdenticalToSingleThreaded) {
  const VmDescriptor vm = LargeVm();
  auto mirror = MakeImage(vm, 1);
  Epoch epoch;
  MakeLargeEpoch(7, 5000, *mirror, &epoch);
  for (const CodecCase& c : kCodecs) {
    const PageCodecOptions options{c.compression, 1, c.xor_delta};
    EpochEncoder single(options, 1);
    BufferSink expected;
    ASSERT_TRUE(single.EncodeEpoch(epoch, 3, mirror.get(), &expected).ok());
    EXPECT_EQ(single.last_epoch_stats().threads, 1u);
    for (int threads : {2, 3, 4}) {
      EpochEncoder parallel(options, threads);
      BufferSink got;
      ASSERT_TRUE(parallel.EncodeEpoch(epoch, 3, mirror.get(), &got).ok());
      EXPECT_EQ(parallel.last_epoch_stats().threads, uint32_t(threads));
      EXPECT_TRUE(got.bytes == expected.bytes)
          << "compression " << int(c.compression) << " xor " << c.xor_delta << " threads " << threads;
      ExpectSameStats(parallel.last_epoch_stats(), single.last_epoch_stats());
    }
  }
}

TEST(ParallelEncodeTest, FullEpochIsByteIdenticalToSingleThreaded) {
  const VmDescriptor vm = LargeVm();
  auto image = MakeImage(vm, 2);
  const std::vector<uint8_t> device(5000, 0x42);
  for (const CodecCase& c : kCodecs) {
    const PageCodecOptions options{c.compression, 1, c.xor_delta};
    EpochEncoder single(options, 1);
    BufferSink expected;
    ASSERT_TRUE(single.EncodeFull(9, 3, *image, device, &expected).ok());
    for (int threads : {2, 3}) {
      EpochEncoder parallel(options, threads);
      BufferSink got;
      ASSERT_TRUE(parallel.EncodeFull(9, 3, *image, device, &got).ok());
      EXPECT_EQ(parallel.last_epoch_stats().threads, uint32_t(threads));
      EXPECT_TRUE(got.bytes == expected.bytes) << "compression " << int(c.compression) << " threads " << threads;
      ExpectSameStats(parallel.last_epoch_stats(), single.last_epoch_stats());
    }
  }
}

TEST(ParallelEncodeTest, SmallEpochStaysOnTheCallingThread) {
  const VmDescriptor vm = LargeVm();
  auto mirror = MakeImage(vm, 3);
  Epoch epoch;
  MakeLargeEpoch(4, EpochEncoder::kParallelMinPages - 1, *mirror, &epoch);
  EpochEncoder single({}, 1), parallel({}, 2);
  BufferSink a, b;
  ASSERT_TRUE(single.EncodeEpoch(epoch, 1, mirror.get(), &a).ok());
  ASSERT_TRUE(parallel.EncodeEpoch(epoch, 1, mirror.get(), &b).ok());
  EXPECT_EQ(parallel.last_epoch_stats().threads, 1u);
  EXPECT_TRUE(a.bytes == b.bytes);
}

// A standby applies a parallel-encoded full epoch and a run of parallel-encoded delta epochs, each against the
// mirror as the previous epochs left it, and ends up with the primary's RAM.
TEST(ParallelEncodeTest, StandbyAppliesParallelEncodedEpochs) {
  const VmDescriptor vm = LargeVm();
  auto mirror = MakeImage(vm, 4);
  EpochEncoder encoder({Compression::kLz4, 1, true}, 2);
  EpochEncoder reference({Compression::kLz4, 1, true}, 1);
  BufferSink stream;
  ASSERT_TRUE(encoder.EncodeHello(PrimaryHello(vm, 77), &stream).ok());
  ASSERT_TRUE(encoder.EncodeFull(1, 1, *mirror, std::vector<uint8_t>(100, 1), &stream).ok());
  Epoch epoch;
  for (uint64_t n = 2; n <= 4; ++n) {
    MakeLargeEpoch(n, 3000, *mirror, &epoch);
    const size_t before = stream.bytes.size();
    ASSERT_TRUE(encoder.EncodeEpoch(epoch, 1, mirror.get(), &stream).ok());
    BufferSink single;
    ASSERT_TRUE(reference.EncodeEpoch(epoch, 1, mirror.get(), &single).ok());
    EXPECT_TRUE(std::equal(stream.bytes.begin() + long(before), stream.bytes.end(), single.bytes.begin(),
                           single.bytes.end()))
        << "epoch " << n;
    ASSERT_TRUE(mirror->Apply(epoch).ok());
  }
  Replica replica(ReplicaOptions{{}, "big", 0}, SystemClock());
  FeedResult r = Feed(replica, stream.bytes);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 4u);
  for (const AckMessage& a : r.acks) EXPECT_EQ(a.status, AckStatus::kOk) << a.reason;
  EXPECT_EQ(replica.counters().last_applied, 4u);
  EXPECT_TRUE(Snapshot(*replica.image()) == Snapshot(*mirror));
}

// The fault injection is honoured on large epochs too (they fall back to one thread for it).
TEST(ParallelEncodeTest, CorruptedLargeEpochIsRejectedByTheStandby) {
  const VmDescriptor vm = LargeVm();
  auto mirror = MakeImage(vm, 5);
  EpochEncoder encoder({}, 2);
  BufferSink stream;
  ASSERT_TRUE(encoder.EncodeHello(PrimaryHello(vm, 78), &stream).ok());
  ASSERT_TRUE(encoder.EncodeFull(1, 1, *mirror, {}, &stream).ok());
  Epoch epoch;
  MakeLargeEpoch(2, 3000, *mirror, &epoch);
  encoder.CorruptNextEpoch();
  ASSERT_TRUE(encoder.EncodeEpoch(epoch, 1, mirror.get(), &stream).ok());
  Replica replica(ReplicaOptions{{}, "big", 0}, SystemClock());
  FeedResult r = Feed(replica, stream.bytes);
  EXPECT_TRUE(r.status.IsCorruption()) << r.status.ToString();
  EXPECT_EQ(r.error, DecodeError::kPageHashMismatch) << r.status.ToString();
  EXPECT_EQ(replica.counters().last_applied, 1u);
}

// Accepts `limit` records, then fails every write.
class FailingSink final : public EpochSink {
 public:
  explicit FailingSink(int limit) : limit_(limit) {}
  Status WriteRecord(std::span<const uint8_t>) override {
    return written_++ < limit_ ? Status::Ok() : Status::Closed("peer closed the connection");
  }
  Status Flush() override { return written_ <= limit_ ? Status::Ok() : Status::Closed("peer closed the connection"); }

 private:
  int limit_;
  int written_ = 0;
};

// A connection that dies part way through a large epoch: the error comes back, the helper threads stop
// touching the epoch, and the same encoder then encodes the next epoch exactly as a fresh one would.
TEST(ParallelEncodeTest, SinkFailurePartWayLeavesTheEncoderUsable) {
  const VmDescriptor vm = LargeVm();
  auto mirror = MakeImage(vm, 6);
  Epoch epoch;
  MakeLargeEpoch(5, 6000, *mirror, &epoch);  // 24 PAGES records
  EpochEncoder encoder({}, 3), reference({}, 1);
  BufferSink expected;
  ASSERT_TRUE(reference.EncodeEpoch(epoch, 1, mirror.get(), &expected).ok());
  for (int limit : {0, 1, 2, 7, 20, 24}) {
    FailingSink failing(limit);
    Status st = encoder.EncodeEpoch(epoch, 1, mirror.get(), &failing);
    EXPECT_TRUE(st.IsClosed()) << "limit " << limit << ": " << st.ToString();
    BufferSink got;
    ASSERT_TRUE(encoder.EncodeEpoch(epoch, 1, mirror.get(), &got).ok());
    EXPECT_TRUE(got.bytes == expected.bytes) << "after a failure at record " << limit;
  }
}

TEST(ParallelEncodeTest, SteadyStateLargeEpochsAllocateNothing) {
  const VmDescriptor vm = LargeVm();
  auto mirror = MakeImage(vm, 7);
  EpochEncoder encoder({Compression::kLz4, 1, true}, 2);
  BufferSink sink;
  sink.bytes.reserve(64 << 20);
  Epoch epoch;
  constexpr int kWarmUp = 3, kEpochs = 12;
  uint64_t counted_from = 0;
  bool all_ok = true;
  for (int n = 0; n < kEpochs; ++n) {
    if (n == kWarmUp) counted_from = g_allocations.load();
    MakeLargeEpoch(100, 4000, *mirror, &epoch);  // same shape every time: the epoch's own buffers are reused
    sink.bytes.clear();
    all_ok &= encoder.EncodeEpoch(epoch, 1, mirror.get(), &sink).ok();
    all_ok &= encoder.last_epoch_stats().threads == 2;
  }
  const uint64_t allocations = g_allocations.load() - counted_from;
  EXPECT_TRUE(all_ok);
  EXPECT_EQ(allocations, 0u) << "allocations over " << kEpochs - kWarmUp << " large steady-state epochs";
}

}  // namespace
}  // namespace tandem::replicator::testing
