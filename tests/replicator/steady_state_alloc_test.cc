// Steady-state epochs allocate nothing: encoding on the primary, decoding, verifying and applying on the standby;
// and a full epoch into an empty standby is not staged. Counts every operator new in this (single-threaded) test
// binary, and the bytes asked for.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "replicator/delta_base.h"
#include "replicator/page_fingerprints.h"
#include "tests/replicator/counting_new.h"
#include "tests/replicator/stream_test_util.h"

namespace tandem::replicator::testing {
namespace {

// Replays whatever is in `bytes` each time it is rewound, without allocating.
class RewindableTransport final : public Transport {
 public:
  explicit RewindableTransport(const std::vector<uint8_t>* bytes) : bytes_(bytes) {}
  void Rewind() { pos_ = 0; }
  Status Send(std::span<const iovec>, int) override { return Status::Ok(); }
  Status Recv(void* buf, size_t len, int) override {
    if (bytes_->size() - pos_ < len) return Status::Closed("end of stream");
    memcpy(buf, bytes_->data() + pos_, len);
    pos_ += len;
    return Status::Ok();
  }
  Status WaitReadable(int) override { return Status::Ok(); }
  void Shutdown() override {}
  const char* engine_name() const override { return "rewindable"; }

 private:
  const std::vector<uint8_t>* bytes_;
  size_t pos_ = 0;
};

TEST(SteadyStateTest, EncodeDecodeVerifyAndApplyAllocateNothingAfterWarmUp) {
  FakePrimary primary;
  Replica replica(ReplicaOptions{{}, "vm1", 0}, SystemClock());
  {
    FeedResult r = Feed(replica, Concat({primary.Hello(), primary.Full(1)}));
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  }
  replica.StartSession();
  BufferSink sink;
  sink.bytes.reserve(1 << 20);
  RewindableTransport transport(&sink.bytes);
  RecordReader reader(&transport);
  std::vector<uint8_t> reply;
  reply.reserve(1 << 16);
  sink.bytes = primary.Hello();
  RecordView rec;
  ASSERT_TRUE(reader.Next(-1, 1000, &rec).ok());
  ASSERT_TRUE(replica.OnRecord(rec, &reply).ok());

  // The primary's bounded base, as EpochShipper keeps it: a cache smaller than the VM's 18 pages (hits, misses,
  // evictions) over fingerprints of every page the full epoch sent (misses go as changed chunks).
  const std::vector<RamBlockInfo> layout = SmallVm().ram_blocks;
  auto fingerprints = std::move(PageFingerprints::Create(layout)).value();
  for (uint32_t b = 0; b < layout.size(); ++b) {
    for (uint64_t off = 0; off < layout[b].size_bytes; off += kPageSize) {
      fingerprints->Record(b, off, primary.mirror().Page(b, off));
    }
  }
  DeltaBase base(12 * (kPageSize + DeltaBase::kSlotOverheadBytes));
  base.set_fingerprints(fingerprints.get());
  ASSERT_GT(base.capacity_pages(), 0u);

  Epoch epoch;
  constexpr uint64_t kWarmUp = 60, kEpochs = 300;  // warm-up covers every device state size MakeEpoch makes
  uint64_t counted_from = 0;
  for (uint64_t n = 2; n < 2 + kEpochs; ++n) {
    if (n == 2 + kWarmUp) {
      counted_from = g_allocations.load();
      g_trap = getenv("TANDEM_TRAP_ALLOC") != nullptr;
    }
    primary.MakeEpoch(n, &epoch);
    sink.bytes.clear();
    ASSERT_TRUE(primary.encoder().EncodeEpoch(epoch, primary.term(), &base, fingerprints.get(), layout, &sink).ok());
    base.Record(epoch);
    ASSERT_TRUE(primary.mirror().Apply(epoch).ok());
    transport.Rewind();
    reply.clear();
    Status st;
    while ((st = reader.Next(-1, 1000, &rec)).ok()) {
      ASSERT_TRUE(replica.OnRecord(rec, &reply).ok());
    }
    ASSERT_FALSE(reply.empty());  // the epoch's ACK
  }
  const uint64_t allocations = g_allocations.load() - counted_from;
  g_trap = false;
  EXPECT_EQ(allocations, 0u) << "allocations over " << kEpochs - kWarmUp << " steady-state epochs";
  EXPECT_EQ(replica.counters().last_applied, 1 + kEpochs);
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  EXPECT_GT(base.counters().hits, 0u);
  EXPECT_GT(base.counters().misses, 0u);
  EXPECT_GT(base.counters().evictions, 0u);
}

// A standby that holds no epoch takes a full epoch straight into its replica: it has nothing to keep if the
// epoch breaks off, so it needs no staging copy of all RAM (a 64 GiB VM would need 64 GiB more on the standby).
// One that holds an epoch stages the next full epoch, so that its replica stays that epoch until the new copy
// is complete.
TEST(FullEpochMemoryTest, OnlyAStandbyThatHoldsAnEpochStagesAFullOne) {
  constexpr uint64_t kRam = 16 << 20;
  VmDescriptor vm = SmallVm();
  vm.ram_blocks = {{"mem", kRam}, {"rom", 2 * kPageSize}};
  FakePrimary primary(vm);
  Replica replica(ReplicaOptions{{}, "vm1", 0}, SystemClock());
  const std::vector<uint8_t> first = Concat({primary.Hello(), primary.Full(1)});
  uint64_t before = g_allocated_bytes.load();
  FeedResult r = Feed(replica, first);
  const uint64_t allocated_empty = g_allocated_bytes.load() - before;
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  EXPECT_LT(allocated_empty, kRam / 4) << "an empty standby staged the full epoch";

  auto ram = primary.mirror().Block(0);
  for (size_t i = 0; i < ram.size(); i += 64) ram[i] ^= 0x5a;
  const std::vector<uint8_t> second = Concat({primary.Hello(), primary.Full(2)});
  before = g_allocated_bytes.load();
  r = Feed(replica, second);
  const uint64_t allocated_holding = g_allocated_bytes.load() - before;
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
  EXPECT_GE(allocated_holding, kRam) << "a standby holding epoch 1 did not stage the full epoch 2";
  EXPECT_LT(allocated_holding, kRam + kRam / 4) << "the staging grew by doubling instead of being sized once";
  printf("[ measured ] full epoch of %.0f MiB: %.2f MiB allocated by a standby holding no epoch, %.2f MiB by one "
         "holding an epoch\n", kRam / 1048576.0, allocated_empty / 1048576.0, allocated_holding / 1048576.0);
}

}  // namespace
}  // namespace tandem::replicator::testing
