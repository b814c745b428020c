// GuestRam: the primary reads the guest's RAM from QEMU's shared file instead of a mirror. Maps a real file, sees
// what another mapping (QEMU's) writes, keeps the small blocks as copies, and a resync read from RAM while the
// guest runs ends up exact once the epochs that followed the read are applied (the argument in guest_ram.h).
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "replicator/guest_ram.h"
#include "replicator/page_codec.h"

namespace tandem::replicator {
namespace {

constexpr uint64_t kMemPages = 256, kRomPages = 4;

VmDescriptor Vm() {
  VmDescriptor d;
  d.vm_name = "live";
  d.ram_blocks = {{"mem", kMemPages * kPageSize}, {"rom", kRomPages * kPageSize}};
  return d;
}

// QEMU's side: the RAM file and the guest's (read-write, shared) mapping of it.
class GuestRamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tandem-guest-ram.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/ram";
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(ftruncate(fd, kMemPages * kPageSize), 0);
    void* p = mmap(nullptr, kMemPages * kPageSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ::close(fd);
    ASSERT_NE(p, MAP_FAILED);
    guest_ = static_cast<uint8_t*>(p);
  }
  void TearDown() override {
    if (guest_ != nullptr) munmap(guest_, kMemPages * kPageSize);
    std::filesystem::remove_all(dir_);
  }
  std::unique_ptr<GuestRam> Open() {
    auto ram = GuestRam::Open(Vm(), {{"mem", path_}});
    EXPECT_TRUE(ram.ok()) << ram.status().ToString();
    return ram.ok() ? std::move(ram).value() : nullptr;
  }
  uint8_t* GuestPage(uint64_t page) { return guest_ + page * kPageSize; }

  std::string dir_, path_;
  uint8_t* guest_ = nullptr;
};

TEST_F(GuestRamTest, ReadsWhatTheGuestWroteThroughItsOwnMapping) {
  auto ram = Open();
  ASSERT_NE(ram, nullptr);
  EXPECT_TRUE(ram->live(0));
  EXPECT_FALSE(ram->live(1));
  EXPECT_EQ(ram->copied_bytes(), kRomPages * kPageSize) << "only the small block is held as a copy";
  std::vector<uint8_t> page(kPageSize);
  for (int round = 0; round < 3; ++round) {
    memset(GuestPage(17), 0x40 + round, kPageSize);
    GuestPage(17)[100] = uint8_t(round);
    ASSERT_TRUE(ram->ReadPage(0, 17 * kPageSize, page.data()));
    EXPECT_EQ(memcmp(page.data(), GuestPage(17), kPageSize), 0) << round;
    EXPECT_EQ(ram->image().Page(0, 17 * kPageSize)[100], uint8_t(round));
  }
  EXPECT_FALSE(ram->ReadPage(0, kMemPages * kPageSize, page.data()));
  EXPECT_FALSE(ram->ReadPage(2, 0, page.data()));
}

TEST_F(GuestRamTest, PrecopyFillsTheCopiesAndLeavesTheGuestsRamAlone) {
  memset(GuestPage(3), 0x11, kPageSize);
  auto ram = Open();
  ASSERT_NE(ram, nullptr);
  PageSink* precopy = ram.get();
  uint8_t* live = precopy->PageBuffer(0, 3 * kPageSize);
  ASSERT_NE(live, nullptr);
  memset(live, 0x99, kPageSize);  // dropped: the guest's RAM is the file itself
  EXPECT_EQ(GuestPage(3)[0], 0x11);
  EXPECT_TRUE(precopy->FilledPage(0, 3 * kPageSize, 0x77));
  EXPECT_EQ(GuestPage(3)[0], 0x11);
  memset(precopy->PageBuffer(1, kPageSize), 0x22, kPageSize);
  EXPECT_TRUE(precopy->FilledPage(1, 2 * kPageSize, 0x33));
  EXPECT_EQ(ram->image().Page(1, kPageSize)[4095], 0x22);
  EXPECT_EQ(ram->image().Page(1, 2 * kPageSize)[0], 0x33);
  EXPECT_EQ(precopy->PageBuffer(1, kRomPages * kPageSize), nullptr);
  EXPECT_FALSE(precopy->FilledPage(0, kMemPages * kPageSize, 0));
}

TEST_F(GuestRamTest, FoldKeepsTheCopiesCurrentAndWritesNothingIntoTheGuest) {
  auto ram = Open();
  ASSERT_NE(ram, nullptr);
  memset(GuestPage(5), 0x5a, kPageSize);
  Epoch epoch;
  epoch.Reset(1, false);
  memset(epoch.PageBuffer(0, 5 * kPageSize), 0xee, kPageSize);  // QEMU's copy: the file has it already
  memset(epoch.PageBuffer(1, 0), 0xab, kPageSize);
  epoch.FilledPage(1, 3 * kPageSize, 0x01);
  ASSERT_TRUE(ram->Fold(epoch).ok());
  EXPECT_EQ(GuestPage(5)[0], 0x5a);
  EXPECT_EQ(ram->image().Page(1, 0)[7], 0xab);
  EXPECT_EQ(ram->image().Page(1, 3 * kPageSize)[4095], 0x01);

  Epoch bad;
  bad.Reset(2, false);
  memset(bad.PageBuffer(1, kPageSize), 0xcd, kPageSize);
  memset(bad.PageBuffer(1, kRomPages * kPageSize), 0xcd, kPageSize);  // past the block
  EXPECT_FALSE(ram->Fold(bad).ok());
  EXPECT_EQ(ram->image().Page(1, kPageSize)[0], 0) << "a bad epoch must write nothing";
}

// A resync sends the file's holes as zero pages without reading them through the mapping (which would allocate
// them): Holes() finds them. The file here is fresh, so only the pages written are data.
TEST_F(GuestRamTest, HolesAreThePagesOfTheGuestsFileNeverWritten) {
  auto ram = Open();
  ASSERT_NE(ram, nullptr);
  EXPECT_TRUE(ram->Holes(0).InHole(0)) << "a fresh file is one hole";
  EXPECT_TRUE(ram->Holes(0).InHole((kMemPages - 1) * kPageSize));
  GuestPage(3)[1] = 1;
  for (uint64_t page = 100; page < 103; ++page) GuestPage(page)[4095] = 2;
  ASSERT_EQ(msync(guest_, kMemPages * kPageSize, MS_SYNC), 0);
  const FileHoles holes = ram->Holes(0);
  uint64_t data_pages = 0;
  for (uint64_t page = 0; page < kMemPages; ++page) data_pages += holes.InHole(page * kPageSize) ? 0 : 1;
  // Filesystems report data in blocks of their own; never fewer pages than were written, never most of the file.
  EXPECT_GE(data_pages, 4u);
  EXPECT_LT(data_pages, kMemPages / 2);
  EXPECT_FALSE(holes.InHole(3 * kPageSize));
  for (uint64_t page = 100; page < 103; ++page) EXPECT_FALSE(holes.InHole(page * kPageSize)) << page;
  EXPECT_FALSE(ram->Holes(1).InHole(kPageSize)) << "a copied block is all data";
}

TEST_F(GuestRamTest, RefusesAFileThatIsMissingTooSmallOrForAnUnknownBlock) {
  EXPECT_FALSE(GuestRam::Open(Vm(), {{"mem", dir_ + "/absent"}}).ok());
  EXPECT_FALSE(GuestRam::Open(Vm(), {{"pc.ram", path_}}).ok());
  VmDescriptor larger = Vm();
  larger.ram_blocks[0].size_bytes *= 2;
  auto r = GuestRam::Open(larger, {{"mem", path_}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("holds"), std::string::npos) << r.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/absent")) << "a missing guest RAM file must not be created";
}

TEST_F(GuestRamTest, AReadOnlyBlockRefusesEveryWrite) {
  auto image = RamImage::Create(Vm(), {}, {{"mem", path_}});
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  EXPECT_EQ((*image)->PageBuffer(0, 0), nullptr);
  EXPECT_FALSE((*image)->FilledPage(0, 0, 1));
  Epoch epoch;
  epoch.Reset(1, false);
  memset(epoch.PageBuffer(1, 0), 1, kPageSize);
  memset(epoch.PageBuffer(0, 0), 1, kPageSize);
  EXPECT_FALSE((*image)->Apply(epoch).ok());
  EXPECT_EQ((*image)->Page(1, 0)[0], 0) << "all or nothing";
}

// The guest keeps running while a resync reads its RAM page by page, and checkpoints keep being taken and
// submitted. The standby that applies the resync and then every epoch up to X (the one open when the read
// ended: last submitted + 1) holds RAM exactly as of checkpoint X; before X it may not.
TEST_F(GuestRamTest, AResyncReadWhileTheGuestRunsIsExactOnceTheEpochsAfterTheReadAreApplied) {
  auto ram = Open();
  ASSERT_NE(ram, nullptr);
  std::mt19937_64 rng(5);
  for (uint64_t i = 0; i < kMemPages * kPageSize; i += 8) {
    const uint64_t v = rng();
    memcpy(guest_ + i, &v, 8);
  }
  std::set<uint64_t> dirty;  // QEMU's dirty log of the open epoch
  std::vector<Epoch> epochs;  // submitted epochs, numbered 1, 2, ...
  std::map<uint64_t, std::vector<uint8_t>> at_checkpoint;
  auto guest_writes = [&](int writes) {
    for (int w = 0; w < writes; ++w) {
      const uint64_t page = rng() % kMemPages;
      const uint64_t v = rng();
      memcpy(GuestPage(page) + (rng() % (kPageSize / 8)) * 8, &v, 8);
      dirty.insert(page);
    }
  };
  auto checkpoint = [&] {  // pause, send the dirty pages, submit (the VM resumes only after that)
    Epoch& e = epochs.emplace_back();
    e.Reset(epochs.size(), false);
    for (uint64_t page : dirty) memcpy(e.PageBuffer(0, page * kPageSize), GuestPage(page), kPageSize);
    dirty.clear();
    at_checkpoint[e.number()] = std::vector<uint8_t>(guest_, guest_ + kMemPages * kPageSize);
  };
  for (int i = 0; i < 5; ++i) guest_writes(20), checkpoint();
  const uint64_t resync_as_of = epochs.size();  // M: its device state and dirty history

  std::vector<uint8_t> standby(kMemPages * kPageSize);
  for (uint64_t page = 0; page < kMemPages; ++page) {
    guest_writes(int(rng() % 3));
    if (rng() % 40 == 0) checkpoint();
    ASSERT_TRUE(ram->ReadPage(0, page * kPageSize, &standby[page * kPageSize]));
  }
  const uint64_t settles_at = epochs.size() + 1;  // X
  ASSERT_GT(settles_at, resync_as_of + 2) << "the read should span checkpoints";
  for (int i = 0; i < 3; ++i) guest_writes(20), checkpoint();

  auto apply = [&](const Epoch& e) {
    for (const PageRecord& p : e.pages()) memcpy(&standby[p.offset], e.PageData(p), kPageSize);
  };
  for (uint64_t n = resync_as_of + 1; n < settles_at; ++n) apply(epochs[n - 1]);
  EXPECT_NE(standby, at_checkpoint[settles_at - 1]) << "before X the replica mixes ages (this seed: it does)";
  apply(epochs[settles_at - 1]);
  EXPECT_EQ(standby, at_checkpoint[settles_at]) << "after X the replica is checkpoint X";
  apply(epochs[settles_at]);
  EXPECT_EQ(standby, at_checkpoint[settles_at + 1]);
}

}  // namespace
}  // namespace tandem::replicator
