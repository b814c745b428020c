// Shared by the epoch encoder, its parallel part and the decoder; not part of the replicator's public API.
#pragma once

#include <xxhash.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "replicator/epoch_codec.h"
#include "replicator/guest_ram.h"
#include "replicator/page_codec.h"

namespace tandem::replicator {

struct Xxh3StateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};
using Xxh3State = std::unique_ptr<XXH3_state_t, Xxh3StateDeleter>;
inline Xxh3State NewXxh3State() { return Xxh3State(XXH3_createState()); }

// Adds a record's checksum to the chain EPOCH_END's records_hash covers.
void ChainChecksum(XXH3_state_t* state, uint64_t checksum);

// "page (block 1, offset 0x2000)", for error messages.
std::string PageName(uint32_t block, uint64_t offset);

inline constexpr uint8_t kMaxEncoding = static_cast<uint8_t>(PageEncoding::kSparse);

// One PAGES entry at `entry`: header, then the page encoded against `previous`. The single- and multi-threaded
// encoders both write entries here, which is what keeps their output identical.
EncodedPage WriteEntry(PageEncoder& encoder, uint8_t* entry, uint32_t block, uint64_t offset, const uint8_t* page,
                       const uint8_t* previous);
// A page the epoch already knows is filled with one byte (QEMU's zero pages).
EncodedPage WriteFilledEntry(uint8_t* entry, uint32_t block, uint64_t offset, uint8_t fill);

// What the encoder's threads encode: the pages of an epoch in wire order.
struct EpochEncoder::PageSource {
  const Epoch* epoch = nullptr;     // a delta epoch's pages, in order...
  const RamImage* base = nullptr;   // ...against the standby's copies (nullptr: unknown)...
  const DeltaBase* cache = nullptr;  // ...or against the bounded base (when set: `base` is unused)
  const PageFingerprints* fingerprints = nullptr;  // its second tier
  const RamImage* image = nullptr;  // or pages of this image: every page of every block (a full epoch)...
  std::span<const PageRef> listed;  // ...or these (a catch-up epoch)
  const GuestRam* live = nullptr;   // `image` is this GuestRam's: live pages copied once, holes sent as zero pages
  const std::vector<FileHoles>* holes = nullptr;  // per block, of `live` (walked once per resync)
  PageFingerprints* record = nullptr;  // resync pages sent are recorded here
  uint64_t pages = 0;
};

// A delta epoch's page (not filled) against the source's base: WriteEntry, or EncodeWithoutBase on a miss of the
// bounded base. `scratch` holds kMaxEncodedPage bytes.
EncodedPage WriteDeltaEntry(PageEncoder& encoder, uint8_t* entry, const EpochEncoder::PageSource& source,
                            uint32_t block, uint64_t offset, const uint8_t* page, uint8_t* scratch);

// A resync's page of source.image: a live page is copied into `copy` (kPageSize) first and that copy encoded and
// hashed; a page in a hole goes as a zero page, untouched. Recorded into source.record when set.
EncodedPage WriteResyncEntry(PageEncoder& encoder, uint8_t* entry, const EpochEncoder::PageSource& source,
                             uint32_t block, uint64_t offset, uint8_t* copy);

// The running totals EPOCH_END reports, kept by the encoder.
struct EpochEncoder::EpochTotals {
  Xxh3State records = NewXxh3State();
  uint64_t page_count = 0;
  uint64_t payload_bytes = 0;
  uint32_t record_count = 0;
  void Reset() {
    XXH3_64bits_reset(records.get());
    page_count = payload_bytes = 0;
    record_count = 0;
  }
};

}  // namespace tandem::replicator
