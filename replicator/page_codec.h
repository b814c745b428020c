// Page encodings for the wire: how one 4 KiB page travels from the primary to the standby.
//
// The primary knows what the standby holds for every page (its mirror as of the previous epoch, which the
// standby applies before this one), so a page can be sent as the XOR against that copy: pages that changed a
// little become mostly zero bytes, which LZ4 or zstd shrink to a few dozen bytes. One pass over the page and its
// old copy counts the changed bytes and picks what is worth trying, cheapest first: a page that changed in a
// few words is sent as those words (kSparse, no compressor); a page that changed in most bytes is compressed
// alone (its delta is as dense as the page); in between, whichever of page and delta has clearly more zero bytes
// is compressed, both when it is close. A page whose bytes look random skips the compressor and goes raw, as
// does any page compression would not shrink by 1/16.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/status.h"
#include "replicator/epoch.h"

namespace tandem::replicator {

// Values are part of the wire format (FORMAT.md); never renumber.
enum class PageEncoding : uint8_t {
  kRaw = 0,      // 4096 bytes as they are
  kFilled = 1,   // 1 byte: every byte of the page equals it (zero pages)
  kLz4 = 2,      // LZ4 block of the page
  kZstd = 3,     // zstd frame of the page
  kXorLz4 = 4,   // LZ4 block of (page XOR the standby's copy)
  kXorZstd = 5,  // zstd frame of (page XOR the standby's copy)
  kUnchanged = 6,  // 0 bytes: equals the standby's copy (QEMU reported it dirty but it was rewritten as it was)
  kSparse = 7,     // the 64-bit words that differ from the standby's copy: runs of {u16 first word, u16 count,
                   // count x 8 bytes}; a page where a few counters or pointers changed costs one scan, no LZ4
};
const char* PageEncodingName(PageEncoding encoding);
// Encodings that rebuild the page from the standby's copy of it (and so cannot appear in a full epoch).
bool IsRelativeEncoding(PageEncoding encoding);

enum class Compression : uint8_t { kNone, kLz4, kZstd };

struct PageCodecOptions {
  Compression compression = Compression::kLz4;
  int zstd_level = 1;
  bool xor_delta = true;  // use the standby's copy when known
  // LZ4 looks for a match only every `lz4_acceleration` bytes where it finds none: faster, fewer bytes saved
  // (1 is LZ4's default; CompressionGovernor walks it up when the encoder, not the link, is the bottleneck).
  int lz4_acceleration = 1;
};

// Worst case encoded size of one page (raw never loses, so this is the page itself).
inline constexpr size_t kMaxEncodedPage = kPageSize;

struct EncodedPage {
  PageEncoding encoding = PageEncoding::kRaw;
  uint32_t size = 0;  // bytes written to `out`
};

// One per encoding thread: owns compression contexts and scratch space, allocates nothing per page.
class PageEncoder {
 public:
  explicit PageEncoder(const PageCodecOptions& options);
  ~PageEncoder();
  PageEncoder(const PageEncoder&) = delete;
  PageEncoder& operator=(const PageEncoder&) = delete;

  // `previous` is the standby's current copy of this page, or nullptr when unknown. `out` holds kMaxEncodedPage.
  EncodedPage Encode(const uint8_t* page, const uint8_t* previous, uint8_t* out);
  // Takes effect with the next page (the compression contexts serve every setting).
  void set_options(const PageCodecOptions& options) { options_ = options; }

 private:
  struct Contexts;
  PageCodecOptions options_;
  std::unique_ptr<Contexts> ctx_;
  alignas(64) uint8_t scratch_[kPageSize];
};

// One per decoding thread. Decodes into `page`; `base` is the standby's copy of the page, read by the relative
// encodings (IsRelativeEncoding) and otherwise unused (may be nullptr). `base` may equal `page`. On error `page`
// may be clobbered: callers decode into staging memory, never into the replica.
class PageDecoder {
 public:
  PageDecoder();
  ~PageDecoder();
  PageDecoder(const PageDecoder&) = delete;
  PageDecoder& operator=(const PageDecoder&) = delete;

  Status Decode(PageEncoding encoding, const uint8_t* data, size_t size, const uint8_t* base, uint8_t* page);

 private:
  struct Contexts;
  std::unique_ptr<Contexts> ctx_;
  alignas(64) uint8_t scratch_[kPageSize];
};

// One page copied with plain 16-byte vector moves. memcpy of a constant 4 KiB compiles to `rep movsq`, which
// stores into cold memory (the replica, staging) at about half this speed on the machines measured (AMD EPYC:
// 13 vs 23 GB/s from a cached page into cold memory, bench/codec_bench).
void CopyPage(uint8_t* dst, const uint8_t* src);
// The same with non-temporal stores, for a page-aligned `dst` nobody reads soon (the replica): no read of the
// destination's old lines first, no cache filled with them. Call StreamFence() before the pages are read.
void StreamPage(uint8_t* dst, const uint8_t* src);
void StreamFence();
// Asks for a whole page to be brought towards the core (prefetcht2: the outer caches, not L1) while the caller
// works on something else. Hardware prefetchers do not cross into the next 4 KiB page, so a decoder that reads
// the standby's copies of scattered pages waits on each one cold unless it asks a page ahead (Intel Xeon: decode
// of the real-workload sets +6-9%; AMD EPYC: no change, measured in an earlier session).
void PrefetchPage(const uint8_t* page);

// A kSparse payload: CheckSparsePatch refuses runs that are truncated, empty or outside the page;
// ApplySparsePatch writes the runs of a checked payload onto a page (the standby stages sparse pages as their
// runs and applies only those).
Status CheckSparsePatch(const uint8_t* data, size_t size);
void ApplySparsePatch(const uint8_t* data, size_t size, uint8_t* page);

// True when all kPageSize bytes equal page[0]; `*fill` receives it.
bool IsFilledPage(const uint8_t* page, uint8_t* fill);

}  // namespace tandem::replicator
