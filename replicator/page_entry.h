// The header of one PAGES entry (FORMAT.md, "PAGES"): the only place that knows its byte layout. The encoders
// (single- and multi-threaded) store it, the decoder and its prefetch load it.
//
//   +--------------+------------+-----------+-----------+--------------+---------------+
//   | offset (u64) | block (u32)| size (u32)| hash (u64)| encoding (u8)| reserved (3x0)|
//   +--------------+------------+-----------+-----------+--------------+---------------+
//   then `size` bytes of the page encoded with `encoding`.
#pragma once

#include <cstdint>

#include "replicator/format.h"

namespace tandem::replicator {

struct PageEntryHeader {
  uint64_t offset = 0;  // of the page in its RAM block
  uint32_t block = 0;
  uint32_t size = 0;  // encoded bytes after the header
  uint64_t hash = 0;  // XXH3-64 of the page as the standby must end up with it
  uint8_t encoding = 0;  // a PageEncoding, unchecked: the decoder validates it
  bool reserved_clear = true;  // loaded: the reserved bytes are zero
};

inline constexpr size_t kPageEntryEncodingOffset = 24;
static_assert(kPageEntryEncodingOffset + 4 == kPageEntryHeaderSize);

inline void StorePageEntryHeader(uint8_t* entry, uint64_t offset, uint32_t block, uint32_t size, uint64_t hash,
                                 uint8_t encoding) {
  StoreLe64(entry, offset);
  StoreLe32(entry + 8, block);
  StoreLe32(entry + 12, size);
  StoreLe64(entry + 16, hash);
  entry[kPageEntryEncodingOffset] = encoding;
  entry[25] = entry[26] = entry[27] = 0;
}

// `entry` has at least kPageEntryHeaderSize bytes.
inline PageEntryHeader LoadPageEntryHeader(const uint8_t* entry) {
  PageEntryHeader h;
  h.offset = LoadLe64(entry);
  h.block = LoadLe32(entry + 8);
  h.size = LoadLe32(entry + 12);
  h.hash = LoadLe64(entry + 16);
  h.encoding = entry[kPageEntryEncodingOffset];
  h.reserved_clear = entry[25] == 0 && entry[26] == 0 && entry[27] == 0;
  return h;
}

}  // namespace tandem::replicator
