// PageFingerprints: a page whose standby copy is known only by its chunks' fingerprints still travels as what
// changed (a kSparse payload the standby applies to its copy), and never from fingerprints that are not its
// copy's.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "replicator/page_codec.h"
#include "replicator/page_fingerprints.h"

namespace tandem::replicator {
namespace {

constexpr uint64_t kPages = 8;

std::unique_ptr<PageFingerprints> Make() {
  auto fp = PageFingerprints::Create({{"mem", kPages * kPageSize}, {"rom", kPageSize}});
  EXPECT_TRUE(fp.ok()) << fp.status().ToString();
  return std::move(fp).value();
}

std::vector<uint8_t> RandomPage(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> page(kPageSize);
  for (size_t i = 0; i < kPageSize; i += 8) {
    const uint64_t v = rng();
    memcpy(&page[i], &v, 8);
  }
  return page;
}

std::vector<uint8_t> Patched(const std::vector<uint8_t>& copy, const uint8_t* payload, uint32_t size) {
  EXPECT_TRUE(CheckSparsePatch(payload, size).ok());
  std::vector<uint8_t> page = copy;
  ApplySparsePatch(payload, size, page.data());
  return page;
}

TEST(PageFingerprintsTest, TheChangedChunksTurnTheStandbysCopyIntoThePage) {
  auto fp = Make();
  const std::vector<uint8_t> copy = RandomPage(1);
  fp->Record(0, 3 * kPageSize, copy.data());
  std::vector<uint8_t> page = copy;
  page[8] ^= 1;           // chunk 0
  page[70] ^= 1;          // chunk 1: a run of two chunks
  page[4095] ^= 0x80;     // chunk 63
  std::vector<uint8_t> out(kPageSize);
  const uint32_t size = fp->ChangedChunks(0, 3 * kPageSize, page.data(), out.data(), kPageSize);
  EXPECT_EQ(size, 2 * 4 + 3 * PageFingerprints::kChunkBytes) << "two runs: chunks 0-1 and chunk 63";
  EXPECT_EQ(Patched(copy, out.data(), size), page);
  EXPECT_EQ(fp->ChangedChunks(0, 3 * kPageSize, copy.data(), out.data(), kPageSize), 0u) << "unchanged";
}

TEST(PageFingerprintsTest, APageWithoutKnownFingerprintsOrWithTooManyChangesGoesStandalone) {
  auto fp = Make();
  const std::vector<uint8_t> copy = RandomPage(2), other = RandomPage(3);
  std::vector<uint8_t> out(kPageSize);
  EXPECT_EQ(fp->ChangedChunks(0, 0, copy.data(), out.data(), kPageSize), PageFingerprints::kNotKnown);
  fp->Record(0, 0, copy.data());
  EXPECT_EQ(fp->ChangedChunks(0, 0, other.data(), out.data(), kPageSize / 2), PageFingerprints::kNotKnown);
  EXPECT_EQ(fp->ChangedChunks(0, kPageSize, copy.data(), out.data(), kPageSize), PageFingerprints::kNotKnown)
      << "a neighbour's fingerprints are not this page's";
  EXPECT_EQ(fp->ChangedChunks(0, kPages * kPageSize, copy.data(), out.data(), kPageSize), PageFingerprints::kNotKnown);
  fp->Forget(0, 0);
  EXPECT_EQ(fp->ChangedChunks(0, 0, copy.data(), out.data(), kPageSize), PageFingerprints::kNotKnown);
  fp->Record(1, 0, copy.data());
  fp->ForgetAll();
  EXPECT_EQ(fp->ChangedChunks(1, 0, copy.data(), out.data(), kPageSize), PageFingerprints::kNotKnown);
  EXPECT_EQ(fp->memory_bytes(), (kPages + 1) * PageFingerprints::kBytesPerPage);
}

TEST(PageFingerprintsTest, AZeroPageThatGetsAFewWordsTravelsAsThem) {
  auto fp = Make();
  fp->RecordFilled(0, 5 * kPageSize, 0);
  std::vector<uint8_t> page(kPageSize, 0);
  page[1000] = 7;
  std::vector<uint8_t> out(kPageSize);
  const uint32_t size = fp->ChangedChunks(0, 5 * kPageSize, page.data(), out.data(), kPageSize);
  EXPECT_EQ(size, 4 + PageFingerprints::kChunkBytes);
  EXPECT_EQ(Patched(std::vector<uint8_t>(kPageSize, 0), out.data(), size), page);
}

// EncodeWithoutBase through the real decoder, with the standby's copy as its base: small changes as chunks, a
// page rewritten everywhere compressed alone, an unchanged one as nothing.
TEST(PageFingerprintsTest, EncodeWithoutBaseRoundTripsThroughTheDecoder) {
  auto fp = Make();
  PageEncoder encoder(PageCodecOptions{});
  PageDecoder decoder;
  std::vector<uint8_t> out(kMaxEncodedPage), scratch(kMaxEncodedPage), decoded(kPageSize);
  std::vector<uint8_t> copy = RandomPage(4);
  fp->Record(0, 0, copy.data());
  auto round_trip = [&](const std::vector<uint8_t>& page) {
    const EncodedPage e = EncodeWithoutBase(encoder, fp.get(), 0, 0, page.data(), out.data(), scratch.data());
    EXPECT_TRUE(decoder.Decode(e.encoding, out.data(), e.size, copy.data(), decoded.data()).ok());
    EXPECT_EQ(decoded, page) << PageEncodingName(e.encoding);
    return e;
  };
  EXPECT_EQ(round_trip(copy).encoding, PageEncoding::kUnchanged);
  std::vector<uint8_t> page = copy;
  page[2000] ^= 0xff;
  const EncodedPage sparse = round_trip(page);
  EXPECT_EQ(sparse.encoding, PageEncoding::kSparse);
  EXPECT_EQ(sparse.size, 4 + PageFingerprints::kChunkBytes);
  std::vector<uint8_t> text(kPageSize);
  for (size_t i = 0; i < kPageSize; ++i) text[i] = "every chunk of this page changed "[i % 33];
  const EncodedPage alone = round_trip(text);
  EXPECT_EQ(alone.encoding, PageEncoding::kLz4) << "compressed alone beats resending all its chunks";
  const EncodedPage without = EncodeWithoutBase(encoder, nullptr, 0, 0, page.data(), out.data(), scratch.data());
  EXPECT_FALSE(IsRelativeEncoding(without.encoding)) << "no fingerprints: no base at all";
}

}  // namespace
}  // namespace tandem::replicator
