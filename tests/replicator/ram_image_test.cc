// RamImage::Apply: large epochs are copied on several threads with the same result as on one (a page listed twice
// included), and a bad page still applies nothing. Epoch::Absorb: a merged epoch applies like its parts.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "replicator/epoch.h"

namespace tandem::replicator {
namespace {

constexpr uint64_t kMemPages = 6000;  // more than RamImage::kParallelApplyMinBytes of pages per epoch

VmDescriptor TwoBlockVm() {
  VmDescriptor d;
  d.vm_name = "apply";
  d.ram_blocks = {{"mem", kMemPages * kPageSize}, {"rom", 64 * kPageSize}};
  return d;
}

std::unique_ptr<RamImage> Image() { return std::move(RamImage::Create(TwoBlockVm(), {})).value(); }

// Every page of both blocks: random content, every 7th page filled instead.
void LargeEpoch(Epoch* epoch) {
  std::mt19937_64 rng(17);
  epoch->Reset(2, false);
  for (uint32_t block = 0; block < 2; ++block) {
    const uint64_t pages = block == 0 ? kMemPages : 64;
    for (uint64_t page = 0; page < pages; ++page) {
      if (page % 7 == 3) {
        epoch->FilledPage(block, page * kPageSize, uint8_t(page));
        continue;
      }
      uint8_t* p = epoch->PageBuffer(block, page * kPageSize);
      for (size_t i = 0; i < kPageSize; i += 8) {
        const uint64_t v = rng();
        memcpy(p + i, &v, 8);
      }
    }
  }
}

bool SameContent(const RamImage& a, const RamImage& b) {
  for (uint32_t i = 0; i < a.blocks().size(); ++i) {
    if (memcmp(a.Block(i).data(), b.Block(i).data(), a.Block(i).size()) != 0) return false;
  }
  return true;
}

TEST(RamImageTest, LargeEpochAppliedOnSeveralThreadsEqualsOneThread) {
  Epoch epoch;
  LargeEpoch(&epoch);
  ASSERT_GE(epoch.page_bytes(), RamImage::kParallelApplyMinBytes);
  auto one = Image(), three = Image(), untouched = Image();
  ASSERT_TRUE(one->Apply(epoch, 1).ok());
  ASSERT_TRUE(three->Apply(epoch, 3).ok());
  EXPECT_FALSE(SameContent(*one, *untouched));
  EXPECT_TRUE(SameContent(*one, *three));
  EXPECT_EQ(three->Page(0, 3 * kPageSize)[100], 3);  // a filled page
}

// The epoch's first page listed again as its last entry (with other content): on any number of threads the page
// ends as the later entry says, as it would on one.
TEST(RamImageTest, PageListedTwiceEndsAsItsLastEntryOnSeveralThreads) {
  for (int threads : {1, 2, 3, 4}) {
    Epoch epoch;
    LargeEpoch(&epoch);
    memset(epoch.PageBuffer(0, 0), 0x5a, kPageSize);
    auto image = Image();
    ASSERT_TRUE(image->Apply(epoch, threads).ok());
    EXPECT_EQ(image->Page(0, 0)[0], 0x5a) << threads << " threads";
    EXPECT_EQ(image->Page(0, 0)[kPageSize - 1], 0x5a) << threads << " threads";
  }
}

// Two consecutive small epochs that share pages (a whole page rewritten, a whole page that becomes filled and a
// filled page that becomes whole), and pages of their own.
void ConsecutiveEpochs(Epoch* first, Epoch* second) {
  first->Reset(7, false);
  memset(first->PageBuffer(0, 1 * kPageSize), 0x11, kPageSize);
  memset(first->PageBuffer(0, 2 * kPageSize), 0x12, kPageSize);
  first->FilledPage(0, 3 * kPageSize, 0x13);
  memset(first->PageBuffer(1, 0), 0x14, kPageSize);
  first->device_state().assign(10, 1);
  second->Reset(8, false);
  memset(second->PageBuffer(0, 1 * kPageSize), 0x21, kPageSize);
  second->FilledPage(0, 2 * kPageSize, 0);
  memset(second->PageBuffer(0, 3 * kPageSize), 0x23, kPageSize);
  memset(second->PageBuffer(0, 4 * kPageSize), 0x24, kPageSize);
  second->device_state().assign(20, 2);
}

TEST(EpochMergeTest, AbsorbedEpochAppliesLikeBothInTurnAndRewritesPagesInPlace) {
  Epoch first, second;
  ConsecutiveEpochs(&first, &second);
  auto in_turn = Image(), at_once = Image();
  ASSERT_TRUE(in_turn->Apply(first).ok());
  ASSERT_TRUE(in_turn->Apply(second).ok());
  ASSERT_TRUE(first.Absorb(second).ok());
  EXPECT_EQ(first.number(), 8u);
  EXPECT_EQ(first.merged(), 1u);
  EXPECT_FALSE(first.full());
  EXPECT_EQ(first.device_state(), second.device_state());
  // Pages 1..4 of block 0 and page 0 of block 1; page 3 went from filled to whole, which takes a second entry.
  EXPECT_EQ(first.pages().size(), 6u);
  ASSERT_TRUE(at_once->Apply(first).ok());
  EXPECT_TRUE(SameContent(*in_turn, *at_once));

  // A third checkpoint without device state merges on: the count grows, the last device state stays; a page
  // rewritten again is overwritten in place.
  Epoch third;
  third.Reset(9, false);
  memset(third.PageBuffer(0, 1 * kPageSize), 0x31, kPageSize);
  third.FilledPage(0, 3 * kPageSize, 0x33);
  ASSERT_TRUE(first.Absorb(third).ok());
  EXPECT_EQ(first.number(), 9u);
  EXPECT_EQ(first.merged(), 2u);
  EXPECT_EQ(first.pages().size(), 6u);
  EXPECT_EQ(first.device_state(), second.device_state());
  ASSERT_TRUE(in_turn->Apply(third).ok());
  ASSERT_TRUE(at_once->Apply(first).ok());
  EXPECT_TRUE(SameContent(*in_turn, *at_once));
}

TEST(EpochMergeTest, OnlyTheNextDeltaEpochIsAbsorbedAndARefusalChangesNothing) {
  Epoch first, second;
  ConsecutiveEpochs(&first, &second);
  second.Reset(9, false);  // epoch 8 missing between them
  memset(second.PageBuffer(0, 1 * kPageSize), 0x99, kPageSize);
  EXPECT_EQ(first.Absorb(second).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(first.number(), 7u);
  EXPECT_EQ(first.pages().size(), 4u);
  EXPECT_EQ(first.PageData(first.pages()[0])[0], 0x11);
  ConsecutiveEpochs(&first, &second);
  first.Reset(7, true);
  EXPECT_EQ(first.Absorb(second).code(), Status::Code::kInvalidArgument);
}

TEST(RamImageTest, PageOutsideTheLayoutAppliesNothingEvenOnSeveralThreads) {
  Epoch epoch;
  LargeEpoch(&epoch);
  memset(epoch.PageBuffer(1, 64 * kPageSize), 0xab, kPageSize);  // one page past the end of "rom"
  auto image = Image(), untouched = Image();
  EXPECT_TRUE(image->Apply(epoch, 2).IsCorruption());
  EXPECT_TRUE(SameContent(*image, *untouched));
}

}  // namespace
}  // namespace tandem::replicator
