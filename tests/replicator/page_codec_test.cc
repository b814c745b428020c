#include "replicator/page_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

namespace tandem::replicator {
namespace {

using Page = std::vector<uint8_t>;

Page RandomPage(std::mt19937_64& rng) {
  Page p(kPageSize);
  for (auto& b : p) b = uint8_t(rng());
  return p;
}

Page TextLikePage(std::mt19937_64& rng) {
  static const char kWords[][8] = {"epoch ", "page ", "tandem ", "qemu ", "kvm ", "dirty "};
  Page p(kPageSize);
  for (size_t i = 0; i < kPageSize;) {
    const char* w = kWords[rng() % 6];
    for (size_t j = 0; w[j] && i < kPageSize; ++j) p[i++] = uint8_t(w[j]);
  }
  return p;
}

// Encodes `page` against `previous` and decodes it back twice: into a separate page with `previous` as the base
// (as the standby decodes into staging) and in place over a copy of `previous`; both must agree.
Page RoundTrip(PageEncoder& enc, PageDecoder& dec, const Page& page, const Page* previous, PageEncoding* used) {
  uint8_t wire[kMaxEncodedPage];
  EncodedPage e = enc.Encode(page.data(), previous ? previous->data() : nullptr, wire);
  EXPECT_LE(e.size, kMaxEncodedPage);
  *used = e.encoding;
  Page out(kPageSize, 0xEE);
  Status st = dec.Decode(e.encoding, wire, e.size, previous ? previous->data() : nullptr, out.data());
  EXPECT_TRUE(st.ok()) << st.ToString() << " encoding " << PageEncodingName(e.encoding);
  Page in_place = previous ? *previous : Page(kPageSize, 0xEE);
  st = dec.Decode(e.encoding, wire, e.size, in_place.data(), in_place.data());
  EXPECT_TRUE(st.ok()) << st.ToString() << " encoding " << PageEncodingName(e.encoding) << " in place";
  EXPECT_EQ(out, in_place) << PageEncodingName(e.encoding);
  return out;
}

class PageCodecTest : public ::testing::TestWithParam<Compression> {};

TEST_P(PageCodecTest, RoundTripsEveryPagePattern) {
  std::mt19937_64 rng(42);
  PageCodecOptions options;
  options.compression = GetParam();
  PageEncoder enc(options);
  PageDecoder dec;
  for (int round = 0; round < 200; ++round) {
    Page previous = round % 3 ? TextLikePage(rng) : RandomPage(rng);
    Page page = previous;
    switch (round % 5) {
      case 0: page = RandomPage(rng); break;                                   // incompressible
      case 1: page = TextLikePage(rng); break;                                 // compressible
      case 2: page[rng() % kPageSize] ^= 0x5a; break;                          // one byte changed
      case 3: std::fill(page.begin(), page.end(), uint8_t(rng())); break;      // filled
      case 4: for (int i = 0; i < 64; ++i) page[rng() % kPageSize] = uint8_t(rng()); break;  // sparse writes
    }
    PageEncoding used;
    EXPECT_EQ(RoundTrip(enc, dec, page, &previous, &used), page) << "round " << round;
    EXPECT_EQ(RoundTrip(enc, dec, page, nullptr, &used), page) << "round " << round << " without previous";
  }
}

INSTANTIATE_TEST_SUITE_P(AllCompressions, PageCodecTest,
                         ::testing::Values(Compression::kNone, Compression::kLz4, Compression::kZstd));

// The compression governor changes an encoder's LZ4 acceleration between epochs; the decoder does not need to
// know it (an LZ4 block decodes the same whatever effort made it).
TEST(PageCodecTest, EveryLz4AccelerationRoundTripsOnOneEncoder) {
  std::mt19937_64 rng(5);
  PageEncoder enc(PageCodecOptions{});
  PageDecoder dec;
  size_t bytes_at_1 = 0, bytes_at_512 = 0;
  for (int acceleration : {1, 4, 64, 512, 65537}) {
    PageCodecOptions options;
    options.lz4_acceleration = acceleration;
    enc.set_options(options);
    std::mt19937_64 pages(9);  // the same pages at every acceleration
    for (int round = 0; round < 40; ++round) {
      const Page previous = TextLikePage(pages);
      Page page = previous;
      for (int i = 0; i < 600; ++i) page[pages() % kPageSize] = uint8_t(rng());  // too many for sparse runs
      uint8_t wire[kMaxEncodedPage];
      const EncodedPage e = enc.Encode(page.data(), previous.data(), wire);
      bytes_at_1 += acceleration == 1 ? e.size : 0;
      bytes_at_512 += acceleration == 512 ? e.size : 0;
      PageEncoding used;
      EXPECT_EQ(RoundTrip(enc, dec, page, &previous, &used), page) << "acceleration " << acceleration;
      EXPECT_TRUE(used == PageEncoding::kXorLz4 || used == PageEncoding::kLz4 || used == PageEncoding::kRaw)
          << PageEncodingName(used);
    }
  }
  // The option reaches LZ4: looking for matches less often finds fewer of them.
  EXPECT_GT(bytes_at_512, bytes_at_1);
}

TEST(PageCodecTest, FewChangedWordsAreSentAsSparseRuns) {
  std::mt19937_64 rng(7);
  for (Compression c : {Compression::kNone, Compression::kLz4, Compression::kZstd}) {
    PageEncoder enc({c, 1, true});
    PageDecoder dec;
    Page previous = RandomPage(rng);
    Page page = previous;
    page[100] ^= 1;
    page[4095] ^= 0x80;
    uint8_t wire[kMaxEncodedPage];
    EncodedPage e = enc.Encode(page.data(), previous.data(), wire);
    EXPECT_EQ(e.encoding, PageEncoding::kSparse);
    EXPECT_EQ(e.size, 2 * (4u + 8u));  // two runs of one word each
    Page out = previous;
    ASSERT_TRUE(dec.Decode(e.encoding, wire, e.size, out.data(), out.data()).ok());
    EXPECT_EQ(out, page);
  }
}

// Runs are copied in 16-byte steps plus a last word: every length up to the sparse limit (512 bytes), at the
// start, the middle and the end of the page, decoded beside the standby's copy and in place, and applied by
// ApplySparsePatch as the standby does with staged runs.
TEST(PageCodecTest, SparseRunsOfEveryLengthRoundTripAnywhereOnThePage) {
  std::mt19937_64 rng(11);
  PageEncoder enc({Compression::kLz4, 1, true});
  PageDecoder dec;
  const Page previous = RandomPage(rng);
  for (size_t words = 1; words <= 60; ++words) {
    for (size_t first : {size_t{0}, size_t{77}, kPageSize / 8 - words}) {
      Page page = previous;
      for (size_t w = first; w < first + words; ++w) page[w * 8 + w % 8] ^= 0x5a;
      uint8_t wire[kMaxEncodedPage];
      const EncodedPage e = enc.Encode(page.data(), previous.data(), wire);
      ASSERT_EQ(e.encoding, PageEncoding::kSparse) << words << " words at word " << first;
      ASSERT_EQ(e.size, 4 + words * 8);
      Page beside(kPageSize);
      ASSERT_TRUE(dec.Decode(e.encoding, wire, e.size, previous.data(), beside.data()).ok());
      EXPECT_EQ(beside, page) << words << " words at word " << first;
      Page in_place = previous;
      ASSERT_TRUE(dec.Decode(e.encoding, wire, e.size, in_place.data(), in_place.data()).ok());
      EXPECT_EQ(in_place, page) << words << " words at word " << first;
      Page applied = previous;
      ApplySparsePatch(wire, e.size, applied.data());
      EXPECT_EQ(applied, page) << words << " words at word " << first;
    }
  }
}

TEST(PageCodecTest, ManyScatteredSmallChangesAreSentAsCompressedDelta) {
  std::mt19937_64 rng(8);
  for (Compression c : {Compression::kLz4, Compression::kZstd}) {
    PageEncoder enc({c, 1, true});
    Page previous = RandomPage(rng);
    Page page = previous;
    for (size_t i = 0; i < kPageSize; i += 16) page[i] ^= 1;  // every other word: too many runs for kSparse
    uint8_t wire[kMaxEncodedPage];
    EncodedPage e = enc.Encode(page.data(), previous.data(), wire);
    EXPECT_TRUE(e.encoding == PageEncoding::kXorLz4 || e.encoding == PageEncoding::kXorZstd);
    EXPECT_LT(e.size, 512u);
  }
}

TEST(PageCodecTest, MostlyRewrittenPageIsCompressedAloneNotAsDelta) {
  std::mt19937_64 rng(9);
  Page previous = RandomPage(rng);
  Page page = TextLikePage(rng);  // nothing in common with what the standby holds
  PageEncoder enc({Compression::kLz4, 1, true});
  PageDecoder dec;
  PageEncoding used;
  EXPECT_EQ(RoundTrip(enc, dec, page, &previous, &used), page);
  EXPECT_EQ(used, PageEncoding::kLz4);
}

TEST(PageCodecTest, RelativePageWithoutTheStandbysCopyIsCorruption) {
  PageDecoder dec;
  Page out(kPageSize);
  const uint8_t run[] = {0, 0, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_TRUE(dec.Decode(PageEncoding::kSparse, run, sizeof run, nullptr, out.data()).IsCorruption());
  EXPECT_TRUE(dec.Decode(PageEncoding::kUnchanged, run, 0, nullptr, out.data()).IsCorruption());
  EXPECT_TRUE(dec.Decode(PageEncoding::kXorLz4, run, sizeof run, nullptr, out.data()).IsCorruption());
}

TEST(PageCodecTest, SparseRunOutsideThePageIsCorruption) {
  PageDecoder dec;
  Page out(kPageSize);
  const uint8_t beyond[] = {0xff, 0x01, 1, 0, 1, 2, 3, 4, 5, 6, 7, 8};  // word 511 + 1 word ok; 0x1ff=511
  EXPECT_TRUE(dec.Decode(PageEncoding::kSparse, beyond, sizeof beyond, out.data(), out.data()).ok());
  const uint8_t past_end[] = {0xff, 0x01, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_TRUE(dec.Decode(PageEncoding::kSparse, past_end, sizeof past_end, out.data(), out.data()).IsCorruption());
  const uint8_t empty_run[] = {0, 0, 0, 0};
  EXPECT_TRUE(dec.Decode(PageEncoding::kSparse, empty_run, sizeof empty_run, out.data(), out.data()).IsCorruption());
}

TEST(PageCodecTest, TruncatedSparseRunIsCorruption) {
  PageDecoder dec;
  Page out(kPageSize);
  const uint8_t truncated[] = {4, 0, 2, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};  // 2 words announced, 9 bytes follow
  EXPECT_TRUE(dec.Decode(PageEncoding::kSparse, truncated, sizeof truncated, out.data(), out.data()).IsCorruption());
  EXPECT_TRUE(dec.Decode(PageEncoding::kSparse, truncated, 3, out.data(), out.data()).IsCorruption());
  EXPECT_TRUE(dec.Decode(PageEncoding::kSparse, truncated, 0, out.data(), out.data()).IsCorruption());
}

TEST(PageCodecTest, ZeroPageIsOneByte) {
  PageEncoder enc({});
  Page zero(kPageSize, 0);
  uint8_t wire[kMaxEncodedPage];
  EncodedPage e = enc.Encode(zero.data(), nullptr, wire);
  EXPECT_EQ(e.encoding, PageEncoding::kFilled);
  EXPECT_EQ(e.size, 1u);
}

TEST(PageCodecTest, RewrittenIdenticalPageIsUnchanged) {
  std::mt19937_64 rng(1);
  Page page = RandomPage(rng);
  PageEncoder enc({});
  uint8_t wire[kMaxEncodedPage];
  EXPECT_EQ(enc.Encode(page.data(), page.data(), wire).encoding, PageEncoding::kUnchanged);
}

TEST(PageCodecTest, IncompressiblePageIsSentRaw) {
  std::mt19937_64 rng(3);
  Page page = RandomPage(rng);
  PageEncoder enc({});
  uint8_t wire[kMaxEncodedPage];
  EncodedPage e = enc.Encode(page.data(), nullptr, wire);
  EXPECT_EQ(e.encoding, PageEncoding::kRaw);
  EXPECT_EQ(0, memcmp(wire, page.data(), kPageSize));
}

TEST(PageCodecTest, TruncatedCompressedPageIsCorruption) {
  std::mt19937_64 rng(5);
  Page page = TextLikePage(rng);
  PageDecoder dec;
  for (Compression c : {Compression::kLz4, Compression::kZstd}) {
    PageEncoder enc({c, 1, false});
    uint8_t wire[kMaxEncodedPage];
    EncodedPage e = enc.Encode(page.data(), nullptr, wire);
    ASSERT_NE(e.encoding, PageEncoding::kRaw);
    Page out(kPageSize);
    EXPECT_TRUE(dec.Decode(e.encoding, wire, e.size / 2, out.data(), out.data()).IsCorruption());
  }
}

TEST(PageCodecTest, BadLengthForRawFilledAndUnchangedIsCorruption) {
  PageDecoder dec;
  Page buf(kPageSize), out(kPageSize);
  EXPECT_TRUE(dec.Decode(PageEncoding::kRaw, buf.data(), kPageSize - 1, out.data(), out.data()).IsCorruption());
  EXPECT_TRUE(dec.Decode(PageEncoding::kFilled, buf.data(), 2, out.data(), out.data()).IsCorruption());
  EXPECT_TRUE(dec.Decode(PageEncoding::kUnchanged, buf.data(), 1, out.data(), out.data()).IsCorruption());
}

TEST(PageCodecTest, UnknownEncodingIsCorruption) {
  PageDecoder dec;
  Page buf(kPageSize), out(kPageSize);
  EXPECT_TRUE(dec.Decode(static_cast<PageEncoding>(99), buf.data(), 10, out.data(), out.data()).IsCorruption());
}

// Random bytes as compressed pages: refused as Corruption, never written past the page, and accepted only when they
// really are a page: random bytes can, rarely, be a valid LZ4 block of exactly one page (never a zstd frame, which
// starts with a magic number), and then every byte of the page is what they say, whatever the buffer held.
TEST(PageCodecTest, GarbageCompressedInputIsRefusedOrDecodesToAWholePageWithoutOverrun) {
  std::mt19937_64 rng(11);
  PageDecoder dec;
  const Page base = RandomPage(rng);
  int accepted = 0;
  for (int i = 0; i < 2000; ++i) {
    const Page random = RandomPage(rng);
    const Page junk(random.begin(), random.begin() + long(rng() % kPageSize));  // exactly its size: ASan sees overreads
    const auto enc = static_cast<PageEncoding>(2 + rng() % 4);
    Page out(kPageSize + 64, 0xEE);
    Status st = dec.Decode(enc, junk.data(), junk.size(), base.data(), out.data());
    EXPECT_TRUE(std::all_of(out.begin() + kPageSize, out.end(), [](uint8_t b) { return b == 0xEE; }))
        << "decoding " << junk.size() << " bytes as " << PageEncodingName(enc) << " wrote past the page";
    if (!st.ok()) {
      EXPECT_TRUE(st.IsCorruption()) << st.ToString();
      continue;
    }
    ++accepted;
    EXPECT_TRUE(enc == PageEncoding::kLz4 || enc == PageEncoding::kXorLz4) << PageEncodingName(enc) << " accepted";
    Page again(kPageSize, 0x11);
    ASSERT_TRUE(dec.Decode(enc, junk.data(), junk.size(), base.data(), again.data()).ok());
    EXPECT_TRUE(std::equal(again.begin(), again.end(), out.begin())) << "part of the page was left as it was";
  }
  EXPECT_LT(accepted, 20) << "random bytes pass as compressed pages far too often";
}

}  // namespace
}  // namespace tandem::replicator
