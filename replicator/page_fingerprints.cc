#include "replicator/page_fingerprints.h"

#include <sys/mman.h>
// Inlined: a 64-byte input then compiles to XXH3's short path without a call and a length dispatch.
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstring>

namespace tandem::replicator {
namespace {

constexpr uint64_t kNoPage = ~uint64_t{0};
constexpr uint64_t kLow48 = (uint64_t{1} << 48) - 1;
constexpr uint32_t kWordsPerChunk = PageFingerprints::kChunkBytes / sizeof(uint64_t);
constexpr uint32_t kRunHeader = 4;  // kSparse: u16 first word, u16 word count
// Like PageEncoder: a page whose changes fit here goes as them, with no compressor.
constexpr uint32_t kSparseLimit = kPageSize / 8;

}  // namespace

Result<std::unique_ptr<PageFingerprints>> PageFingerprints::Create(const std::vector<RamBlockInfo>& blocks) {
  std::unique_ptr<PageFingerprints> fp(new PageFingerprints());
  for (const RamBlockInfo& b : blocks) {
    fp->first_page_.push_back(fp->pages_);
    fp->block_pages_.push_back(b.size_bytes / kPageSize);
    fp->pages_ += b.size_bytes / kPageSize;
  }
  // One anonymous mapping, touched as pages are recorded: low words, high words, known bytes.
  const uint64_t low_bytes = fp->pages_ * kChunks * sizeof(uint32_t);
  const uint64_t high_bytes = fp->pages_ * kChunks * sizeof(uint16_t);
  fp->mapping_bytes_ = low_bytes + high_bytes + fp->pages_;
  if (fp->mapping_bytes_ == 0) return fp;
  void* m = mmap(nullptr, fp->mapping_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return Status::FromErrno("map page fingerprints", errno);
  fp->mapping_ = m;
  fp->low_ = static_cast<uint32_t*>(m);
  fp->high_ = reinterpret_cast<uint16_t*>(static_cast<uint8_t*>(m) + low_bytes);
  fp->known_ = static_cast<uint8_t*>(m) + low_bytes + high_bytes;
  return fp;
}

PageFingerprints::~PageFingerprints() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_bytes_);
}

uint64_t PageFingerprints::PageIndex(uint32_t block, uint64_t offset) const {
  if (block >= block_pages_.size() || offset % kPageSize != 0 || offset / kPageSize >= block_pages_[block]) {
    return kNoPage;
  }
  return first_page_[block] + offset / kPageSize;
}

uint64_t PageFingerprints::Fingerprint(const uint8_t* chunk) { return XXH3_64bits(chunk, kChunkBytes) & kLow48; }

uint64_t PageFingerprints::Stored(uint64_t page, uint32_t chunk) const {
  const uint64_t at = page * kChunks + chunk;
  return uint64_t{high_[at]} << 32 | low_[at];
}

void PageFingerprints::Record(uint32_t block, uint64_t offset, const uint8_t* page) {
  const uint64_t index = PageIndex(block, offset);
  if (index == kNoPage) return;
  uint32_t* low = low_ + index * kChunks;
  uint16_t* high = high_ + index * kChunks;
  for (uint32_t c = 0; c < kChunks; ++c) {
    const uint64_t f = Fingerprint(page + c * kChunkBytes);
    low[c] = uint32_t(f);
    high[c] = uint16_t(f >> 32);
  }
  known_[index] = kKnownStored;
}

void PageFingerprints::RecordFilled(uint32_t block, uint64_t offset, uint8_t fill) {
  const uint64_t index = PageIndex(block, offset);
  if (index == kNoPage) return;
  if (fill == 0) {
    // Most pages of a fresh guest: marked, not stored, so a resync of a mostly-zero guest does not write (nor
    // allocate) their 384 bytes of fingerprints each.
    known_[index] = kKnownZero;
    return;
  }
  uint8_t chunk[kChunkBytes];
  memset(chunk, fill, sizeof(chunk));
  const uint64_t f = Fingerprint(chunk);
  for (uint32_t c = 0; c < kChunks; ++c) {
    low_[index * kChunks + c] = uint32_t(f);
    high_[index * kChunks + c] = uint16_t(f >> 32);
  }
  known_[index] = kKnownStored;
}

void PageFingerprints::Forget(uint32_t block, uint64_t offset) {
  if (const uint64_t index = PageIndex(block, offset); index != kNoPage) known_[index] = 0;
}

void PageFingerprints::ForgetAll() {
  if (known_ != nullptr) memset(known_, 0, pages_);
}

uint32_t PageFingerprints::ChangedChunks(uint32_t block, uint64_t offset, const uint8_t* page, uint8_t* out,
                                         uint32_t limit) const {
  const uint64_t index = PageIndex(block, offset);
  if (index == kNoPage || !known_[index]) return kNotKnown;
  static const uint64_t kZeroChunk = [] {
    const uint8_t zero[kChunkBytes] = {};
    return Fingerprint(zero);
  }();
  const bool zero = known_[index] == kKnownZero;
  uint32_t size = 0;
  uint32_t run = kChunks;  // first chunk of the open run
  auto close_run = [&](uint32_t end) {
    const uint32_t bytes = (end - run) * kChunkBytes;
    if (size + kRunHeader + bytes > limit) return false;
    const uint32_t first_word = run * kWordsPerChunk, words = (end - run) * kWordsPerChunk;
    out[size] = uint8_t(first_word), out[size + 1] = uint8_t(first_word >> 8);
    out[size + 2] = uint8_t(words), out[size + 3] = uint8_t(words >> 8);
    memcpy(out + size + kRunHeader, page + run * kChunkBytes, bytes);
    size += kRunHeader + bytes;
    run = kChunks;
    return true;
  };
  for (uint32_t c = 0; c < kChunks; ++c) {
    const bool changed = Fingerprint(page + c * kChunkBytes) != (zero ? kZeroChunk : Stored(index, c));
    if (changed && run == kChunks) {
      run = c;
    } else if (!changed && run != kChunks && !close_run(c)) {
      return kNotKnown;
    }
  }
  if (run != kChunks && !close_run(kChunks)) return kNotKnown;
  return size;
}

EncodedPage EncodeWithoutBase(PageEncoder& encoder, const PageFingerprints* fingerprints, uint32_t block,
                              uint64_t offset, const uint8_t* page, uint8_t* out, uint8_t* scratch) {
  uint32_t chunks = PageFingerprints::kNotKnown;
  if (fingerprints != nullptr) {
    chunks = fingerprints->ChangedChunks(block, offset, page, out, kMaxEncodedPage - 1);
    if (chunks == 0) return {PageEncoding::kUnchanged, 0};
    if (chunks <= kSparseLimit) return {PageEncoding::kSparse, chunks};
  }
  if (chunks == PageFingerprints::kNotKnown) return encoder.Encode(page, nullptr, out);
  // The changed chunks are in `out`; the page alone may still compress to less.
  const EncodedPage alone = encoder.Encode(page, nullptr, scratch);
  if (alone.size >= chunks) return {PageEncoding::kSparse, chunks};
  memcpy(out, scratch, alone.size);
  return alone;
}

}  // namespace tandem::replicator
