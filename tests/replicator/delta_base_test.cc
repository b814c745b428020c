// DeltaBase: the bounded cache of the standby's copies that replaces the primary's mirror as the XOR base.
// Contents exact after every update, CLOCK eviction within the budget, nothing allocated after construction
// (counts operator new in this binary), and the property that matters: an encoder using the cache as its base
// and a decoder using the standby's true copy agree on every page of a random run of epochs.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "replicator/delta_base.h"
#include "replicator/page_codec.h"
#include "replicator/page_fingerprints.h"
#include "tests/replicator/counting_new.h"

namespace tandem::replicator {
namespace {

constexpr uint64_t kSlotBytes = kPageSize + DeltaBase::kSlotOverheadBytes;

// A page whose every word says which (key, version) wrote it.
std::vector<uint8_t> TaggedPage(uint64_t key, uint64_t version) {
  std::vector<uint8_t> page(kPageSize);
  for (size_t i = 0; i < kPageSize; i += 16) {
    memcpy(&page[i], &key, 8);
    memcpy(&page[i + 8], &version, 8);
  }
  return page;
}

bool Holds(const DeltaBase& cache, uint32_t block, uint64_t offset, const std::vector<uint8_t>& page) {
  const uint8_t* cached = cache.Lookup(block, offset);
  return cached != nullptr && memcmp(cached, page.data(), kPageSize) == 0;
}

TEST(DeltaBaseTest, APageIsFoundOnlyAfterItWasShippedAndHoldsTheLastVersion) {
  DeltaBase cache(64 * kSlotBytes);
  EXPECT_EQ(cache.Lookup(0, 0), nullptr);
  cache.Update(0, 5 * kPageSize, TaggedPage(5, 1).data());
  EXPECT_TRUE(Holds(cache, 0, 5 * kPageSize, TaggedPage(5, 1)));
  EXPECT_EQ(cache.Lookup(1, 5 * kPageSize), nullptr) << "same offset, other block";
  EXPECT_EQ(cache.Lookup(0, 6 * kPageSize), nullptr);
  cache.Update(0, 5 * kPageSize, TaggedPage(5, 2).data());
  EXPECT_TRUE(Holds(cache, 0, 5 * kPageSize, TaggedPage(5, 2)));
  EXPECT_EQ(cache.size_pages(), 1u);
  EXPECT_EQ(cache.counters().misses, 1u);
  EXPECT_EQ(cache.counters().hits, 1u);
}

TEST(DeltaBaseTest, NeverReservesMoreThanItsBudget) {
  for (uint64_t budget : {uint64_t{0}, uint64_t{kPageSize}, kSlotBytes - 1, kSlotBytes, 3 * kSlotBytes + 100,
                          uint64_t{1} << 20, uint64_t{33} << 20, uint64_t{1} << 30}) {
    const uint64_t before = g_allocated_bytes.load();
    DeltaBase cache(budget);
    const uint64_t heap = g_allocated_bytes.load() - before;
    EXPECT_LE(cache.memory_bytes(), budget) << budget;
    EXPECT_LE(cache.capacity_pages() * kPageSize + heap, budget) << "page slots + heap, budget " << budget;
    if (budget >= (uint64_t{1} << 20)) {
      EXPECT_GE(cache.capacity_pages(), budget / kSlotBytes) << "a budget mostly spent on overhead: " << budget;
    }
  }
  DeltaBase none(kPageSize);  // a page and no room for its key
  EXPECT_EQ(none.capacity_pages(), 0u);
  none.Update(0, 0, TaggedPage(0, 0).data());
  EXPECT_EQ(none.Lookup(0, 0), nullptr) << "a cache without room caches nothing";
}

TEST(DeltaBaseTest, EvictsToStayWithinCapacityAndKeepsTheNewestPage) {
  DeltaBase cache(16 * kSlotBytes);
  const uint64_t capacity = cache.capacity_pages();
  ASSERT_GE(capacity, 8u);
  for (uint64_t i = 0; i < 10 * capacity; ++i) {
    cache.Update(0, i * kPageSize, TaggedPage(i, 0).data());
    ASSERT_LE(cache.size_pages(), capacity);
    ASSERT_TRUE(Holds(cache, 0, i * kPageSize, TaggedPage(i, 0))) << "the page just shipped was evicted";
  }
  EXPECT_EQ(cache.size_pages(), capacity);
  EXPECT_EQ(cache.counters().evictions, 9 * capacity);
}

// Pages the guest keeps rewriting must outlive a stream of pages written once (a file written out): CLOCK gives
// a page recorded again a second chance. FIFO would evict the hot pages once every `capacity` cold pages.
TEST(DeltaBaseTest, RewrittenPagesSurviveAStreamOfPagesWrittenOnce) {
  DeltaBase cache(64 * kSlotBytes);
  const uint64_t capacity = cache.capacity_pages();
  constexpr uint32_t kHot = 8;
  uint64_t cold = 1000;
  for (int round = 0; round < 40; ++round) {
    for (uint32_t h = 0; h < kHot; ++h) cache.Update(1, h * kPageSize, TaggedPage(h, round).data());
    for (uint64_t i = 0; i < capacity / 2; ++i, ++cold) cache.Update(0, cold * kPageSize, TaggedPage(cold, 0).data());
  }
  for (uint32_t h = 0; h < kHot; ++h) EXPECT_TRUE(Holds(cache, 1, h * kPageSize, TaggedPage(h, 39))) << h;
  EXPECT_GT(cache.counters().evictions, 10 * capacity);
}

// Random updates, invalidations and clears against a model: whatever the cache returns is exactly the last
// version recorded for that page (the index's deletions keep every key reachable), never a stale one.
TEST(DeltaBaseTest, ContentsMatchTheLastUpdateUnderChurn) {
  DeltaBase cache(200 * kSlotBytes);
  std::map<uint64_t, uint64_t> last;  // page -> version recorded (absent: invalidated or never)
  std::mt19937_64 rng(7);
  uint64_t version = 0;
  for (int step = 0; step < 60000; ++step) {
    const uint64_t page = rng() % 700;
    const uint32_t block = uint32_t(page % 3);
    const uint64_t offset = page * kPageSize;
    const int op = int(rng() % 100);
    if (op < 75) {
      cache.Update(block, offset, TaggedPage(page, ++version).data());
      last[page] = version;
    } else if (op < 99) {
      cache.Invalidate(block, offset);
      last.erase(page);
    } else if (step % 7 == 0) {
      cache.Clear();
      last.clear();
    }
    const uint64_t probe = rng() % 700;
    const uint8_t* cached = cache.Lookup(uint32_t(probe % 3), probe * kPageSize);
    if (cached != nullptr) {
      auto it = last.find(probe);
      ASSERT_NE(it, last.end()) << "page " << probe << " cached after it was invalidated, step " << step;
      ASSERT_EQ(memcmp(cached, TaggedPage(probe, it->second).data(), kPageSize), 0) << "stale page " << probe;
    }
    ASSERT_LE(cache.size_pages(), cache.capacity_pages());
  }
  EXPECT_GT(cache.counters().evictions, 0u);
  EXPECT_GT(cache.counters().hits, 0u);
}

TEST(DeltaBaseTest, InvalidatedSlotsAreReusedBeforeAnythingIsEvicted) {
  DeltaBase cache(8 * kSlotBytes);
  const uint64_t capacity = cache.capacity_pages();
  for (uint64_t i = 0; i < capacity; ++i) cache.Update(0, i * kPageSize, TaggedPage(i, 0).data());
  cache.Invalidate(0, 0);
  cache.Invalidate(0, 0);  // twice: no effect the second time
  EXPECT_EQ(cache.Lookup(0, 0), nullptr);
  EXPECT_EQ(cache.size_pages(), capacity - 1);
  cache.Update(0, capacity * kPageSize, TaggedPage(capacity, 0).data());
  EXPECT_EQ(cache.counters().evictions, 0u);
  for (uint64_t i = 1; i <= capacity; ++i) EXPECT_TRUE(Holds(cache, 0, i * kPageSize, TaggedPage(i, 0))) << i;
}

TEST(DeltaBaseTest, ClearForgetsEveryPageAndTheCacheFillsAgain) {
  DeltaBase cache(32 * kSlotBytes);
  for (uint64_t i = 0; i < 100; ++i) cache.Update(0, i * kPageSize, TaggedPage(i, 0).data());
  cache.Clear();
  EXPECT_EQ(cache.size_pages(), 0u);
  for (uint64_t i = 0; i < 100; ++i) EXPECT_EQ(cache.Lookup(0, i * kPageSize), nullptr) << i;
  for (uint64_t i = 0; i < cache.capacity_pages(); ++i) cache.Update(0, i * kPageSize, TaggedPage(i, 1).data());
  for (uint64_t i = 0; i < cache.capacity_pages(); ++i) EXPECT_TRUE(Holds(cache, 0, i * kPageSize, TaggedPage(i, 1)));
}

TEST(DeltaBaseTest, RecordKeepsWholePagesAndDropsFilledOnes) {
  DeltaBase cache(32 * kSlotBytes);
  cache.Update(0, 0, TaggedPage(0, 0).data());
  Epoch epoch;
  epoch.Reset(3, false);
  epoch.FilledPage(0, 0, 0);  // now a zero page on the standby: the tagged copy is no longer its base
  memcpy(epoch.PageBuffer(0, kPageSize), TaggedPage(1, 3).data(), kPageSize);
  cache.Record(epoch);
  EXPECT_EQ(cache.Lookup(0, 0), nullptr);
  EXPECT_TRUE(Holds(cache, 0, kPageSize, TaggedPage(1, 3)));
}

TEST(DeltaBaseTest, UpdatesLookupsAndClearsAllocateNothing) {
  DeltaBase cache(128 * kSlotBytes);
  const std::vector<uint8_t> page = TaggedPage(1, 1);
  std::mt19937_64 rng(3);
  const uint64_t before = g_allocations.load();
  uint64_t found = 0;
  for (int step = 0; step < 20000; ++step) {
    const uint64_t offset = (rng() % 1000) * kPageSize;
    if (step % 5 == 4) {
      cache.Invalidate(0, offset);
    } else {
      cache.Update(0, offset, page.data());
    }
    found += cache.Lookup(0, (rng() % 1000) * kPageSize) != nullptr;
    if (step % 5000 == 4999) cache.Clear();
  }
  EXPECT_EQ(g_allocations.load() - before, 0u);
  EXPECT_GT(found, 0u);
}

// The property the shipper relies on: with the cache as the encoder's base and the standby's true copy as the
// decoder's, every page of every epoch decodes to what was sent. Pages in the cache travel relative to it, the
// others standalone; resyncs (Clear) and catch-ups (Invalidate) in between change only which.
// The second tier's invariant: fingerprints are known only for pages the cache does not hold, and then they are
// the standby's copy's. An evicted page leaves them; a page entering the cache or invalidated is forgotten.
TEST(DeltaBaseTest, EvictedPagesLeaveTheirFingerprintsAndInvalidatedOnesForgetThem) {
  auto fingerprints = std::move(PageFingerprints::Create({{"mem", 4096 * uint64_t(kPageSize)}})).value();
  DeltaBase cache(4 * kSlotBytes);
  cache.set_fingerprints(fingerprints.get());
  std::vector<uint8_t> out(kPageSize);
  const std::vector<uint8_t> shipped = TaggedPage(0, 1);
  fingerprints->Record(0, 0, TaggedPage(0, 0).data());  // an older copy, fingerprinted before
  cache.Update(0, 0, shipped.data());
  EXPECT_EQ(fingerprints->ChangedChunks(0, 0, shipped.data(), out.data(), kPageSize), PageFingerprints::kNotKnown)
      << "a cached page's old fingerprints must not survive";
  for (uint64_t i = 1; cache.Lookup(0, 0) != nullptr; ++i) cache.Update(0, i * kPageSize, TaggedPage(i, 0).data());
  EXPECT_EQ(fingerprints->ChangedChunks(0, 0, shipped.data(), out.data(), kPageSize), 0u)
      << "the evicted copy left its fingerprints: unchanged";
  cache.Invalidate(0, 0);
  EXPECT_EQ(fingerprints->ChangedChunks(0, 0, shipped.data(), out.data(), kPageSize), PageFingerprints::kNotKnown);
  Epoch zeroed;
  zeroed.Reset(2, false);
  zeroed.FilledPage(0, 0, 0);
  cache.Record(zeroed);
  EXPECT_EQ(fingerprints->ChangedChunks(0, 0, std::vector<uint8_t>(kPageSize, 0).data(), out.data(), kPageSize), 0u)
      << "a filled page is fingerprinted as filled";
  cache.Clear();
  EXPECT_EQ(fingerprints->ChangedChunks(0, 0, std::vector<uint8_t>(kPageSize, 0).data(), out.data(), kPageSize),
            PageFingerprints::kNotKnown);
}

// With the second tier (PageFingerprints) misses may travel relative too, as their changed chunks: the cache
// must keep the fingerprints of every page it does not hold equal to the standby's copy, or forgotten.
class TwoTierTest : public ::testing::TestWithParam<bool> {};

TEST_P(TwoTierTest, EncoderUsingTheCacheAndDecoderUsingTheStandbyCopyAgreeOnEveryPage) {
  const bool with_fingerprints = GetParam();
  constexpr uint64_t kPages = 512;
  DeltaBase cache(96 * kSlotBytes);  // a fifth of RAM: plenty of misses and evictions
  auto fingerprints = std::move(PageFingerprints::Create({{"mem", kPages * kPageSize}})).value();
  if (with_fingerprints) cache.set_fingerprints(fingerprints.get());
  std::vector<uint8_t> ram(kPages * kPageSize), standby(kPages * kPageSize);
  std::mt19937_64 rng(11);
  for (size_t i = 0; i < ram.size(); i += 8) {
    const uint64_t v = (i / 8) % 97 == 0 ? rng() : i / 64;
    memcpy(&ram[i], &v, 8);
  }
  standby = ram;  // the initial full sync
  PageEncoder encoder(PageCodecOptions{});
  PageDecoder decoder;
  std::vector<uint8_t> wire(kMaxEncodedPage), scratch(kMaxEncodedPage), decoded(kPageSize);
  uint64_t relative = 0, standalone = 0, chunks = 0;
  Epoch epoch;
  for (uint64_t number = 1; number <= 400; ++number) {
    // The guest: a hot set rewritten often, the rest now and then; sparse or dense changes, sometimes zeroed.
    epoch.Reset(number, false);
    const int dirty = 1 + int(rng() % 40);
    std::vector<bool> listed(kPages, false);
    for (int d = 0; d < dirty; ++d) {
      const uint64_t page = rng() % 4 == 0 ? rng() % kPages : rng() % 48;
      if (listed[page]) continue;
      listed[page] = true;
      uint8_t* p = &ram[page * kPageSize];
      const int kind = int(rng() % 10);
      if (kind == 0) {
        memset(p, 0, kPageSize);
        epoch.FilledPage(0, page * kPageSize, 0);
        continue;
      }
      const int words = kind < 7 ? 1 + int(rng() % 6) : 300;
      for (int w = 0; w < words; ++w) {
        const uint64_t v = rng();
        memcpy(p + (rng() % (kPageSize / 8)) * 8, &v, 8);
      }
      memcpy(epoch.PageBuffer(0, page * kPageSize), p, kPageSize);
    }
    // Ship: encode against the cache, decode against the standby's copy, apply.
    for (const PageRecord& rec : epoch.pages()) {
      uint8_t* held = &standby[rec.offset];
      if (rec.filled) {
        memset(held, rec.fill, kPageSize);
        continue;
      }
      const uint8_t* base = cache.Lookup(rec.block, rec.offset);
      if (base != nullptr) {
        ASSERT_EQ(memcmp(base, held, kPageSize), 0) << "the cache is not the standby's copy";
      }
      const EncodedPage e =
          base != nullptr ? encoder.Encode(epoch.PageData(rec), base, wire.data())
                          : EncodeWithoutBase(encoder, with_fingerprints ? fingerprints.get() : nullptr, rec.block,
                                              rec.offset, epoch.PageData(rec), wire.data(), scratch.data());
      (IsRelativeEncoding(e.encoding) ? relative : standalone)++;
      chunks += base == nullptr && IsRelativeEncoding(e.encoding);
      ASSERT_TRUE(decoder.Decode(e.encoding, wire.data(), e.size, held, decoded.data()).ok());
      ASSERT_EQ(memcmp(decoded.data(), epoch.PageData(rec), kPageSize), 0) << "epoch " << number;
      memcpy(held, decoded.data(), kPageSize);
    }
    cache.Record(epoch);
    // Now and then a resync sends pages as they are, bases unknown afterwards: a catch-up or a full resync.
    if (number % 97 == 0) {
      cache.Clear();
    } else if (number % 31 == 0) {
      std::vector<PageRef> resent;
      for (uint64_t page = 0; page < kPages; page += 3) resent.push_back({0, page * kPageSize});
      cache.Invalidate(resent);
    }
  }
  EXPECT_EQ(standby, ram);
  EXPECT_GT(relative, 1000u);
  EXPECT_GT(standalone, with_fingerprints ? 50u : 300u);
  if (with_fingerprints) {
    EXPECT_GT(chunks, 300u) << "misses should travel as their changed chunks";
  } else {
    EXPECT_EQ(chunks, 0u) << "a miss without fingerprints has no base";
  }
  EXPECT_GT(cache.counters().evictions, 0u);
}

INSTANTIATE_TEST_SUITE_P(CacheAlone, TwoTierTest, ::testing::Values(false));
INSTANTIATE_TEST_SUITE_P(CacheAndFingerprints, TwoTierTest, ::testing::Values(true));

TEST(DeltaBaseTest, DefaultBudgetIsASixteenthOfRamWithinBounds) {
  EXPECT_EQ(DefaultDeltaBaseBudget(uint64_t{4} << 30), uint64_t{256} << 20);
  EXPECT_EQ(DefaultDeltaBaseBudget(uint64_t{128} << 20), uint64_t{16} << 20);
  EXPECT_EQ(DefaultDeltaBaseBudget(uint64_t{8} << 20), uint64_t{8} << 20);
  EXPECT_EQ(DefaultDeltaBaseBudget(uint64_t{1} << 40), uint64_t{4} << 30);
}

}  // namespace
}  // namespace tandem::replicator
