// Output held until the epoch that produced it is on the standby: a bounded FIFO of records (Ethernet frames or
// console byte chunks), each belonging to an epoch. Pure and single-threaded; the channels lock around it.
//
// All memory is taken at construction (a byte ring for the payloads, a ring of slots, a ring of epoch ends):
// Push, Peek and Pop never allocate.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace tandem::output_commit {

struct HoldLimits {
  size_t max_bytes = 4 << 20;         // payload bytes held at most (all epochs together)
  size_t max_records = 4096;          // records held at most
  size_t max_record_bytes = 1 << 16;  // the largest single record
};

struct HoldCounters {
  uint64_t held_bytes = 0;
  uint64_t held_records = 0;
  uint64_t max_epoch_bytes = 0;  // the most bytes one closed epoch held
  uint64_t released_records = 0;
  uint64_t released_bytes = 0;
  uint64_t dropped_records = 0;  // by DropUnreleased
  uint64_t last_closed_epoch = 0;
};

class HoldQueue {
 public:
  // InvalidArgument unless every limit is > 0, a record fits the byte limit, and offsets fit 32 bits.
  static Status Validate(const HoldLimits& limits);
  explicit HoldQueue(const HoldLimits& limits);  // limits must Validate

  // The longest record Push would take now (0 when full: the caller stops reading its source).
  size_t MaxFit() const;
  // Appends a record to the open epoch. False, and nothing kept, if it is empty or longer than MaxFit().
  bool Push(std::span<const uint8_t> record);
  // The records pushed since the last close belong to `epoch`. Epochs must increase (InvalidArgument if not).
  Status CloseEpoch(uint64_t epoch);
  // The oldest record if it may leave: its epoch is closed and <= acked, or `include_open` (pass-through).
  // Empty span if none may.
  std::span<const uint8_t> Peek(uint64_t acked, bool include_open) const;
  // Removes the record Peek returned (it left).
  void Pop();
  // Forgets every record, closed or open. Returns how many.
  uint64_t DropAll();

  const HoldCounters& counters() const { return counters_; }
  const HoldLimits& limits() const { return limits_; }
  bool empty() const { return count_ == 0; }

 private:
  struct Slot {
    uint32_t offset, length;
  };
  struct EpochEnd {
    uint64_t epoch;
    uint64_t end_seq;  // sequence number one past the epoch's last record
  };
  bool Wrapped() const { return count_ > 0 && tail_ <= head_; }

  HoldLimits limits_;
  // Capacity max_bytes + max_record_bytes: whenever the byte limit admits a record, a contiguous gap for it
  // exists (the unused tail before a wrap is shorter than one record).
  std::vector<uint8_t> ring_;
  size_t head_ = 0, tail_ = 0;  // offset of the oldest record; where the next one goes
  std::vector<Slot> slots_;
  size_t first_slot_ = 0, count_ = 0;
  std::vector<EpochEnd> ends_;  // closed epochs that still have records, oldest first (a ring)
  size_t first_end_ = 0, end_count_ = 0;
  uint64_t first_seq_ = 0;  // sequence number of the oldest record
  uint64_t open_bytes_ = 0;  // bytes pushed since the last close
  bool any_closed_ = false;
  HoldCounters counters_;
};

}  // namespace tandem::output_commit
