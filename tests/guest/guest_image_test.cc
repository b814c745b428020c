#include "tests/guest/guest_image.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "tests/guest/guest_layout.h"

namespace tandem::testguest {
namespace {

// Builds RAM images the way the guest writes its pages (see guest_layout.h).
class Image {
 public:
  explicit Image(uint32_t pages, bool full = false)
      : pages_(pages), full_(full), ram_(TANDEM_GUEST_PAGES_BASE + size_t{pages} * TANDEM_GUEST_PAGE_SIZE + 8192) {
    for (uint32_t i = 0; i < pages; ++i) WritePage(i, 0);
  }
  // The state after `round` rounds, with `done` pages of the next round written.
  Image& At(uint32_t round, uint32_t done) {
    for (uint32_t i = 0; i < pages_; ++i) WritePage(i, i < done ? round + 1 : round);
    return *this;
  }
  void WritePage(uint32_t i, uint32_t v) {
    Set(i, TANDEM_GUEST_W_MAGIC, TANDEM_GUEST_MAGIC);
    Set(i, TANDEM_GUEST_W_INDEX, i);
    Set(i, TANDEM_GUEST_W_PAGES, pages_);
    Set(i, TANDEM_GUEST_W_COUNTER, v);
    Set(i, TANDEM_GUEST_W_CHECK, tandem_guest_check(i, pages_, v));
    Set(i, TANDEM_GUEST_W_MODE, full_ ? TANDEM_GUEST_FILL_FULL : TANDEM_GUEST_FILL_SPARSE);
    if (full_)
      for (uint32_t w = TANDEM_GUEST_W_FILL; w < TANDEM_GUEST_W_TAIL; ++w) Set(i, w, v);
    Set(i, TANDEM_GUEST_W_TAIL, v);
  }
  void Set(uint32_t page, uint32_t word, uint32_t v) {
    std::memcpy(&ram_[TANDEM_GUEST_PAGES_BASE + size_t{page} * TANDEM_GUEST_PAGE_SIZE + word * 4u], &v, 4);
  }
  void Wipe(uint32_t page) {
    std::memset(&ram_[TANDEM_GUEST_PAGES_BASE + size_t{page} * TANDEM_GUEST_PAGE_SIZE], 0, TANDEM_GUEST_PAGE_SIZE);
  }
  Result<GuestImageState> Check() const { return CheckGuestImage(ram_); }
  std::vector<uint8_t>& ram() { return ram_; }

 private:
  uint32_t pages_;
  bool full_;
  std::vector<uint8_t> ram_;
};

void ExpectBroken(const Result<GuestImageState>& r, const std::string& message) {
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsCorruption()) << r.status().ToString();
  EXPECT_EQ(r.status().message(), message);
}

TEST(GuestImage, ConsistentBetweenRounds) {
  Image img(64);
  auto r = img.At(7, 0).Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->pages, 64u);
  EXPECT_EQ(r->counter, 7u);
  EXPECT_EQ(r->boundary, 64u);
  EXPECT_FALSE(r->torn);
}

TEST(GuestImage, ConsistentMidRound) {
  Image img(64);
  auto r = img.At(7, 10).Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->counter, 8u);
  EXPECT_EQ(r->boundary, 10u);
}

TEST(GuestImage, VmStoppedMidPageIsConsistent) {
  Image img(64);
  img.At(7, 10);
  img.Set(10, TANDEM_GUEST_W_COUNTER, 8);  // counter stored, check and tail not yet
  auto r = img.Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->boundary, 10u);
  EXPECT_TRUE(r->torn);
}

TEST(GuestImage, VmStoppedMidPageZero) {
  Image img(64);
  img.At(7, 0);
  img.Set(0, TANDEM_GUEST_W_COUNTER, 8);
  img.Set(0, TANDEM_GUEST_W_CHECK, tandem_guest_check(0, 64, 8));
  auto r = img.Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->counter, 8u);
  EXPECT_EQ(r->boundary, 0u);
  EXPECT_TRUE(r->torn);
}

TEST(GuestImage, CounterWrapsAround) {
  Image img(16);
  auto r = img.At(0xffffffffu, 5).Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->counter, 0u);
  EXPECT_EQ(r->boundary, 5u);
}

TEST(GuestImage, GuestStillWritingItsFirstPass) {
  Image img(64);
  for (uint32_t i = 20; i < 64; ++i) img.Wipe(i);
  auto r = img.Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->initializing);
  EXPECT_EQ(r->boundary, 20u);
}

TEST(GuestImage, FullFillConsistent) {
  Image img(32, /*full=*/true);
  auto r = img.At(3, 31).Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->full_fill);
  EXPECT_EQ(r->boundary, 31u);
}

// fill=data: the fill words hold program-like bytes the checker does not verify; the header and tail still do.
TEST(GuestImage, DataFillCheckedByItsHeaderAndTail) {
  Image img(32);
  img.At(3, 31);
  for (uint32_t i = 0; i < 32; ++i) {
    img.Set(i, TANDEM_GUEST_W_MODE, TANDEM_GUEST_FILL_DATA);
    for (uint32_t w = TANDEM_GUEST_W_FILL; w < TANDEM_GUEST_W_TAIL; ++w) img.Set(i, w, i * 7919u + w * 31u);
  }
  auto r = img.Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->full_fill);
  EXPECT_EQ(r->boundary, 31u);
  img.Set(9, TANDEM_GUEST_W_TAIL, 2);
  ExpectBroken(img.Check(), "page 9: tail word 2 vs 4");
}

TEST(GuestImage, UnknownFillModeIsCorruption) {
  Image img(8);
  img.Set(0, TANDEM_GUEST_W_MODE, TANDEM_GUEST_FILL_DATA + 1u);
  ExpectBroken(img.Check(), "page 0: unknown fill mode 3");
}

// A replica that missed one dirty page: that page is one epoch behind its neighbours.
TEST(GuestImage, MissedDirtyPage) {
  Image img(64);
  img.At(7, 40);
  img.WritePage(16, 7);
  ExpectBroken(img.Check(), "page 17: counter 8 vs 7");
}

TEST(GuestImage, PageFromNewerEpochAfterBoundary) {
  Image img(64);
  img.At(7, 10);
  img.WritePage(30, 8);
  ExpectBroken(img.Check(), "page 30: counter 8 vs 7");
}

TEST(GuestImage, CounterJumpsByTwo) {
  Image img(64);
  img.At(7, 10);
  for (uint32_t i = 10; i < 64; ++i) img.WritePage(i, 6);
  ExpectBroken(img.Check(), "page 10: counter 6 vs 8");
}

TEST(GuestImage, TornPageAwayFromBoundary) {
  Image img(64);
  img.At(7, 10);
  img.Set(40, TANDEM_GUEST_W_COUNTER, 8);
  ExpectBroken(img.Check(), "page 40: counter 8 vs 7");
}

TEST(GuestImage, BadCheckWord) {
  Image img(64);
  img.At(7, 0);
  img.Set(5, TANDEM_GUEST_W_CHECK, 12345);
  ExpectBroken(img.Check(), "page 5: check word 12345 vs " + std::to_string(tandem_guest_check(5, 64, 7)));
}

TEST(GuestImage, BadFillWordInFullMode) {
  Image img(32, /*full=*/true);
  img.At(3, 0);
  img.Set(9, 700, 99);
  ExpectBroken(img.Check(), "page 9: fill word 99 vs 3");
}

TEST(GuestImage, PageAtWrongOffset) {
  Image img(64);
  img.At(7, 0);
  std::memcpy(&img.ram()[TANDEM_GUEST_PAGES_BASE + 12 * TANDEM_GUEST_PAGE_SIZE],
              &img.ram()[TANDEM_GUEST_PAGES_BASE + 13 * TANDEM_GUEST_PAGE_SIZE], TANDEM_GUEST_PAGE_SIZE);
  auto r = img.Check();
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsCorruption());
  EXPECT_NE(r.status().message().find("page 12"), std::string::npos) << r.status().message();
}

TEST(GuestImage, NoGuestPages) {
  std::vector<uint8_t> ram(4 << 20, 0);
  auto r = CheckGuestImage(ram);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound);
}

TEST(GuestImage, ImageTooSmall) {
  std::vector<uint8_t> ram(4096, 0);
  EXPECT_EQ(CheckGuestImage(ram).status().code(), Status::Code::kNotFound);
}

TEST(GuestImage, PageCountLargerThanImage) {
  Image img(64);
  img.Set(0, TANDEM_GUEST_W_PAGES, 1u << 20);
  ExpectBroken(img.Check(), "page 0: page count 1048576 does not fit the image");
}

// The request service's page, written the way service.c does (guest_layout.h).
void SetService(Image& img, uint32_t reqs, uint32_t check_of, uint32_t pending) {
  const uint32_t words[] = {TANDEM_GUEST_SVC_MAGIC, reqs, tandem_guest_svc_check(check_of), pending,
                            TANDEM_GUEST_SVC_NIC | TANDEM_GUEST_SVC_DISK};
  std::memcpy(&img.ram()[TANDEM_GUEST_SVC_BASE], words, sizeof words);
}

TEST(GuestImage, ServicePageReportsTheRequestCounter) {
  Image img(16);
  img.At(3, 0);
  SetService(img, 41, 41, 0);
  auto r = img.Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->has_service);
  EXPECT_EQ(r->reqs, 41u);
  EXPECT_EQ(r->reqs_pending, 0u);
  EXPECT_EQ(r->service_devices, TANDEM_GUEST_SVC_NIC | TANDEM_GUEST_SVC_DISK);
}

TEST(GuestImage, NoServicePageIsNotAnError) {
  auto r = Image(16).At(3, 0).Check();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_service);
}

TEST(GuestImage, ServiceStoppedBetweenItsStoresIsConsistent) {
  // Request 42 in flight: counter already 42 but its check word still 41's.
  Image img(16);
  img.At(3, 0);
  SetService(img, 42, 41, 42);
  auto r = img.Check();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->reqs, 42u);
  EXPECT_EQ(r->reqs_pending, 42u);
}

TEST(GuestImage, ServiceCheckWordFromAnotherInstantIsBroken) {
  Image img(16);
  img.At(3, 0);
  SetService(img, 42, 41, 0);
  ExpectBroken(img.Check(), "service page: check word does not match reqs (reqs 42 pending 0 check " +
                                std::to_string(tandem_guest_svc_check(41)) + ")");
  SetService(img, 40, 40, 42);
  ExpectBroken(img.Check(), "service page: reqs is neither the pending request nor the one before (reqs 40 pending 42 check " +
                                std::to_string(tandem_guest_svc_check(40)) + ")");
}

std::vector<uint8_t> DiskWithRecords(uint32_t records, uint32_t sectors = 16) {
  std::vector<uint8_t> disk(size_t{sectors} * TANDEM_GUEST_SECTOR_SIZE, 0);
  for (uint32_t k = 1; k <= records; ++k) {
    const uint32_t w[] = {TANDEM_GUEST_REC_MAGIC, k, tandem_guest_rec_check(k)};
    std::memcpy(&disk[size_t{k} * TANDEM_GUEST_SECTOR_SIZE], w, sizeof w);
    std::memcpy(&disk[size_t{k} * TANDEM_GUEST_SECTOR_SIZE + TANDEM_GUEST_REC_W_TAIL * 4u], &k, 4);
  }
  return disk;
}

TEST(GuestDisk, LastRecordIsTheEndOfTheIntactLog) {
  EXPECT_EQ(LastDiskRecord(DiskWithRecords(0)).value(), 0u);
  EXPECT_EQ(LastDiskRecord(DiskWithRecords(5)).value(), 5u);
  EXPECT_EQ(LastDiskRecord(DiskWithRecords(15)).value(), 15u);  // full
}

TEST(GuestDisk, DamagedRecordIsCorruption) {
  auto disk = DiskWithRecords(5);
  disk[3 * TANDEM_GUEST_SECTOR_SIZE + 8] ^= 1;  // record 3's check word
  auto r = LastDiskRecord(disk);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "sector 3 is not record 3");
}

TEST(GuestDisk, RamAndDiskAgreeOnlyWithinThePendingRequest) {
  GuestImageState ram;
  ram.has_service = true;
  ram.reqs = 5;
  EXPECT_TRUE(CheckServiceMatchesDisk(ram, 5).ok());
  EXPECT_EQ(CheckServiceMatchesDisk(ram, 4).message(), "disk=4 ram=5 pending=0");  // the disk lost a record
  EXPECT_FALSE(CheckServiceMatchesDisk(ram, 6).ok());                            // RAM older than the disk
  ram.reqs_pending = 6;  // request 6 in flight: its record may or may not be on the disk yet
  EXPECT_TRUE(CheckServiceMatchesDisk(ram, 5).ok());
  EXPECT_TRUE(CheckServiceMatchesDisk(ram, 6).ok());
  EXPECT_FALSE(CheckServiceMatchesDisk(ram, 7).ok());
  EXPECT_FALSE(CheckServiceMatchesDisk(GuestImageState{}, 0).ok());
}

}  // namespace
}  // namespace tandem::testguest
