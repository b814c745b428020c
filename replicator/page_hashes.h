// The RAM resync by page hashes (protocol version 5, FORMAT.md "PAGE_HASHES"): a standby whose replica may hold
// useful content but offers no resume point of the connecting primary's generation (a restarted standby process
// whose replica file survived, an old primary whose RAM file became its replica, a replica that failed a page's
// hash, a fresh sparse replica) sends the XXH3-64 of every page of its replica; the primary's full resync then
// lists only the pages whose hash differs (EPOCH_BEGIN flag keeps) and the standby keeps the others.
//
// Why keeping a page by its hash is safe: the standby hashed exactly what its replica holds (nothing else writes
// the replica: it is private to the standby process, and the standby accepts a keeps epoch only on the connection
// that sent the hashes, before anything was applied on it); the primary keeps a page only when its own page,
// read once, has the same 64-bit hash (a collision between two different pages of one VM is ~2^-64 per page,
// the same bet every page hash of the protocol makes). A page the guest writes after it was compared lies in an
// epoch the live resync settles with (guest_ram.h), like any page of a live resync.
//
// Holes: a page in a hole of the replica file (or of the primary's RAM file) reads as zeros and is hashed as the
// zero page without being touched, so neither side allocates tmpfs memory for it, and a zero page the standby
// already has as a hole costs nothing on the wire nor on the standby.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "replicator/decode_error.h"
#include "replicator/epoch.h"
#include "replicator/guest_ram.h"

namespace tandem::replicator {

class GuestRam;
class PageFingerprints;

// Per RAM block, the XXH3-64 of each of its pages, in order.
using PageHashList = std::vector<std::vector<uint64_t>>;

// Per block of `blocks`, the holes of the file `files` maps it from (none for a block without a file, or whose
// file cannot be opened: then every page counts as data, which is always safe).
std::vector<FileHoles> HolesOfFiles(const std::vector<RamBlockInfo>& blocks,
                                    const std::map<std::string, std::string>& files);

// Hashes every page of `image` on up to `threads` threads (capped at the usable CPUs). Blocks named in `files`
// are read from the mapping only where that file has data; its holes hash as zero pages, untouched.
Status HashReplicaPages(const RamImage& image, const std::map<std::string, std::string>& files, int threads,
                        PageHashList* out);

// Appends `hashes` as framed PAGE_HASHES records (kMaxPageHashesPerRecord hashes each at most).
void AppendPageHashesRecords(const PageHashList& hashes, std::vector<uint8_t>* out);

// The primary's side: takes the standby's PAGE_HASHES records in order until every page of `layout` is covered.
// Any record that does not continue the list exactly (wrong block, page size, first page, count, block size,
// length, reserved bits) is refused.
class PageHashesReader {
 public:
  explicit PageHashesReader(const std::vector<RamBlockInfo>& layout);
  DecodeStatus Add(std::span<const uint8_t> payload);
  bool complete() const { return block_ == hashes_.size(); }
  PageHashList Take() { return std::move(hashes_); }

 private:
  void Skip();  // past the blocks already complete
  PageHashList hashes_;
  std::vector<uint64_t> sizes_;  // pages per block
  uint32_t block_ = 0;  // the block the next record must continue
};

// The primary's comparison: the pages of `ram` whose hash differs from `theirs`, in order (the encoder reads those
// again, once, to send them). Holes of a live block hash as zero pages untouched. Pages found equal are recorded
// in `fingerprints` (when set) as the standby's copies, from a copy whose hash is checked again (a live page the
// guest wrote in between is sent instead): the resync does not send them, so this is where their fingerprints
// become known. Runs on up to `threads` threads. `theirs` must match the RAM's layout.
Status DifferingPages(const GuestRam& ram, const PageHashList& theirs, PageFingerprints* fingerprints, int threads,
                      std::vector<PageRef>* out);

}  // namespace tandem::replicator
