#include "output-commit/hold_queue.h"

#include <algorithm>
#include <cstring>

namespace tandem::output_commit {

Status HoldQueue::Validate(const HoldLimits& limits) {
  if (limits.max_bytes == 0 || limits.max_records == 0 || limits.max_record_bytes == 0)
    return Status::InvalidArgument("hold limits must be > 0");
  if (limits.max_record_bytes > limits.max_bytes)
    return Status::InvalidArgument("hold limit: " + std::to_string(limits.max_bytes) +
                                   " bytes cannot hold one record of " + std::to_string(limits.max_record_bytes));
  if (limits.max_bytes + limits.max_record_bytes > UINT32_MAX)
    return Status::InvalidArgument("hold limit: at most 4 GiB of held bytes");
  if (limits.max_records > (size_t(1) << 24)) return Status::InvalidArgument("hold limit: at most 16M records");
  return Status::Ok();
}

HoldQueue::HoldQueue(const HoldLimits& limits)
    : limits_(limits),
      ring_(limits.max_bytes + limits.max_record_bytes),
      slots_(limits.max_records),
      ends_(limits.max_records) {}

size_t HoldQueue::MaxFit() const {
  if (count_ >= limits_.max_records) return 0;
  size_t contiguous;
  if (count_ == 0) {
    contiguous = ring_.size();
  } else if (!Wrapped()) {
    contiguous = std::max(ring_.size() - tail_, head_);
  } else {
    contiguous = head_ - tail_;
  }
  return std::min({limits_.max_record_bytes, limits_.max_bytes - size_t(counters_.held_bytes), contiguous});
}

bool HoldQueue::Push(std::span<const uint8_t> record) {
  const size_t len = record.size();
  if (len == 0 || len > MaxFit()) return false;
  size_t at;
  if (count_ == 0) {
    head_ = tail_ = at = 0;
  } else if (!Wrapped()) {
    at = ring_.size() - tail_ >= len ? tail_ : 0;  // MaxFit checked that one of the two gaps is long enough
  } else {
    at = tail_;
  }
  std::memcpy(ring_.data() + at, record.data(), len);
  tail_ = at + len;
  slots_[(first_slot_ + count_) % slots_.size()] = Slot{uint32_t(at), uint32_t(len)};
  ++count_;
  counters_.held_bytes += len;
  counters_.held_records = count_;
  open_bytes_ += len;
  return true;
}

Status HoldQueue::CloseEpoch(uint64_t epoch) {
  if (any_closed_ && epoch <= counters_.last_closed_epoch) {
    return Status::InvalidArgument("epoch boundary " + std::to_string(epoch) + " does not follow epoch " +
                                   std::to_string(counters_.last_closed_epoch));
  }
  const uint64_t next_seq = first_seq_ + count_;
  const uint64_t open_begin = end_count_ > 0 ? ends_[(first_end_ + end_count_ - 1) % ends_.size()].end_seq
                                             : first_seq_;
  if (next_seq > open_begin) {
    // At most one end per record held, so the ring (max_records long) cannot overflow.
    ends_[(first_end_ + end_count_) % ends_.size()] = EpochEnd{epoch, next_seq};
    ++end_count_;
  }
  counters_.max_epoch_bytes = std::max(counters_.max_epoch_bytes, open_bytes_);
  open_bytes_ = 0;
  counters_.last_closed_epoch = epoch;
  any_closed_ = true;
  return Status::Ok();
}

std::span<const uint8_t> HoldQueue::Peek(uint64_t acked, bool include_open) const {
  if (count_ == 0) return {};
  if (!include_open) {
    // The oldest record belongs to the oldest closed epoch that still has records, or to the open epoch.
    if (end_count_ == 0 || ends_[first_end_].epoch > acked) return {};
  }
  const Slot& slot = slots_[first_slot_];
  return {ring_.data() + slot.offset, slot.length};
}

void HoldQueue::Pop() {
  if (count_ == 0) return;
  const Slot slot = slots_[first_slot_];
  first_slot_ = (first_slot_ + 1) % slots_.size();
  --count_;
  ++first_seq_;
  counters_.held_bytes -= slot.length;
  counters_.held_records = count_;
  counters_.released_records++;
  counters_.released_bytes += slot.length;
  if (count_ == 0) {
    head_ = tail_ = 0;
    open_bytes_ = 0;
  } else {
    head_ = slots_[first_slot_].offset;
  }
  if (end_count_ > 0 && ends_[first_end_].end_seq <= first_seq_) {
    first_end_ = (first_end_ + 1) % ends_.size();
    --end_count_;
  } else if (end_count_ == 0) {
    open_bytes_ -= std::min<uint64_t>(open_bytes_, slot.length);  // an open record left (pass-through)
  }
}

uint64_t HoldQueue::DropAll() {
  const uint64_t dropped = count_;
  first_seq_ += count_;
  count_ = first_slot_ = 0;
  end_count_ = first_end_ = 0;
  head_ = tail_ = 0;
  open_bytes_ = 0;
  counters_.held_bytes = counters_.held_records = 0;
  counters_.dropped_records += dropped;
  return dropped;
}

}  // namespace tandem::output_commit
