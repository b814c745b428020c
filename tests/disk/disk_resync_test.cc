// The guest's disk between a real EpochShipper and EpochReceiver over TCP: the resync compares block hashes and
// sends only the blocks that differ; the epochs after it carry the writes their checkpoints closed.
#include <gtest/gtest.h>

#include <optional>

#include "disk/block_device.h"
#include "disk/block_hash.h"
#include "disk/replica.h"
#include "disk/write_log.h"
#include "tests/disk/disk_test_util.h"
#include "tests/replicator/shipper_harness.h"

namespace tandem::replicator::shipper_testing {
namespace {

using disk::testing::Pattern;
using disk::testing::ReadWholeFile;
using disk::testing::TempDir;
using disk::testing::WriteWholeFile;

constexpr uint64_t kDisk = 4 << 20;
constexpr uint64_t kBlock = disk::kDefaultHashBlockSize;

Result<std::unique_ptr<disk::DiskReplica>> OpenStandbyDisk(const std::string& path) {
  disk::DiskReplicaOptions options;
  options.image_path = path;
  return disk::DiskReplica::Open(options);
}

// The standby's receiver over its disk and the primary's shipper of its disk, started over TCP.
struct DiskLink {
  Harness h{IoEngine::kPoll};
  std::optional<EpochReceiver> receiver;
  std::optional<EpochShipper> shipper;

  Status Start(decltype(ReceiverOptions::disk) standby, decltype(ShipperOptions::disk) primary) {
    ReceiverOptions ro = h.ReceiverOpts();
    ro.disk = standby;
    receiver.emplace(ro, SystemClock());
    TANDEM_RETURN_IF_ERROR(receiver->Start());
    ShipperOptions so = h.ShipperOpts(receiver->port());
    so.disk = primary;
    shipper.emplace(so, SystemClock());
    return h.StartShipper(*shipper);
  }
};

TEST(DiskResyncTest, TheResyncSendsOnlyTheBlocksThatDifferThenEpochsCarryTheirWrites) {
  TempDir dir;
  const std::string primary_path = dir / "primary.raw", standby_path = dir / "standby.raw";
  std::vector<uint8_t> primary_bytes = Pattern(kDisk, 1), standby_bytes = primary_bytes;
  for (uint64_t block : {3u, 17u, 63u}) standby_bytes[block * kBlock + 100] ^= 0xff;  // the standby is behind
  WriteWholeFile(primary_path, primary_bytes);
  WriteWholeFile(standby_path, standby_bytes);

  auto image = disk::ImageDevice::Open(primary_path);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  disk::EpochWriteLog log(kDisk);
  disk::ReplicatedDisk served(image->get(), &log);
  auto standby_disk = OpenStandbyDisk(standby_path);
  ASSERT_TRUE(standby_disk.ok()) << standby_disk.status().ToString();

  DiskLink link;
  ASSERT_TRUE(link.Start(standby_disk->get(), &served).ok());
  EpochShipper& shipper = *link.shipper;
  EpochReceiver& receiver = *link.receiver;
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; })) << shipper.stats().last_error;
  EXPECT_EQ(shipper.stats().disk_resync_blocks, 3u) << "only the blocks whose hash differs";
  EXPECT_EQ(ReadWholeFile(standby_path), primary_bytes);

  // The guest writes through the served disk; the checkpoint closes the epoch with its writes.
  for (uint64_t n = 1; n <= 3; ++n) {
    const std::vector<uint8_t> data = Pattern(30000, uint8_t(50 + n));
    ASSERT_TRUE(served.Write(n * 70000, data, false).ok());
    ASSERT_TRUE(served.WriteZeroes(kDisk - n * 8192, 4096, false).ok());
    std::unique_ptr<Epoch> e = shipper.Borrow();
    e->Reset(n, false);
    e->device_state().assign(10, uint8_t(n));
    auto payload = log.CloseEpoch(n);
    ASSERT_TRUE(payload.ok()) << payload.status().ToString();
    e->disk_writes() = std::move(payload).value();
    shipper.Submit(std::move(e));
  }
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == 3; })) << shipper.stats().last_error;
  receiver.Stop();
  EXPECT_EQ(receiver.resume_point()->epoch, 3u);
  std::vector<uint8_t> now(kDisk);
  ASSERT_TRUE(served.Read(0, now).ok());
  EXPECT_EQ(ReadWholeFile(standby_path), now) << "the standby's disk is the primary's as of epoch 3";
  EXPECT_EQ(receiver.stats().disk_writes_applied, 3u /*resync blocks*/ + 6u);
  shipper.Stop();
  log.Shutdown();
}

TEST(DiskResyncTest, ADiskOfAnotherSizeOnTheStandbyIsRefusedClearly) {
  TempDir dir;
  WriteWholeFile(dir / "primary.raw", Pattern(kDisk, 1));
  WriteWholeFile(dir / "standby.raw", Pattern(kDisk / 2, 1));
  auto image = disk::ImageDevice::Open(dir / "primary.raw");
  ASSERT_TRUE(image.ok());
  auto standby_disk = OpenStandbyDisk(dir / "standby.raw");
  ASSERT_TRUE(standby_disk.ok());
  DiskLink link;
  ASSERT_TRUE(link.Start(standby_disk->get(), image->get()).ok());
  EpochShipper& shipper = *link.shipper;
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_error.find("same size") != std::string::npos; }))
      << shipper.stats().last_error;
  EXPECT_FALSE(shipper.stats().standby_connected);
  shipper.Stop();
}

}  // namespace
}  // namespace tandem::replicator::shipper_testing
