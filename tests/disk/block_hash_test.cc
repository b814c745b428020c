// Resync by hashes: exactly the blocks that differ are found, sent, and make the standby's image equal.
#include "disk/block_hash.h"

#include <gtest/gtest.h>

#include "disk/replica.h"
#include "tests/disk/disk_test_util.h"

namespace tandem::disk {
namespace {

using namespace testing;  // the disk tests' helpers (disk_test_util.h)

constexpr uint64_t kBlock = 64 << 10;
constexpr uint64_t kDisk = 40 * kBlock + 12345;  // a short last block

class BlockHashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteWholeFile(primary_path_, Pattern(kDisk, 3));
    WriteWholeFile(standby_path_, Pattern(kDisk, 3));
  }
  BlockHashes Hash(const std::string& path) {
    auto file = DefaultFileSystem()->Open(path, FileSystem::Mode::kReadOnly);
    EXPECT_TRUE(file.ok());
    auto hashes = HashBlocks(**file, kBlock);
    EXPECT_TRUE(hashes.ok()) << hashes.status().ToString();
    return std::move(hashes).value();
  }
  void Poke(const std::string& path, uint64_t offset, uint8_t value) {
    std::vector<uint8_t> bytes = ReadWholeFile(path);
    bytes[offset] = value;
    WriteWholeFile(path, bytes);
  }

  TempDir dir_;
  std::string primary_path_ = dir_ / "primary.img", standby_path_ = dir_ / "standby.img";
};

TEST_F(BlockHashTest, EqualImagesNeedNothing) {
  EXPECT_TRUE(BlocksToSend(Hash(primary_path_), Hash(standby_path_)).empty());
  EXPECT_EQ(Hash(primary_path_).hashes.size(), 41u);
}

TEST_F(BlockHashTest, FindsExactlyTheChangedBlocks) {
  Poke(primary_path_, 3 * kBlock, 0x11);            // first byte of block 3
  Poke(primary_path_, 18 * kBlock - 1, 0x22);       // last byte of block 17
  Poke(standby_path_, kDisk - 1, 0x33);             // the short last block, changed on the standby's side
  EXPECT_EQ(BlocksToSend(Hash(primary_path_), Hash(standby_path_)), (std::vector<uint64_t>{3, 17, 40}));
}

TEST_F(BlockHashTest, IncomparableListsMeanEveryBlock) {
  BlockHashes p = Hash(primary_path_), s = Hash(standby_path_);
  s.disk_size -= 1;
  EXPECT_EQ(BlocksToSend(p, s).size(), p.hashes.size());
  s = Hash(standby_path_);
  s.hashes.pop_back();
  EXPECT_EQ(BlocksToSend(p, s).size(), p.hashes.size());
}

TEST_F(BlockHashTest, RefusesBlockSizesThatAreNotPowersOfTwo) {
  auto file = DefaultFileSystem()->Open(primary_path_, FileSystem::Mode::kReadOnly);
  ASSERT_TRUE(file.ok());
  EXPECT_FALSE(HashBlocks(**file, 5000).ok());
  EXPECT_FALSE(HashBlocks(**file, 1024).ok());
}

TEST_F(BlockHashTest, TheHashListSurvivesTheWireAndDamageIsRefused) {
  BlockHashes h = Hash(primary_path_);
  std::vector<uint8_t> bytes = EncodeBlockHashes(h);
  auto back = DecodeBlockHashes(bytes);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->hashes, h.hashes);
  EXPECT_EQ(back->disk_size, kDisk);
  EXPECT_EQ(back->block_size, kBlock);
  for (size_t i : {size_t(0), size_t(9), size_t(30), bytes.size() - 1}) {
    std::vector<uint8_t> bad = bytes;
    bad[i] ^= 1;
    EXPECT_FALSE(DecodeBlockHashes(bad).ok()) << i;
  }
  EXPECT_FALSE(DecodeBlockHashes(std::span(bytes).first(bytes.size() - 8)).ok());
}

TEST_F(BlockHashTest, SendingTheDifferingBlocksMakesTheStandbyEqual) {
  for (uint64_t at : {uint64_t(0), 7 * kBlock + 5, 39 * kBlock, kDisk - 2}) Poke(primary_path_, at, 0x5a);
  auto primary = ImageDevice::Open(primary_path_);
  ASSERT_TRUE(primary.ok());
  DiskReplicaOptions options;
  options.image_path = standby_path_;
  auto replica = DiskReplica::Open(options);
  ASSERT_TRUE(replica.ok());
  auto standby_hashes = HashBlocks((*replica)->image(), kBlock);
  ASSERT_TRUE(standby_hashes.ok());

  std::vector<uint64_t> blocks = BlocksToSend(Hash(primary_path_), *standby_hashes);
  EXPECT_EQ(blocks, (std::vector<uint64_t>{0, 7, 39, 40}));
  DiskWritesEncoder enc(kDisk);
  ASSERT_TRUE(AppendBlocks(**primary, kBlock, blocks, &enc).ok());
  ASSERT_TRUE((*replica)->Apply(enc.Finish(1)).ok());
  EXPECT_EQ(ReadWholeFile(standby_path_), ReadWholeFile(primary_path_));
  EXPECT_FALSE(AppendBlocks(**primary, kBlock, std::vector<uint64_t>{41}, &enc).ok());  // beyond the disk
}

}  // namespace
}  // namespace tandem::disk
