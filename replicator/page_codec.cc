#include "replicator/page_codec.h"

#include <lz4.h>
#include <zstd.h>

#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace tandem::replicator {
namespace {

// Leave room so a "compressed" page that saves only a handful of bytes is sent raw (decoding raw is a memcpy).
constexpr int kCompressedLimit = kPageSize - kPageSize / 16;
// A page whose changed words fit in this many bytes is sent as those words: no compressor runs at all.
constexpr uint32_t kSparseLimit = kPageSize / 8;
// Page or delta: the one with this many more zero bytes is compressed alone; closer than that, both are tried
// and the smaller kept. On the compiler's page set this ships 40% fewer bytes than always sending the delta, for
// 17% more compressor calls; within 1% of trying both everywhere on every set.
constexpr uint32_t kClearlyMoreZeros = kPageSize / 32;
// From this many changed bytes on the page alone is compressed: it shares nothing with its old version.
constexpr uint32_t kPageOnlyFrom = kPageSize - kPageSize / 16;

// dst = a XOR b.
void XorPages(const uint8_t* a, const uint8_t* b, uint8_t* dst) {
#if defined(__SSE2__)
  for (size_t i = 0; i < kPageSize; i += 16) {
    const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    const __m128i y = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_xor_si128(x, y));
  }
#else
  for (size_t i = 0; i < kPageSize; ++i) dst[i] = a[i] ^ b[i];
#endif
}

// One pass over a page and the standby's copy (both usually cold in cache): their XOR into `delta`, how many
// bytes differ, and how many bytes of the page are zero. Zero bytes are what LZ4 feeds on in memory pages, so
// comparing the page's with the delta's tells which of the two is worth compressing without trying both.
struct DeltaScan {
  uint32_t changed_bytes = 0;
  uint32_t page_zero_bytes = 0;
  uint32_t delta_zero_bytes() const { return kPageSize - changed_bytes; }
};
DeltaScan ScanDelta(const uint8_t* page, const uint8_t* previous, uint8_t* delta) {
  DeltaScan scan;
#if defined(__SSE2__)
  // Per byte lane, count in 8-bit counters (at most 128 chunks per half: no overflow), then sum the lanes with
  // psadbw.
  auto sum_lanes = [](__m128i counts) {
    const __m128i sums = _mm_sad_epu8(counts, _mm_setzero_si128());
    return uint32_t(_mm_cvtsi128_si64(sums)) + uint32_t(_mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums)));
  };
  uint32_t equal = 0;
  for (size_t half = 0; half < kPageSize; half += kPageSize / 2) {
    __m128i equal_counts = _mm_setzero_si128(), zero_counts = _mm_setzero_si128();
    for (size_t i = half; i < half + kPageSize / 2; i += 16) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(page + i));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(previous + i));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(delta + i), _mm_xor_si128(a, b));
      equal_counts = _mm_sub_epi8(equal_counts, _mm_cmpeq_epi8(a, b));
      zero_counts = _mm_sub_epi8(zero_counts, _mm_cmpeq_epi8(a, _mm_setzero_si128()));
    }
    equal += sum_lanes(equal_counts);
    scan.page_zero_bytes += sum_lanes(zero_counts);
  }
  scan.changed_bytes = kPageSize - equal;
#else
  for (size_t i = 0; i < kPageSize; ++i) {
    delta[i] = page[i] ^ previous[i];
    scan.changed_bytes += delta[i] != 0;
    scan.page_zero_bytes += page[i] == 0;
  }
#endif
  return scan;
}

constexpr size_t kWords = kPageSize / sizeof(uint64_t);
constexpr size_t kRunHeader = 4;  // u16 first word, u16 word count
// A run's words: most runs are a word or a few (a counter, a pointer), where a call to memcpy costs more than
// the copy.
void CopyRun(uint8_t* dst, const uint8_t* src, size_t bytes) {
#if defined(__SSE2__)
  for (; bytes >= 16; bytes -= 16, dst += 16, src += 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
  }
  if (bytes != 0) memcpy(dst, src, 8);  // runs are whole words: 8 bytes are left
#else
  memcpy(dst, src, bytes);
#endif
}

struct SparseRun {
  size_t first_word = 0;
  size_t words = 0;
};
SparseRun ReadRunHeader(const uint8_t* at) {
  return {size_t(at[0]) | size_t(at[1]) << 8, size_t(at[2]) | size_t(at[3]) << 8};
}

// Calls on_run(first word, its bytes in `data`, byte count) for each run of a kSparse payload, refusing runs that
// are truncated, empty or outside the page (the runs before the bad one have been visited).
template <typename OnRun>
Status ForEachCheckedRun(const uint8_t* data, size_t size, OnRun&& on_run) {
  if (size == 0) return Status::Corruption("sparse page without runs");
  for (size_t at = 0; at < size;) {
    if (size - at < kRunHeader) return Status::Corruption("sparse page: truncated run header");
    const SparseRun run = ReadRunHeader(data + at);
    if (run.words == 0 || run.first_word + run.words > kWords) {
      return Status::Corruption("sparse page: run outside the page");
    }
    const size_t bytes = run.words * sizeof(uint64_t);
    if (size - at - kRunHeader < bytes) return Status::Corruption("sparse page: truncated run");
    on_run(run.first_word, data + at + kRunHeader, bytes);
    at += kRunHeader + bytes;
  }
  return Status::Ok();
}

uint64_t LoadWord(const uint8_t* p, size_t word) {
  uint64_t v;
  memcpy(&v, p + word * sizeof(v), sizeof(v));
  return v;
}

// The runs of words of `page` whose `delta` (XOR against the standby's copy) is not zero, or 0 if they need more
// than `limit` bytes. Sparse pages are mostly zero delta: whole 64-byte blocks are skipped with one test, and only
// blocks with a change are walked word by word.
uint32_t EncodeSparse(const uint8_t* page, const uint8_t* delta, uint8_t* out, uint32_t limit) {
  constexpr size_t kBlockWords = 8;
  constexpr size_t kNoRun = kWords;
  uint32_t size = 0;
  size_t run = kNoRun;  // first word of the run being collected
  auto close_run = [&](size_t end) {
    const uint32_t bytes = uint32_t((end - run) * sizeof(uint64_t));
    if (size + kRunHeader + bytes > limit) return false;
    out[size] = uint8_t(run), out[size + 1] = uint8_t(run >> 8);
    out[size + 2] = uint8_t(end - run), out[size + 3] = uint8_t((end - run) >> 8);
    CopyRun(out + size + kRunHeader, page + run * sizeof(uint64_t), bytes);
    size += kRunHeader + bytes;
    run = kNoRun;
    return true;
  };
  for (size_t block = 0; block < kWords; block += kBlockWords) {
    uint64_t any = 0;
    for (size_t w = block; w < block + kBlockWords; ++w) any |= LoadWord(delta, w);
    if (any == 0) {
      if (run != kNoRun && !close_run(block)) return 0;
      continue;
    }
    for (size_t w = block; w < block + kBlockWords; ++w) {
      const bool changed = LoadWord(delta, w) != 0;
      if (changed && run == kNoRun) {
        run = w;
      } else if (!changed && run != kNoRun && !close_run(w)) {
        return 0;
      }
    }
  }
  if (run != kNoRun && !close_run(kWords)) return 0;
  return size;
}

// Compressed data, and machine code or text, use a small part of the byte alphabet in any 256 bytes; random and
// already-compressed bytes use about 162 distinct values in 256 draws. Past kIncompressibleDistinct neither LZ4
// nor zstd saves the 1/16 that makes a compressed page worth it (on the real-workload page set: no page above
// it compressed, and 85% of the pages sent raw are caught), so such a page skips the compressor.
constexpr int kIncompressibleDistinct = 150;
bool LooksIncompressible(const uint8_t* page) {
  uint8_t seen[256] = {};
  int distinct = 0;
  for (size_t i = 0; i < kPageSize; i += kPageSize / 256) {
    distinct += seen[page[i]] == 0;
    seen[page[i]] = 1;
  }
  return distinct >= kIncompressibleDistinct;
}

}  // namespace

const char* PageEncodingName(PageEncoding encoding) {
  switch (encoding) {
    case PageEncoding::kRaw: return "raw";
    case PageEncoding::kFilled: return "filled";
    case PageEncoding::kLz4: return "lz4";
    case PageEncoding::kZstd: return "zstd";
    case PageEncoding::kXorLz4: return "xor+lz4";
    case PageEncoding::kXorZstd: return "xor+zstd";
    case PageEncoding::kUnchanged: return "unchanged";
    case PageEncoding::kSparse: return "sparse";
  }
  return "unknown";
}

namespace {
// 64 bytes a step, four 16-byte loads then four stores: plain (CopyPage) or non-temporal (StreamPage).
template <bool kNonTemporal>
void CopyPageInVectors(uint8_t* dst, const uint8_t* src) {
#if defined(__SSE2__)
  for (size_t i = 0; i < kPageSize; i += 64) {
    const auto* from = reinterpret_cast<const __m128i*>(src + i);
    auto* to = reinterpret_cast<__m128i*>(dst + i);
    const __m128i a = _mm_loadu_si128(from), b = _mm_loadu_si128(from + 1);
    const __m128i c = _mm_loadu_si128(from + 2), d = _mm_loadu_si128(from + 3);
    auto store = [](__m128i* at, __m128i v) {
      if constexpr (kNonTemporal) {
        _mm_stream_si128(at, v);
      } else {
        _mm_storeu_si128(at, v);
      }
    };
    store(to, a), store(to + 1, b), store(to + 2, c), store(to + 3, d);
  }
#else
  memcpy(dst, src, kPageSize);
#endif
}
}  // namespace

void CopyPage(uint8_t* dst, const uint8_t* src) { CopyPageInVectors<false>(dst, src); }
void StreamPage(uint8_t* dst, const uint8_t* src) { CopyPageInVectors<true>(dst, src); }

void StreamFence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

void PrefetchPage(const uint8_t* page) {
  for (size_t at = 0; at < kPageSize; at += 64) __builtin_prefetch(page + at, 0, 1);
}

Status CheckSparsePatch(const uint8_t* data, size_t size) {
  return ForEachCheckedRun(data, size, [](size_t, const uint8_t*, size_t) {});
}

void ApplySparsePatch(const uint8_t* data, size_t size, uint8_t* page) {
  for (size_t at = 0; at < size;) {
    const SparseRun run = ReadRunHeader(data + at);
    CopyRun(page + run.first_word * sizeof(uint64_t), data + at + kRunHeader, run.words * sizeof(uint64_t));
    at += kRunHeader + run.words * sizeof(uint64_t);
  }
}

bool IsRelativeEncoding(PageEncoding e) {
  return e == PageEncoding::kXorLz4 || e == PageEncoding::kXorZstd || e == PageEncoding::kUnchanged ||
         e == PageEncoding::kSparse;
}

bool IsFilledPage(const uint8_t* page, uint8_t* fill) {
  // The page is one repeated byte iff its first word is that byte 8 times and every word equals the one before.
  uint64_t first;
  memcpy(&first, page, sizeof(first));
  if (first != uint64_t{page[0]} * 0x0101010101010101ull) return false;
  if (memcmp(page, page + sizeof(first), kPageSize - sizeof(first)) != 0) return false;
  *fill = page[0];
  return true;
}

struct PageEncoder::Contexts {
  std::unique_ptr<char[]> lz4_state{new char[LZ4_sizeofState()]};
  ZSTD_CCtx* zstd = ZSTD_createCCtx();
  ~Contexts() { ZSTD_freeCCtx(zstd); }
};

PageEncoder::PageEncoder(const PageCodecOptions& options) : options_(options), ctx_(new Contexts) {}
PageEncoder::~PageEncoder() = default;

EncodedPage PageEncoder::Encode(const uint8_t* page, const uint8_t* previous, uint8_t* out) {
  uint8_t fill = 0;
  if (IsFilledPage(page, &fill)) {
    out[0] = fill;
    return {PageEncoding::kFilled, 1};
  }
  auto compress = [&](const uint8_t* src, bool is_delta) -> EncodedPage {
    switch (options_.compression) {
      case Compression::kNone:
        return {};
      case Compression::kLz4: {
        int n = LZ4_compress_fast_extState(ctx_->lz4_state.get(), reinterpret_cast<const char*>(src),
                                           reinterpret_cast<char*>(out), kPageSize, kCompressedLimit,
                                           options_.lz4_acceleration);
        if (n <= 0) return {};
        return {is_delta ? PageEncoding::kXorLz4 : PageEncoding::kLz4, uint32_t(n)};
      }
      case Compression::kZstd: {
        size_t n = ZSTD_compressCCtx(ctx_->zstd, out, kCompressedLimit, src, kPageSize, options_.zstd_level);
        if (ZSTD_isError(n)) return {};
        return {is_delta ? PageEncoding::kXorZstd : PageEncoding::kZstd, uint32_t(n)};
      }
    }
    return {};
  };
  auto compress_page = [&]() -> EncodedPage {
    if (options_.compression == Compression::kNone || LooksIncompressible(page)) return {};
    return compress(page, false);
  };
  auto raw = [&]() -> EncodedPage {
    CopyPage(out, page);
    return {PageEncoding::kRaw, kPageSize};
  };

  if (previous == nullptr || !options_.xor_delta) {
    EncodedPage plain = compress_page();
    return plain.size != 0 ? plain : raw();
  }
  // What is worth trying, cheapest first (thresholds measured on the page sets in bench/data): a few changed
  // words -> those words; most bytes changed -> the page alone (the XOR of two unrelated pages is as dense as
  // either); otherwise whichever of page and delta has clearly more zero bytes, and both when it is close.
  const DeltaScan scan = ScanDelta(page, previous, scratch_);
  if (scan.changed_bytes == 0) return {PageEncoding::kUnchanged, 0};
  if (scan.changed_bytes <= kSparseLimit) {
    if (uint32_t sparse = EncodeSparse(page, scratch_, out, kSparseLimit); sparse != 0) {
      return {PageEncoding::kSparse, sparse};
    }
  }
  if (scan.changed_bytes >= kPageOnlyFrom || scan.page_zero_bytes > scan.delta_zero_bytes() + kClearlyMoreZeros) {
    EncodedPage plain = compress_page();
    return plain.size != 0 ? plain : raw();
  }
  EncodedPage delta = compress(scratch_, true);
  if (delta.size != 0 && scan.delta_zero_bytes() > scan.page_zero_bytes + kClearlyMoreZeros) return delta;
  // `out` holds the delta candidate: keep it in scratch_ (the delta itself is no longer needed) while trying
  // the page alone.
  if (delta.size != 0) memcpy(scratch_, out, delta.size);
  EncodedPage plain = compress_page();
  if (plain.size != 0 && (delta.size == 0 || plain.size < delta.size)) return plain;
  if (delta.size == 0) return raw();
  memcpy(out, scratch_, delta.size);
  return delta;
}

struct PageDecoder::Contexts {
  ZSTD_DCtx* zstd = ZSTD_createDCtx();
  ~Contexts() { ZSTD_freeDCtx(zstd); }
};

PageDecoder::PageDecoder() : ctx_(new Contexts) {}
PageDecoder::~PageDecoder() = default;

Status PageDecoder::Decode(PageEncoding encoding, const uint8_t* data, size_t size, const uint8_t* base,
                           uint8_t* page) {
  auto decompress = [&](bool zstd, uint8_t* dst) -> Status {
    if (zstd) {
      size_t n = ZSTD_decompressDCtx(ctx_->zstd, dst, kPageSize, data, size);
      if (ZSTD_isError(n)) return Status::Corruption(std::string("zstd page: ") + ZSTD_getErrorName(n));
      if (n != kPageSize) return Status::Corruption("zstd page decodes to " + std::to_string(n) + " bytes");
      return Status::Ok();
    }
    if (size > size_t(kPageSize)) return Status::Corruption("lz4 page larger than a page");
    int n = LZ4_decompress_safe(reinterpret_cast<const char*>(data), reinterpret_cast<char*>(dst), int(size),
                                kPageSize);
    if (n != int(kPageSize)) return Status::Corruption("lz4 page does not decode to one page");
    return Status::Ok();
  };
  if (IsRelativeEncoding(encoding) && base == nullptr) {
    return Status::Corruption(std::string(PageEncodingName(encoding)) + " page without the standby's copy");
  }
  switch (encoding) {
    case PageEncoding::kRaw:
      if (size != kPageSize) return Status::Corruption("raw page of " + std::to_string(size) + " bytes");
      CopyPage(page, data);
      return Status::Ok();
    case PageEncoding::kFilled:
      if (size != 1) return Status::Corruption("filled page with " + std::to_string(size) + " bytes");
      memset(page, data[0], kPageSize);
      return Status::Ok();
    case PageEncoding::kUnchanged:
      if (size != 0) return Status::Corruption("unchanged page with a payload");
      if (page != base) CopyPage(page, base);
      return Status::Ok();
    case PageEncoding::kSparse:
      // Checked as it is applied: on error `page` may hold part of the patch, which the contract allows.
      if (page != base) CopyPage(page, base);
      return ForEachCheckedRun(data, size, [page](size_t first_word, const uint8_t* words, size_t bytes) {
        CopyRun(page + first_word * sizeof(uint64_t), words, bytes);
      });
    case PageEncoding::kLz4:
    case PageEncoding::kZstd:
      return decompress(encoding == PageEncoding::kZstd, page);
    case PageEncoding::kXorLz4:
    case PageEncoding::kXorZstd: {
      // The delta goes straight into `page` and the standby's copy is folded in afterwards: one pass over the
      // (cold) base instead of a copy and then an XOR.
      uint8_t* delta = page == base ? scratch_ : page;
      TANDEM_RETURN_IF_ERROR(decompress(encoding == PageEncoding::kXorZstd, delta));
      XorPages(base, delta, page);
      return Status::Ok();
    }
  }
  return Status::Corruption("unknown page encoding " + std::to_string(int(encoding)));
}

}  // namespace tandem::replicator
