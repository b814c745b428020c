// The primary's read access to the guest's RAM, for resyncs, without a mirror of it.
//
// QEMU keeps the main RAM block in a shared file (memory-backend-file,mem-path=<file>,share=on:
// qemu-integration/qemu_args.cc), so tandem maps that file read-only and reads the guest's own memory: no copy.
// The other blocks (ROMs, ACPI tables: a few MiB, VmDescriptor::ram_blocks) are anonymous memory inside QEMU;
// they are held here as a copy, filled by the precopy (GuestRam is its PageSink) and kept current by Fold()
// with every epoch's pages.
//
// A live page is newer than the last checkpoint: the guest runs while a resync reads it. A resync read this way
// is still exact once the standby has applied every epoch up to X, where X is the epoch open when the read
// ended: X = the last epoch submitted when the read ended + 1 (the primary submits an epoch while the VM is
// still paused for it, so the guest only ever writes into the epoch after the last one submitted). Proof, for
// a resync taken as of epoch M (its device state and page_epochs_ are those of M) and any page p:
//   - p not written between checkpoint M and the moment it was read: the resync carries its content at M, and
//     if it is written later, in some epoch after M, that epoch carries it like any dirty page.
//   - p written after checkpoint M, before or while it was read (even torn by a write during the copy): that
//     write lies in an epoch E with M < E <= X, which carries p as of checkpoint E, and is applied after the
//     resync, so what was read is overwritten; the last such epoch up to X leaves p as it was at checkpoint X.
// So after epoch X every page is as of checkpoint X, with X's device state: a resume point. Between the resync
// and X the replica mixes ages and must not be resumed (FORMAT.md proposal: a "settles at" field). Pages sent
// in the resync went out as read, so their encoding base is unknown afterwards: the delta base forgets them
// (DeltaBase::Clear after a full resync, Invalidate(pages) after a catch-up) and epochs M+1..X send them
// standalone or against what DeltaBase records from then on.
//
// The encoder must read each live page once: encode and hash a private copy (ReadPage), never the mapping
// twice, or a page written between the two would go out with a hash of other bytes and the standby would
// refuse the resync as corrupt.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "replicator/epoch.h"

namespace tandem::replicator {

// The holes of a file that holds guest RAM (QEMU's RAM file, the standby's replica): pages the guest never wrote
// (or discarded) read as zero pages, and a resync must treat them as such without reading them through a mapping,
// where each read fault would allocate a tmpfs page (measured: reading a sparse 64 MiB file through a read-only
// mapping allocated all 64 MiB; pread allocated nothing). The data runs are walked once (SEEK_DATA / SEEK_HOLE,
// one pair per run): each SEEK_DATA scans the holes from its offset, so asking per page or per record over a large
// hole costs time quadratic in the RAM (measured: 29% of a 2 GiB resync's CPU in the kernel's hole scan).
class FileHoles {
 public:
  FileHoles() = default;  // no file: no holes
  // The first `size` bytes of `fd` (fd < 0, or a filesystem that cannot tell: no holes).
  static FileHoles Of(int fd, uint64_t size);
  // Whether page-aligned `offset` lies in a hole (as of Of()).
  bool InHole(uint64_t offset) const;
  // Maps the data pages of [from, to) of `base`, the file's mapping, in one call per run (MADV_POPULATE_READ)
  // before a pass reads them all: one page fault per page costs far more (measured on a paravirtualised VM: a
  // 2 GiB resync spent most of its time entering and leaving faults). Holes are left alone (populating one would
  // allocate it); nothing happens when the holes are not known.
  void Populate(const uint8_t* base, uint64_t from, uint64_t to) const;

 private:
  struct Run {
    uint64_t begin, end;  // [begin, end) data, page aligned
  };
  bool walked_ = false;
  std::vector<Run> data_;  // in increasing order
};

class GuestRam final : public PageSink {
 public:
  // `shared_files`: RAM block name -> the file QEMU keeps that block in (share=on), e.g.
  // {qemu::kMainRamBlock, VmConfig::ram_path}. Those blocks are mapped read-only; every other block of
  // `descriptor` is a zeroed copy until the precopy and Fold() fill it.
  static Result<std::unique_ptr<GuestRam>> Open(const VmDescriptor& descriptor,
                                                const std::map<std::string, std::string>& shared_files);

  // All blocks, live and copied: what EncodeFull and EncodeCatchUp read (see ReadPage for live ones).
  const RamImage& image() const { return *image_; }
  bool live(uint32_t block) const { return image_->read_only(block); }
  // Memory held besides QEMU's RAM: the copies of the small blocks.
  uint64_t copied_bytes() const;

  // The pages of `epoch` in copied blocks are written to the copies; those of live blocks are skipped (the
  // guest's RAM holds them already). All-or-nothing: every record is range-checked before anything is written.
  // Allocation-free.
  Status Fold(const Epoch& epoch);
  // Copies page (block, offset) into `out` (kPageSize bytes) with one read of it: the bytes a resync encodes and
  // hashes. False when out of range.
  bool ReadPage(uint32_t block, uint64_t offset, uint8_t* out) const;

  // The holes of a live block's file now (a resync walks them once); none for a copied block.
  FileHoles Holes(uint32_t block) const;

  // PageSink, for the precopy: pages of copied blocks land in the copy, pages of live blocks are dropped (the
  // shared file is the guest's RAM itself).
  uint8_t* PageBuffer(uint32_t block, uint64_t offset) override;
  bool FilledPage(uint32_t block, uint64_t offset, uint8_t fill) override;

 private:
  explicit GuestRam(std::unique_ptr<RamImage> image) : image_(std::move(image)) {}
  std::unique_ptr<RamImage> image_;
  std::vector<UniqueFd> files_;  // per block: the live block's file (for Holes), else invalid
  alignas(64) uint8_t discard_[kPageSize];
};

}  // namespace tandem::replicator
