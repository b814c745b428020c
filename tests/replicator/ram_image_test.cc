// RamImage::Apply: large epochs are copied on several threads with the same result as on one (a page listed twice
// included), and a bad page still applies nothing.
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
