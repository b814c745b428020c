// Epochs to records and back (record layouts: format.h, FORMAT.md).
//
// The encoder sends each dirty page against the standby's copy of it (the primary keeps a mirror of exactly what
// the standby holds), with the page's hash as the standby must end up with it. The decoder rebuilds every page
// into a staging Epoch, never into the replica, and checks every hash and the epoch's totals; only then may the
// caller apply the staged epoch. Both reuse their buffers: steady-state epochs allocate nothing.
//
// Large epochs (kParallelMinPages pages or more, and every full epoch) are encoded on several threads: PAGES
// records hold kMaxPagesPerRecord pages each whatever their encoding, so record i covers the same pages however
// it is encoded, and every thread encodes whole records (pages, page hashes, record checksum) with its own
// PageEncoder while the calling thread hands the finished ones to the sink in order. The bytes are identical to
// the single-threaded encoder's; only the wall time changes.
//
// Files: epoch_encoder.cc (framing, single thread), epoch_encoder_parallel.cc (the threads), epoch_decoder.cc;
// the PAGES entry header they share is page_entry.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "replicator/decode_error.h"
#include "replicator/epoch.h"
#include "replicator/guest_ram.h"
#include "replicator/messages.h"
#include "replicator/page_codec.h"
#include "replicator/transport.h"

namespace tandem::replicator {

struct EncodeStats {
  uint64_t pages = 0;
  uint64_t records = 0;
  uint64_t wire_bytes = 0;  // headers included
  uint64_t page_payload_bytes = 0;
  uint64_t by_encoding[8] = {};  // pages per PageEncoding
  uint32_t threads = 1;          // threads that encoded the pages
};

// CPUs this process may run on (its affinity mask): the useful ceiling for encoder threads.
int UsableCpus();

class DeltaBase;
class GuestRam;
class PageFingerprints;

// A resync read from GuestRam (guest_ram.h) while the guest runs: every page of a live block is copied once and
// that copy encoded and hashed, holes go as zero pages without being touched, and when the RAM has a live block
// the epoch is flagged live (FORMAT.md) with the settles_after the caller returns once every page was read.
struct ResyncSource {
  const GuestRam* ram = nullptr;
  // Pages sent are recorded here, exactly the standby's copies, so that their next change travels as the chunks
  // that changed (null: not recorded).
  PageFingerprints* fingerprints = nullptr;
  // Called once after the last page was read, before EPOCH_END, for a live epoch only: >= 1.
  std::function<uint32_t()> settles_after;
  // The guest disk's blocks that differ on the standby, as one DISK_WRITES payload (empty: no disk). Read before
  // the pages, so every disk write after the read is in an epoch the live epoch settles with.
  std::span<const uint8_t> disk_writes;
};

class EpochEncoder {
 public:
  // Epochs of at least this many pages are split across the encoder's threads (full epochs always are).
  static constexpr uint64_t kParallelMinPages = 2048;

  // `threads` (>= 1) encode large epochs, the calling thread being one of them; the helper threads start with
  // the first large epoch and live as long as the encoder. Callers cap it, e.g. at UsableCpus().
  explicit EpochEncoder(const PageCodecOptions& options, int threads = 1);
  ~EpochEncoder();
  EpochEncoder(const EpochEncoder&) = delete;
  EpochEncoder& operator=(const EpochEncoder&) = delete;

  Status EncodeHello(const HelloMessage& hello, EpochSink* sink);
  // The pages of `epoch`, each against the standby's copy in `base` (nullptr: standby's copy unknown, no
  // XOR-delta), then the epoch's device state. `base` must not have had `epoch` applied yet.
  Status EncodeEpoch(const Epoch& epoch, uint64_t term, const RamImage* base, EpochSink* sink);
  // The same against a bounded base (delta_base.h): a page DeltaBase holds is XOR-encoded against it, any other
  // goes as its changed chunks when `fingerprints` knows the standby's copy, else standalone (EncodeWithoutBase).
  // `layout` (the VM's RAM blocks) is what the pages are checked against before anything is written.
  Status EncodeEpoch(const Epoch& epoch, uint64_t term, const DeltaBase* base, const PageFingerprints* fingerprints,
                     std::span<const RamBlockInfo> layout, EpochSink* sink);
  // A full epoch: every page of every block of `image`, in order, then `disk_writes` (a DISK_WRITES payload, if
  // the VM has a disk) and `device_state`.
  Status EncodeFull(uint64_t number, uint64_t term, const RamImage& image, std::span<const uint8_t> device_state,
                    EpochSink* sink, std::span<const uint8_t> disk_writes = {});
  // A delta epoch `number` holding checkpoints number - merged .. number, made of the `pages` of `image` as they
  // are (not relative to the standby's copy, which the caller does not know), then `device_state`: what a
  // standby that holds epoch number - merged - 1 lacks, when the caller knows which pages changed since.
  Status EncodeCatchUp(uint64_t number, uint32_t merged, uint64_t term, const RamImage& image,
                       std::span<const PageRef> pages, std::span<const uint8_t> device_state, EpochSink* sink);
  // EncodeFull and EncodeCatchUp of a GuestRam (see ResyncSource).
  Status EncodeFull(uint64_t number, uint64_t term, const ResyncSource& source,
                    std::span<const uint8_t> device_state, EpochSink* sink);
  Status EncodeCatchUp(uint64_t number, uint32_t merged, uint64_t term, const ResyncSource& source,
                       std::span<const PageRef> pages, std::span<const uint8_t> device_state, EpochSink* sink);
  // A full epoch that keeps the standby's pages (EpochBeginMessage::keeps, page_hashes.h): only the `differing`
  // pages of `source` (in increasing order: DifferingPages), then the disk's blocks and `device_state`.
  Status EncodeKeeping(uint64_t number, uint64_t term, const ResyncSource& source, std::span<const PageRef> differing,
                       std::span<const uint8_t> device_state, EpochSink* sink);

  // Fault injection: the next encoded epoch gets one bit of a page payload flipped after that page's hash was
  // taken and before its record checksum is computed, so it reaches the standby's decoder intact as a record
  // and must be caught by the page hash (or the device state hash when the epoch has no page payload).
  void CorruptNextEpoch() { corrupt_next_ = true; }

  // Page encodings of the epochs encoded from now on (CompressionGovernor's choice).
  void set_codec(const PageCodecOptions& options) {
    options_ = options;
    page_encoder_.set_options(options);
  }

  const EncodeStats& last_epoch_stats() const { return stats_; }
  // The pages one epoch is made of (defined in epoch_codec_internal.h; not for callers).
  struct PageSource;
  int threads() const { return threads_; }
  // Records an epoch of `pages` pages and `device_state_bytes` of device state is encoded into.
  static uint64_t RecordCount(uint64_t pages, uint64_t device_state_bytes, uint64_t disk_writes_bytes = 0);

 private:
  // Writes the epoch's framing around `emit_pages`, which adds every page (MakeRoom, then EntryWritten).
  template <typename EmitPages>
  Status EncodeCommon(const EpochBeginMessage& begin, std::span<const uint8_t> device_state,
                      std::span<const uint8_t> disk_writes, EpochSink* sink, EmitPages&& emit_pages,
                      const ResyncSource* resync = nullptr);
  // A delta epoch's pages against `source`'s base; a full or catch-up epoch of `source`'s image.
  Status EncodeDelta(const Epoch& epoch, uint64_t term, const PageSource& source, EpochSink* sink);
  Status EncodeResync(const EpochBeginMessage& begin, const PageSource& source, std::span<const uint8_t> device_state,
                      const ResyncSource* resync, EpochSink* sink);
  void EntryWritten(const EncodedPage& e);  // the page entry at pages_cursor_ is complete
  Status MakeRoom(EpochSink* sink);
  Status FlushPages(EpochSink* sink);
  Status Emit(RecordType type, uint32_t payload_length, EpochSink* sink);
  void CorruptPayload(RecordType type, uint32_t payload_length);  // CorruptNextEpoch's fault

  // Multi-threaded pages (see the top of this file). `source` lists the epoch's pages in wire order.
  struct Slot;
  struct Parallel;
  bool UseParallel(uint64_t pages, bool full) const;
  Status EncodePagesParallel(const PageSource& source, EpochSink* sink);
  Status EmitSlot(const Slot& slot, EpochSink* sink);
  static void EncodeRecord(PageEncoder& encoder, const PageSource& source, uint64_t index, Slot* slot);
  static void Finish(Slot* slot, uint8_t* out, uint32_t count, size_t cursor, uint64_t payload_bytes,
                     const uint64_t (&by_encoding)[8]);
  static void HelperLoop(Parallel* parallel);

  PageCodecOptions options_;
  const int threads_;
  std::unique_ptr<Parallel> parallel_;  // created with the first large epoch
  PageEncoder page_encoder_;
  std::vector<uint8_t> record_;  // header + largest payload, allocated once
  std::vector<uint8_t> scratch_;    // EncodeWithoutBase's second buffer (kMaxEncodedPage)
  std::vector<uint8_t> page_copy_;  // a live page read once (kPageSize)
  std::vector<uint8_t> hello_;
  uint32_t pages_in_record_ = 0;
  size_t pages_cursor_ = 0;
  struct EpochTotals;
  std::unique_ptr<EpochTotals> totals_;
  EncodeStats stats_;
  bool corrupt_next_ = false;
  bool corrupting_ = false;
};

// Decodes the records of one epoch into a staging Epoch. Begin(), then Add() for each record up to and
// excluding EPOCH_END, then End(); any error means the epoch must be dropped (nothing was written outside the
// staging epoch). The caller checks what Begin() does not know about: epoch numbering, terms, ordering of
// HELLO and EPOCH_BEGIN.
class EpochDecoder {
 public:
  EpochDecoder();
  ~EpochDecoder();
  EpochDecoder(const EpochDecoder&) = delete;
  EpochDecoder& operator=(const EpochDecoder&) = delete;

  // `replica` is the standby's current RAM: the layout pages are checked against and the base of XOR-delta and
  // unchanged pages. `begin_record` is the EPOCH_BEGIN record itself (its checksum starts the epoch's chain).
  // `write_through` (a full epoch only; else ignored): each verified page goes straight into it instead of being
  // staged, for a standby that holds nothing worth keeping if the epoch breaks off: no staging copy of all RAM.
  // `write_through_holes` (per block of the replica, optional): the holes of the files `write_through` maps; a
  // zero page that falls in one is not written (it reads as zero already, and writing it would allocate it).
  void Begin(const EpochBeginMessage& begin, const RecordView& begin_record, const RamImage* replica,
             RamImage* write_through = nullptr, std::vector<FileHoles> write_through_holes = {});
  DecodeStatus Add(const RecordView& record);
  // Verifies EPOCH_END's totals against what was received.
  DecodeStatus End(const RecordView& end_record);

  bool in_epoch() const { return in_epoch_; }
  uint64_t epoch_number() const { return staged_.number(); }
  // Valid after End() succeeded: the pages (and device state, if the epoch carried one) to apply; no pages when
  // they were written through.
  Epoch& staged() { return staged_; }
  bool has_device_state() const { return device_total_ > 0; }
  // Whether DISK_WRITES records are taken in the epochs to come (the connection's HELLO announced a disk);
  // otherwise one is refused as unsupported.
  void set_accept_disk_writes(bool accept) { accept_disk_writes_ = accept; }
  // Valid after End() succeeded: the epoch carried DISK_WRITES (reassembled in staged().disk_writes()).
  bool has_disk_writes() const { return disk_total_ > 0; }
  // Valid after End() succeeded: a live epoch is a resume point once epoch epoch_number() + settles_after() is
  // applied; 0 for every other epoch.
  uint32_t settles_after() const { return settles_after_; }
  // After a failed epoch: a page rebuilt from the replica's copy (IsRelativeEncoding) failed its hash, so the
  // replica may differ from what the primary believes the standby holds.
  bool replica_differs() const { return replica_differs_; }
  // Drops the staged epoch; a full epoch's staging memory (the size of RAM) is released.
  void Discard();

 private:
  DecodeStatus AddPages(std::span<const uint8_t> payload);
  void PrefetchNextBase(std::span<const uint8_t> payload, size_t pos) const;
  DecodeStatus AddDeviceState(std::span<const uint8_t> payload);
  DecodeStatus AddDiskWrites(std::span<const uint8_t> payload);
  // `st` (or Corruption(`message`)) with the epoch's number as context.
  DecodeStatus Fail(const DecodeStatus& st);
  DecodeStatus Fail(DecodeError error, std::string_view message);
  // True if (block, offset) was already listed in this epoch; marks it.
  bool SeenBefore(uint32_t block, uint64_t offset);
  void ForgetSeen();

  PageDecoder page_decoder_;
  // Sparse and unchanged pages are staged as their runs / not at all, to be applied over the replica's page. That
  // is only right for a page's first entry in an epoch: a later one must replace what the earlier one staged,
  // so it is staged whole. One bit per page (sized once per RAM layout), cleared through the list of pages set.
  std::vector<std::vector<uint64_t>> seen_;
  std::vector<std::pair<uint32_t, uint64_t>> seen_pages_;
  std::unique_ptr<uint8_t[]> check_page_;  // a sparse page rebuilt to verify its hash
  Epoch staged_;
  const RamImage* replica_ = nullptr;
  RamImage* write_through_ = nullptr;
  std::vector<FileHoles> holes_;  // of write_through_'s files, when known
  bool in_epoch_ = false;
  bool full_ = false;
  bool keeps_ = false;  // a full epoch of only the pages that differ from the standby's PAGE_HASHES
  bool live_ = false;
  uint32_t settles_after_ = 0;
  bool replica_differs_ = false;
  uint64_t term_ = 0;
  // Full epochs must list every page in order: the next (block, offset) expected.
  uint32_t next_block_ = 0;
  uint64_t next_offset_ = 0;
  uint64_t page_count_ = 0;
  uint64_t payload_bytes_ = 0;
  uint32_t record_count_ = 0;
  uint64_t device_total_ = 0;
  bool accept_disk_writes_ = false;
  uint64_t disk_total_ = 0;
  struct Hashes;
  std::unique_ptr<Hashes> hashes_;
};

}  // namespace tandem::replicator
