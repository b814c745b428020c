// The second tier of the primary's delta base: a 48-bit fingerprint of every 64-byte chunk of the standby's copy
// of every page (9.4% of guest RAM), so that a dirty page whose copy DeltaBase does not hold still travels as
// what changed: the chunks whose fingerprint differs, as a kSparse payload (FORMAT.md, no wire change; the
// standby rebuilds the page from its copy and checks the page hash as for any relative encoding). Pages a
// database or a page cache rewrites in a few places after a long while (bench/delta_base_bench: the sqlite set
// sends 15x the mirror's bytes with DeltaBase alone, 1.5x with both tiers) cost their changed chunks, not the
// whole page compressed.
//
// A chunk that changed but kept its fingerprint (probability 2^-48 per changed chunk: once in ~90 years at 10^5
// changed chunks a second) would be left out; the standby's page hash then fails and it refuses the epoch, as
// for any corruption. Fingerprints are XXH3-64 of the chunk, keeping the low 48 bits.
//
// Pages whose copy is unknown (never shipped since Create or Forget) have no fingerprints: ChangedChunks finds
// nothing for them and the page goes standalone.
//
// Concurrency: ChangedChunks is const and reads only; Record writes only the page it is given (its fingerprints
// and its byte of `known_`), so threads may record different pages at once (a full resync encoded on several
// threads) but nothing may record a page while another thread reads or records that same page.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "replicator/epoch.h"
#include "replicator/page_codec.h"

namespace tandem::replicator {

class PageFingerprints {
 public:
  static constexpr uint32_t kChunkBytes = 64;
  static constexpr uint32_t kChunks = kPageSize / kChunkBytes;
  // Per page: 6 bytes per chunk and a byte saying whether the page is known.
  static constexpr uint64_t kBytesPerPage = kChunks * 6 + 1;

  static Result<std::unique_ptr<PageFingerprints>> Create(const std::vector<RamBlockInfo>& blocks);
  ~PageFingerprints();
  PageFingerprints(const PageFingerprints&) = delete;
  PageFingerprints& operator=(const PageFingerprints&) = delete;

  uint64_t memory_bytes() const { return pages_ * kBytesPerPage; }

  // `page` (kPageSize bytes) is now the standby's copy of (block, offset). Out-of-range pages are ignored.
  void Record(uint32_t block, uint64_t offset, const uint8_t* page);
  void RecordFilled(uint32_t block, uint64_t offset, uint8_t fill);
  // The standby's copy of the page is no longer known (the next ChangedChunks finds nothing).
  void Forget(uint32_t block, uint64_t offset);
  void ForgetAll();

  // The kSparse payload (page_codec.h) that turns the standby's copy of (block, offset) into `page`: every
  // chunk whose fingerprint changed, as runs of words. Returns its size, 0 when no chunk changed (the page can
  // go as kUnchanged), or kNotKnown when the copy is not known or the payload would exceed `limit` bytes (the
  // page must go standalone). `out` holds `limit` bytes.
  static constexpr uint32_t kNotKnown = ~uint32_t{0};
  uint32_t ChangedChunks(uint32_t block, uint64_t offset, const uint8_t* page, uint8_t* out, uint32_t limit) const;

 private:
  PageFingerprints() = default;
  // Index of (block, offset) over all blocks, or ~0 when out of range.
  uint64_t PageIndex(uint32_t block, uint64_t offset) const;
  static uint64_t Fingerprint(const uint8_t* chunk);
  uint64_t Stored(uint64_t page, uint32_t chunk) const;

  std::vector<uint64_t> first_page_;  // per block: the index of its first page
  std::vector<uint64_t> block_pages_;
  uint64_t pages_ = 0;
  uint32_t* low_ = nullptr;   // pages_ x kChunks: the fingerprints' low 32 bits
  uint16_t* high_ = nullptr;  // pages_ x kChunks: their bits 32..47
  // pages_: kKnownStored when the page's fingerprints are its standby copy's, kKnownZero when that copy is the
  // zero page (its fingerprints are not stored), 0 when unknown.
  static constexpr uint8_t kKnownStored = 1, kKnownZero = 2;
  uint8_t* known_ = nullptr;
  void* mapping_ = nullptr;
  uint64_t mapping_bytes_ = 0;
};

// How a page whose standby copy DeltaBase does not hold goes out: its changed chunks (kSparse, or kUnchanged)
// when they fit in kPageSize / 8 bytes, like PageEncoder's own sparse pages (no compressor runs); else the
// smaller of the page compressed standalone and its changed chunks. `fingerprints` may be null (standalone).
// `out` and `scratch` hold kMaxEncodedPage each. Allocation-free; safe on any thread that owns `encoder`.
EncodedPage EncodeWithoutBase(PageEncoder& encoder, const PageFingerprints* fingerprints, uint32_t block,
                              uint64_t offset, const uint8_t* page, uint8_t* out, uint8_t* scratch);

}  // namespace tandem::replicator
