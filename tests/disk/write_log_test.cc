// The primary's epoch write log: cut exactly at CloseEpoch, bounded, and in step with the local image.
#include "disk/write_log.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>

#include "common/fd.h"
#include "tests/disk/disk_test_util.h"

namespace tandem::disk {
namespace {

using namespace std::chrono_literals;
using namespace testing;  // the disk tests' helpers (disk_test_util.h)

constexpr uint64_t kDisk = 1 << 20;

DiskWrites Decoded(const std::vector<uint8_t>& payload) {
  auto d = DecodeDiskWrites(payload);
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  return d.ok() ? std::move(d).value() : DiskWrites{};
}

size_t WritesIn(EpochWriteLog& log, uint64_t epoch) {
  auto payload = log.CloseEpoch(epoch);
  EXPECT_TRUE(payload.ok());
  return payload.ok() ? Decoded(*payload).writes.size() : 0;
}

class ReplicatedDiskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteWholeFile(dir_ / "disk.img", Pattern(kDisk, 9));
    auto image = ImageDevice::Open(dir_ / "disk.img");
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    image_ = std::move(image).value();
  }
  void MakeLog(WriteLogOptions options = {}) {
    log_ = std::make_unique<EpochWriteLog>(kDisk, std::move(options));
    disk_ = std::make_unique<ReplicatedDisk>(image_.get(), log_.get());
  }

  TempDir dir_;
  std::unique_ptr<ImageDevice> image_;
  std::unique_ptr<EpochWriteLog> log_;
  std::unique_ptr<ReplicatedDisk> disk_;
};

TEST_F(ReplicatedDiskTest, WritesBeforeCloseEpochAreInItAndLaterOnesInTheNext) {
  MakeLog();
  ASSERT_TRUE(disk_->Write(0, Pattern(4096, 1), false).ok());
  ASSERT_TRUE(disk_->WriteZeroes(8192, 4096, false).ok());
  auto first = log_->CloseEpoch(5);
  ASSERT_TRUE(first.ok());
  ASSERT_TRUE(disk_->Trim(16384, 4096, false).ok());
  auto second = log_->CloseEpoch(6);
  ASSERT_TRUE(second.ok());
  auto third = log_->CloseEpoch(7);
  ASSERT_TRUE(third.ok());

  DiskWrites a = Decoded(*first), b = Decoded(*second), c = Decoded(*third);
  EXPECT_EQ(a.epoch, 5u);
  ASSERT_EQ(a.writes.size(), 2u);
  EXPECT_EQ(a.writes[0].kind, WriteKind::kData);
  EXPECT_EQ(a.writes[1].kind, WriteKind::kZero);
  ASSERT_EQ(b.writes.size(), 1u);
  EXPECT_EQ(b.writes[0].kind, WriteKind::kTrim);
  EXPECT_EQ(b.writes[0].offset, 16384u);
  EXPECT_TRUE(c.writes.empty());
}

TEST_F(ReplicatedDiskTest, TheGuestReadsItsOwnWritesFromTheLocalImage) {
  MakeLog();
  ASSERT_TRUE(disk_->Write(12345, Pattern(1000, 3), true).ok());
  std::vector<uint8_t> back(1000);
  ASSERT_TRUE(disk_->Read(12345, back).ok());
  EXPECT_EQ(back, Pattern(1000, 3));
  ASSERT_TRUE(disk_->WriteZeroes(12345, 100, false).ok());
  ASSERT_TRUE(disk_->Trim(12445, 100, false).ok());
  ASSERT_TRUE(disk_->Read(12345, back).ok());
  for (size_t i = 0; i < 200; ++i) ASSERT_EQ(back[i], 0) << i;
  EXPECT_EQ(back[200], Pattern(1000, 3)[200]);
  auto file = ReadWholeFile(dir_ / "disk.img");
  EXPECT_EQ(file[12345 + 300], Pattern(1000, 3)[300]);
}

TEST_F(ReplicatedDiskTest, EpochNumbersMustIncrease) {
  MakeLog();
  ASSERT_TRUE(log_->CloseEpoch(4).ok());
  EXPECT_FALSE(log_->CloseEpoch(4).ok());
  EXPECT_FALSE(log_->CloseEpoch(3).ok());
  EXPECT_TRUE(log_->CloseEpoch(5).ok());
}

TEST_F(ReplicatedDiskTest, EveryWriteLandsInExactlyOneEpochWhileEpochsAreCutConcurrently) {
  MakeLog();
  constexpr int kWrites = 3000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < kWrites; ++i) {
      uint8_t tag[8];
      StoreLe64(tag, uint64_t(i));
      ASSERT_TRUE(disk_->Write(uint64_t(i % 1000) * 512, tag, false).ok());
    }
    done = true;
  });
  std::vector<uint64_t> seen;
  uint64_t epoch = 1;
  for (bool last = false; !last;) {
    last = done.load();
    auto payload = log_->CloseEpoch(epoch++);
    ASSERT_TRUE(payload.ok());
    for (const DiskWrite& w : Decoded(*payload).writes) seen.push_back(LoadLe64(w.data.data()));
    log_->Recycle(std::move(payload).value());
  }
  writer.join();
  ASSERT_EQ(seen.size(), size_t(kWrites));
  for (int i = 0; i < kWrites; ++i) ASSERT_EQ(seen[size_t(i)], uint64_t(i));
  EXPECT_GT(log_->stats().closed_epochs, 1u);
}

TEST_F(ReplicatedDiskTest, AFullLogHoldsTheNextWriteUntilTheEpochIsClosed) {
  std::atomic<int> full_calls{0};
  MakeLog({.byte_limit = 100 << 10, .on_full = [&] { ++full_calls; }});
  ASSERT_TRUE(disk_->Write(0, Pattern(64 << 10, 1), false).ok());
  ASSERT_TRUE(disk_->Write(64 << 10, Pattern(64 << 10, 2), false).ok());  // under the limit when it started
  auto held = std::async(std::launch::async, [&] { return disk_->Write(128 << 10, Pattern(4096, 3), false); });
  EXPECT_EQ(held.wait_for(150ms), std::future_status::timeout);
  EXPECT_EQ(full_calls.load(), 1);
  EXPECT_EQ(WritesIn(*log_, 1), 2u);  // the held write is not in the closed epoch
  ASSERT_EQ(held.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(held.get().ok());
  EXPECT_EQ(WritesIn(*log_, 2), 1u);
  EXPECT_EQ(log_->stats().held_writes, 1u);
}

TEST_F(ReplicatedDiskTest, ACheckpointRequestLetsHeldWritesThroughSoTheDrainCanFinish) {
  WriteLogOptions options;
  options.byte_limit = 64 << 10;
  MakeLog(options);
  ASSERT_TRUE(disk_->Write(0, Pattern(64 << 10, 1), false).ok());
  auto held = std::async(std::launch::async, [&] { return disk_->Write(0, Pattern(4096, 3), false); });
  EXPECT_EQ(held.wait_for(100ms), std::future_status::timeout);
  log_->CheckpointRequested();
  ASSERT_EQ(held.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(held.get().ok());
  // Both are in the epoch the checkpoint closes: the write completed before the VM stopped.
  EXPECT_EQ(WritesIn(*log_, 1), 2u);
  // After the close the limit applies again.
  ASSERT_TRUE(disk_->Write(0, Pattern(64 << 10, 1), false).ok());
  auto again = std::async(std::launch::async, [&] { return disk_->Write(0, Pattern(10, 3), false); });
  EXPECT_EQ(again.wait_for(100ms), std::future_status::timeout);
  log_->Shutdown();
  ASSERT_EQ(again.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(again.get().code(), Status::Code::kAborted);
}

// A write that fails on the primary half-way must still leave both hosts reading the same bytes there.
class ShortWriteDevice : public BlockDevice {
 public:
  explicit ShortWriteDevice(BlockDevice* base) : base_(base) {}
  uint64_t size() const override { return base_->size(); }
  Status Read(uint64_t o, std::span<uint8_t> out) override { return base_->Read(o, out); }
  Status Write(uint64_t o, std::span<const uint8_t> d, bool fua) override {
    (void)base_->Write(o, d.first(d.size() / 2), fua);
    return FileError("pwrite", ENOSPC);
  }
  Status WriteZeroes(uint64_t o, uint64_t l, bool fua) override { return base_->WriteZeroes(o, l, fua); }
  Status Trim(uint64_t o, uint64_t l, bool fua) override { return base_->Trim(o, l, fua); }
  Status Flush() override { return base_->Flush(); }

 private:
  BlockDevice* base_;
};

TEST_F(ReplicatedDiskTest, AFailedWriteShipsWhatTheLocalImageHoldsNotWhatWasAsked) {
  ShortWriteDevice shorted(image_.get());
  EpochWriteLog log(kDisk);
  ReplicatedDisk disk(&shorted, &log);
  Status st = disk.Write(8192, Pattern(4096, 5), false);
  EXPECT_TRUE(IsNoSpace(st)) << st.ToString();
  auto payload = log.CloseEpoch(1);
  ASSERT_TRUE(payload.ok());
  DiskWrites w = Decoded(*payload);
  ASSERT_EQ(w.writes.size(), 1u);
  std::vector<uint8_t> local(4096);
  ASSERT_TRUE(image_->Read(8192, local).ok());
  EXPECT_EQ(std::vector<uint8_t>(w.writes[0].data.begin(), w.writes[0].data.end()), local);
  EXPECT_NE(local, Pattern(4096, 5));
}

}  // namespace
}  // namespace tandem::disk
