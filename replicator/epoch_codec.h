// Epochs to records and back (record layouts: format.h, FORMAT.md).
//
// The encoder sends each dirty page against the standby's copy of it (the primary keeps a mirror of exactly what
// the standby holds), with the page's hash as the standby must end up with it. The decoder rebuilds every page
// into a staging Epoch, never into the replica, and checks every hash and the epoch's totals; only then may the
// caller apply the staged epoch. Both reuse their buffers: steady-state epochs allocate nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "replicator/epoch.h"
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
};

class EpochEncoder {
 public:
  explicit EpochEncoder(const PageCodecOptions& options);
  ~EpochEncoder();
  EpochEncoder(const EpochEncoder&) = delete;
  EpochEncoder& operator=(const EpochEncoder&) = delete;

  Status EncodeHello(const HelloMessage& hello, EpochSink* sink);
  // The pages of `epoch`, each against the standby's copy in `base` (nullptr: standby's copy unknown, no
  // XOR-delta), then the epoch's device state. `base` must not have had `epoch` applied yet.
  Status EncodeEpoch(const Epoch& epoch, uint64_t term, const RamImage* base, EpochSink* sink);
  // A full epoch: every page of every block of `image`, in order, then `device_state`.
  Status EncodeFull(uint64_t number, uint64_t term, const RamImage& image, std::span<const uint8_t> device_state,
                    EpochSink* sink);

  // Fault injection: the next encoded epoch gets one bit of a page payload flipped after that page's hash was
  // taken and before its record checksum is computed, so it reaches the standby's decoder intact as a record
  // and must be caught by the page hash (or the device state hash when the epoch has no page payload).
  void CorruptNextEpoch() { corrupt_next_ = true; }

  const EncodeStats& last_epoch_stats() const { return stats_; }
  // Records an epoch of `pages` pages and `device_state_bytes` of device state is encoded into.
  static uint64_t RecordCount(uint64_t pages, uint64_t device_state_bytes);

 private:
  // Writes the epoch's framing around `emit_pages`, which calls AddPage for every page.
  template <typename EmitPages>
  Status EncodeCommon(uint64_t number, uint64_t term, bool full, std::span<const uint8_t> device_state,
                      EpochSink* sink, EmitPages&& emit_pages);
  Status AddPage(uint32_t block, uint64_t offset, const uint8_t* page, const uint8_t* previous, EpochSink* sink);
  Status AddFilledPage(uint32_t block, uint64_t offset, uint8_t fill, EpochSink* sink);
  Status MakeRoom(EpochSink* sink);
  Status FlushPages(EpochSink* sink);
  Status Emit(RecordType type, uint32_t payload_length, EpochSink* sink);

  PageEncoder page_encoder_;
  std::vector<uint8_t> record_;  // header + largest payload, allocated once
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
  void Begin(const EpochBeginMessage& begin, const RecordView& begin_record, const RamImage* replica);
  Status Add(const RecordView& record);
  // Verifies EPOCH_END's totals against what was received.
  Status End(const RecordView& end_record);

  bool in_epoch() const { return in_epoch_; }
  uint64_t epoch_number() const { return staged_.number(); }
  // Valid after End() succeeded: the pages (and device state, if the epoch carried one) to apply.
  Epoch& staged() { return staged_; }
  bool has_device_state() const { return device_total_ > 0; }
  // Drops the staged epoch; a full epoch's staging memory (the size of RAM) is released.
  void Discard();

 private:
  Status AddPages(std::span<const uint8_t> payload);
  Status AddDeviceState(std::span<const uint8_t> payload);
  Status Fail(const Status& st);

  PageDecoder page_decoder_;
  Epoch staged_;
  const RamImage* replica_ = nullptr;
  bool in_epoch_ = false;
  bool full_ = false;
  uint64_t term_ = 0;
  // Full epochs must list every page in order: the next (block, offset) expected.
  uint32_t next_block_ = 0;
  uint64_t next_offset_ = 0;
  uint64_t page_count_ = 0;
  uint64_t payload_bytes_ = 0;
  uint32_t record_count_ = 0;
  uint64_t device_total_ = 0;
  struct Hashes;
  std::unique_ptr<Hashes> hashes_;
};

}  // namespace tandem::replicator
