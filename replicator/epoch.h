// The unit of replication: one consistent checkpoint of the VM (dirty pages of every RAM block that changed,
// plus QEMU's device state), and the RAM image the pages are applied to (primary mirror, standby replica).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace tandem::replicator {

inline constexpr uint32_t kPageSize = 4096;

struct RamBlockInfo {
  std::string name;  // QEMU's RAMBlock idstr, e.g. "mem" for -machine memory-backend=mem
  uint64_t size_bytes = 0;
  bool operator==(const RamBlockInfo&) const = default;
};

// Everything besides RAM contents that the standby needs to resume the VM. Sent in every stream hello.
struct VmDescriptor {
  std::string vm_name;
  uint32_t page_size = kPageSize;
  std::vector<RamBlockInfo> ram_blocks;  // in QEMU's order; pages refer to blocks by index
  std::string qemu_configuration;        // QEMU's CONFIGURATION section bytes from the precopy (opaque)
  std::string qemu_vmdesc_json;          // QEMU's VMDESCRIPTION JSON from the precopy (opaque)
};

// Where parsed pages go: an Epoch (checkpoint pages) or a RamImage (the precopy, written in place).
class PageSink {
 public:
  virtual ~PageSink() = default;
  // Returns where the kPageSize bytes of (block, offset) must be written, or nullptr if out of range.
  virtual uint8_t* PageBuffer(uint32_t block, uint64_t offset) = 0;
  // A page whose every byte is `fill` (QEMU's ZERO record). Returns false if out of range.
  virtual bool FilledPage(uint32_t block, uint64_t offset, uint8_t fill) = 0;
};

struct PageRecord {
  uint32_t block = 0;
  uint64_t offset = 0;       // byte offset in the block, page aligned
  uint64_t data_offset = 0;  // into Epoch's page arena; unused for filled pages
  bool filled = false;       // every byte equals `fill` (no data in the arena)
  uint8_t fill = 0;
  // > 0: the arena holds this many bytes of kSparse runs (page_codec.h) to write over the page as the image holds
  // it, not the page itself. Only the standby's decoder stages these (sparse pages are most pages of most
  // workloads: staging and applying their few changed words instead of 4 KiB saves two page copies).
  uint32_t patch_size = 0;
};

// One page of a RamImage.
struct PageRef {
  uint32_t block = 0;
  uint64_t offset = 0;  // page aligned
};

// Pages and device state of one epoch. Reset() keeps capacity so steady-state epochs allocate nothing.
// Pages are kept in arrival order; a page that appears twice is applied twice, the later one wins.
class Epoch final : public PageSink {
 public:
  void Reset(uint64_t number, bool full);
  // Room for `bytes` of page data in one allocation, when the size is known up front (a staged full epoch: the
  // geometric growth would otherwise ask for twice the RAM and copy it on the way).
  void ReservePageBytes(uint64_t bytes);

  uint64_t number() const { return number_; }
  // A full epoch carries every page of every block (initial sync, resync after reconnect).
  bool full() const { return full_; }
  // How many checkpoints before number() this epoch also holds (Absorb): it takes the standby from
  // number() - merged() - 1 to number(). 0 for an epoch of one checkpoint.
  uint32_t merged() const { return merged_; }
  // Takes in `later`, the checkpoint right after this one: applying the result equals applying both in turn,
  // but a page written by both is held once (later's content, overwritten in place), so a run of absorbed
  // epochs never holds more than the pages they dirtied and each absorb costs only `later`'s pages. Device
  // state: later's, else this one's. Only delta epochs of whole and filled pages (the primary's) merge;
  // InvalidArgument otherwise, with this epoch unchanged. Allocates (a page index): it is for the rare case of
  // a queue that overflows, not for the steady state.
  Status Absorb(const Epoch& later);
  std::span<const PageRecord> pages() const { return pages_; }
  const uint8_t* PageData(const PageRecord& page) const { return arena_.data() + page.data_offset; }
  uint8_t* MutablePageData(const PageRecord& page) { return arena_.data() + page.data_offset; }
  std::vector<uint8_t>& device_state() { return device_state_; }
  const std::vector<uint8_t>& device_state() const { return device_state_; }
  // The epoch's DISK_WRITES payload (disk/disk_writes.h): every write the guest's disk completed in it, empty
  // when the VM has no replicated disk. Opaque here; the encoder ships it in DISK_WRITES records.
  std::vector<uint8_t>& disk_writes() { return disk_writes_; }
  const std::vector<uint8_t>& disk_writes() const { return disk_writes_; }
  // Bytes of page payload held (filled pages count zero, patches their size).
  uint64_t page_bytes() const { return arena_used_; }

  // PageSink: blocks and offsets are not range-checked here (the epoch does not know the layout);
  // RamImage::Apply checks every record before writing anything.
  uint8_t* PageBuffer(uint32_t block, uint64_t offset) override;
  bool FilledPage(uint32_t block, uint64_t offset, uint8_t fill) override;
  // Room for `size` (1..kPageSize) bytes of kSparse runs for the page (see PageRecord::patch_size).
  uint8_t* PatchBuffer(uint32_t block, uint64_t offset, uint32_t size);

 private:
  uint8_t* Append(uint32_t block, uint64_t offset, uint32_t bytes, uint32_t patch_size);
  uint64_t number_ = 0;
  bool full_ = false;
  uint32_t merged_ = 0;
  std::vector<PageRecord> pages_;
  std::unordered_map<uint64_t, size_t> index_;  // Absorb only: page -> its last entry in pages_
  std::vector<uint8_t> arena_;
  uint64_t arena_used_ = 0;
  std::vector<uint8_t> device_state_;
  std::vector<uint8_t> disk_writes_;
};

// Guest RAM as tandem holds it: one mapping per RAM block. Blocks named in `file_backed` are mapped
// MAP_SHARED from that file (created and sized if needed, contents kept) so a standby QEMU started with
// mem-path=<file>,share=on sees exactly what tandem applied; the others are anonymous memory.
// Blocks named in `read_only` are mapped MAP_SHARED and read-only from that existing file (at least the block's
// size; nothing is created or resized): a view of RAM another process writes, the running guest's on the
// primary (GuestRam). PageBuffer and FilledPage refuse their pages, Apply refuses epochs that touch them, and
// Block() of such a block must not be written through.
class RamImage final : public PageSink {
 public:
  static Result<std::unique_ptr<RamImage>> Create(const VmDescriptor& descriptor,
                                                  const std::map<std::string, std::string>& file_backed,
                                                  const std::map<std::string, std::string>& read_only = {});
  bool read_only(uint32_t index) const { return read_only_[index]; }
  ~RamImage() override;
  RamImage(const RamImage&) = delete;
  RamImage& operator=(const RamImage&) = delete;

  const std::vector<RamBlockInfo>& blocks() const { return blocks_; }
  std::span<uint8_t> Block(uint32_t index) { return {bases_[index], blocks_[index].size_bytes}; }
  std::span<const uint8_t> Block(uint32_t index) const { return {bases_[index], blocks_[index].size_bytes}; }
  // The page at (block, offset), or nullptr when out of range.
  const uint8_t* Page(uint32_t block, uint64_t offset) const;

  // Applies every page of `epoch`. All-or-nothing against bad input: every record's block and offset is
  // checked first, and nothing is written unless all are in range. Epochs of kParallelApplyMinBytes or more are
  // copied on up to `threads` threads (one core does not saturate memory bandwidth: a full resync applies about
  // 1.6x faster on two); smaller ones on the calling thread only, where starting threads would cost more.
  static constexpr uint64_t kParallelApplyMinBytes = 16u << 20;
  Status Apply(const Epoch& epoch, int threads = 1);

  uint8_t* PageBuffer(uint32_t block, uint64_t offset) override;
  bool FilledPage(uint32_t block, uint64_t offset, uint8_t fill) override;

 private:
  RamImage() = default;
  std::vector<RamBlockInfo> blocks_;
  std::vector<uint8_t*> bases_;
  std::vector<bool> read_only_;
};

}  // namespace tandem::replicator
