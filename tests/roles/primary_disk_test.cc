// The primary role with a [disk]: tandem serves the image over NBD (a real socket, a real NBD client playing
// QEMU), and the writes the guest completed before checkpoint N are exactly epoch N's DISK_WRITES.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <libnbd.h>
#include <unistd.h>

#include "disk/disk_writes.h"
#include "roles/disk.h"
#include "roles/primary.h"
#include "tests/qemu/qemu_test_util.h"
#include "tests/roles/fakes.h"

namespace tandem::roles {
namespace {

using qemu::testing::TempDir;

constexpr uint64_t kDisk = 1 << 20;

struct NbdCloser {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};

TEST(PrimaryDiskTest, WritesCompletedBeforeCheckpointNTravelInEpochN) {
  TempDir dir;
  const std::string image = dir / "disk.raw";
  {
    const int fd = ::open(image.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, kDisk), 0);
    ::close(fd);
  }
  PrimaryOptions options;
  options.vm_name = "vm7";
  options.state_dir = dir.path();
  options.epoch_ms = 20;
  options.disk = DiskOptions{image, 64 << 20};
  FakeClock clock;
  testing::FakeHost host;
  host.qemu.clock = &clock;
  testing::FakeGuard guard{7};
  Shutdown shutdown;
  testing::ShipperLog shipped;
  std::unique_ptr<nbd_handle, NbdCloser> nbd;
  constexpr int kCheckpoints = 3;
  host.qemu.checkpoints = kCheckpoints + 1;
  // The guest of epoch k writes (and is told the writes completed) before checkpoint k.
  host.qemu.before_checkpoint = [&](int k) {
    if (k > kCheckpoints) {
      shutdown.Request();
      return Status::Ok();
    }
    if (!nbd) {
      nbd.reset(nbd_create());
      EXPECT_EQ(nbd_set_export_name(nbd.get(), "vm7"), 0);
      EXPECT_EQ(nbd_connect_unix(nbd.get(), DiskSocketIn(dir.path()).c_str()), 0) << nbd_get_error();
    }
    std::vector<uint8_t> data(512, uint8_t(k));
    EXPECT_EQ(nbd_pwrite(nbd.get(), data.data(), data.size(), uint64_t(k) * 4096, 0), 0) << nbd_get_error();
    if (k == 2) {
      EXPECT_EQ(nbd_zero(nbd.get(), 65536, 8192, 0), 0) << nbd_get_error();
    }
    return Status::Ok();
  };
  PrimaryEnv env{&clock, &host, &guard, &shutdown, [&](uint64_t term, disk::BlockDevice* disk) {
                   shipped.term = term;
                   shipped.disk = disk;
                   return std::unique_ptr<EpochShipping>(std::make_unique<testing::FakeShipper>(&shipped));
                 }};
  EXPECT_EQ(RunPrimaryRole(options, env), kExitOk);

  EXPECT_NE(shipped.disk, nullptr) << "the shipper reads the disk for resyncs";
  ASSERT_EQ(shipped.submitted, (std::vector<uint64_t>{1, 2, 3}));
  ASSERT_EQ(shipped.disk_writes.size(), 3u);
  for (int k = 1; k <= kCheckpoints; ++k) {
    auto writes = disk::DecodeDiskWrites(shipped.disk_writes[k - 1]);
    ASSERT_TRUE(writes.ok()) << writes.status().ToString();
    EXPECT_EQ(writes->epoch, uint64_t(k));
    EXPECT_EQ(writes->disk_size, kDisk);
    ASSERT_EQ(writes->writes.size(), k == 2 ? 2u : 1u) << "epoch " << k << " holds its own writes only";
    EXPECT_EQ(writes->writes[0].offset, uint64_t(k) * 4096);
    EXPECT_EQ(writes->writes[0].data[0], uint8_t(k));
    if (k == 2) {
      EXPECT_EQ(writes->writes[1].kind, disk::WriteKind::kZero);
    }
  }
  // The local image is what the guest wrote.
  std::vector<uint8_t> sector(512);
  const int fd = ::open(image.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_EQ(::pread(fd, sector.data(), 512, 3 * 4096), 512);
  ::close(fd);
  EXPECT_EQ(sector, std::vector<uint8_t>(512, 3));
  EXPECT_FALSE(::access(DiskSocketIn(dir.path()).c_str(), F_OK) == 0) << "the socket goes with the role";
}

}  // namespace
}  // namespace tandem::roles
