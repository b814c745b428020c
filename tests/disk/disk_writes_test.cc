// The DISK_WRITES payload: what is encoded decodes to the same writes, and every defect is refused by name.
#include "disk/disk_writes.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include "common/fd.h"
#include "tests/disk/disk_test_util.h"

namespace tandem::disk {
namespace {

using testing::Pattern;

constexpr uint64_t kDisk = 1 << 20;

std::vector<uint8_t> ThreeWrites(uint64_t epoch) {
  DiskWritesEncoder enc(kDisk);
  enc.AddData(4096, Pattern(5000, 1));
  enc.Add(WriteKind::kZero, 65536, 8192);
  enc.Add(WriteKind::kTrim, kDisk - 4096, 4096);
  return enc.Finish(epoch);
}

// Recomputes the record hash as disk/README.md specifies it, so a test can damage a field behind it.
void Reseal(std::vector<uint8_t>& p) {
  StoreLe64(p.data() + 40, XXH3_64bits_withSeed(p.data() + 48, p.size() - 48, XXH3_64bits(p.data(), 40)));
}

TEST(DiskWrites, DecodesWhatWasEncodedInOrder) {
  std::vector<uint8_t> payload = ThreeWrites(7);
  auto decoded = DecodeDiskWrites(payload);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->epoch, 7u);
  EXPECT_EQ(decoded->disk_size, kDisk);
  EXPECT_EQ(decoded->data_bytes, 5000u);
  ASSERT_EQ(decoded->writes.size(), 3u);
  EXPECT_EQ(decoded->writes[0].kind, WriteKind::kData);
  EXPECT_EQ(decoded->writes[0].offset, 4096u);
  EXPECT_EQ(std::vector<uint8_t>(decoded->writes[0].data.begin(), decoded->writes[0].data.end()), Pattern(5000, 1));
  EXPECT_EQ(decoded->writes[1].kind, WriteKind::kZero);
  EXPECT_EQ(decoded->writes[1].length, 8192u);
  EXPECT_EQ(decoded->writes[2].kind, WriteKind::kTrim);
  EXPECT_EQ(decoded->writes[2].offset, kDisk - 4096);
  EXPECT_EQ(payload.size(), kDiskWritesHeaderSize + 3 * kDiskWriteEntryHeaderSize + 5000);
}

TEST(DiskWrites, AnEpochWithoutWritesIsJustTheHeader) {
  DiskWritesEncoder enc(kDisk);
  std::vector<uint8_t> payload = enc.Finish(3);
  EXPECT_EQ(payload.size(), kDiskWritesHeaderSize);
  auto decoded = DecodeDiskWrites(payload);
  ASSERT_TRUE(decoded.ok());
  EXPECT_TRUE(decoded->writes.empty());
}

TEST(DiskWrites, TheEncoderStartsEmptyAfterFinish) {
  DiskWritesEncoder enc(kDisk);
  enc.AddData(0, Pattern(10, 1));
  (void)enc.Finish(1);
  enc.AddData(100, Pattern(10, 2));
  auto decoded = DecodeDiskWrites(enc.Finish(2));
  ASSERT_TRUE(decoded.ok());
  ASSERT_EQ(decoded->writes.size(), 1u);
  EXPECT_EQ(decoded->writes[0].offset, 100u);
}

TEST(DiskWrites, EveryFlippedByteIsRefused) {
  const std::vector<uint8_t> good = ThreeWrites(7);
  for (size_t i = 0; i < good.size(); i += (i < 200 ? 1 : 97)) {
    std::vector<uint8_t> bad = good;
    bad[i] ^= 0x10;
    auto decoded = DecodeDiskWrites(bad);
    EXPECT_FALSE(decoded.ok()) << "byte " << i;
  }
}

TEST(DiskWrites, RefusesBadMagicVersionAndTruncationByName) {
  std::vector<uint8_t> p = ThreeWrites(1);
  auto magic = p;
  magic[0] = 'X';
  EXPECT_NE(DecodeDiskWrites(magic).status().message().find("magic"), std::string::npos);
  auto version = p;
  version[4] = 2;
  EXPECT_TRUE(DecodeDiskWrites(version).status().IsUnsupported());
  auto shorter = p;
  shorter.resize(p.size() - 1);
  Reseal(shorter);
  EXPECT_TRUE(DecodeDiskWrites(shorter).status().IsCorruption());
  EXPECT_NE(DecodeDiskWrites(std::span(p).first(20)).status().message().find("header"), std::string::npos);
  auto longer = p;
  longer.push_back(0);
  Reseal(longer);
  EXPECT_NE(DecodeDiskWrites(longer).status().message().find("after the last entry"), std::string::npos);
}

TEST(DiskWrites, RefusesAnEntryBeyondTheDiskEvenWithValidChecksums) {
  DiskWritesEncoder enc(kDisk);
  enc.Add(WriteKind::kZero, kDisk - 4096, 8192);  // the encoder trusts its caller; the decoder trusts nobody
  auto decoded = DecodeDiskWrites(enc.Finish(1));
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("beyond"), std::string::npos) << decoded.status().ToString();
}

TEST(DiskWrites, RefusesAnEntryWhoseOwnChecksumFails) {
  std::vector<uint8_t> p = ThreeWrites(1);
  p[kDiskWritesHeaderSize + kDiskWriteEntryHeaderSize + 10] ^= 1;  // a data byte of entry 0
  Reseal(p);                                                        // the record hash alone would pass
  auto decoded = DecodeDiskWrites(p);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("entry 0: checksum"), std::string::npos) << decoded.status().ToString();
}

TEST(DiskWrites, RefusesACountThePayloadCannotHold) {
  std::vector<uint8_t> p = ThreeWrites(1);
  StoreLe32(p.data() + 24, 0xffffffff);
  Reseal(p);
  auto decoded = DecodeDiskWrites(p);
  ASSERT_FALSE(decoded.ok());
  EXPECT_NE(decoded.status().message().find("does not fit"), std::string::npos);
}

}  // namespace
}  // namespace tandem::disk
