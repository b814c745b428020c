#include "replicator/delta_base.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>

#include "replicator/page_codec.h"

namespace tandem::replicator {
namespace {

// Per slot, besides its page: key, CLOCK bit, free-list entry.
constexpr uint64_t kPerSlotBytes = kPageSize + sizeof(uint64_t) + 1 + sizeof(uint32_t);

uint64_t IndexEntries(uint64_t slots) { return std::bit_ceil(std::max<uint64_t>(2, 2 * slots)); }

}  // namespace

uint64_t DefaultDeltaBaseBudget(uint64_t guest_ram_bytes) {
  constexpr uint64_t kMin = uint64_t{16} << 20, kMax = uint64_t{4} << 30;
  return std::min(guest_ram_bytes, std::clamp(guest_ram_bytes / 16, kMin, kMax));
}

DeltaBase::DeltaBase(uint64_t budget_bytes) {
  // The most slots whose pages, per-slot arrays and index fit the budget (the index rounds up to a power of two,
  // so the first guess may overshoot by a little).
  uint64_t slots = budget_bytes / (kPerSlotBytes + 2 * sizeof(uint32_t));
  while (slots > 0 && slots * kPerSlotBytes + IndexEntries(slots) * sizeof(uint32_t) > budget_bytes) {
    const uint64_t index_bytes = IndexEntries(slots) * sizeof(uint32_t);
    slots = budget_bytes > index_bytes ? std::min(slots - 1, (budget_bytes - index_bytes) / kPerSlotBytes) : 0;
  }
  slots = std::min<uint64_t>(slots, kNoSlot - 1);
  if (slots == 0) return;
  void* pages = mmap(nullptr, slots * kPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (pages == MAP_FAILED) return;  // caches nothing: every page goes standalone (capacity_pages() says so)
  pages_ = static_cast<uint8_t*>(pages);
  capacity_ = slots;
  keys_.assign(slots, kNoKey);
  referenced_.assign(slots, 0);
  free_.reserve(slots);
  index_.assign(IndexEntries(slots), kNoSlot);
  index_mask_ = index_.size() - 1;
  index_shift_ = 64 - std::countr_zero(index_.size());
}

DeltaBase::~DeltaBase() {
  if (pages_ != nullptr) munmap(pages_, capacity_ * kPageSize);
}

uint64_t DeltaBase::memory_bytes() const {
  return capacity_ * kPageSize + keys_.capacity() * sizeof(uint64_t) + referenced_.capacity() +
         free_.capacity() * sizeof(uint32_t) + index_.capacity() * sizeof(uint32_t);
}

size_t DeltaBase::Find(uint64_t key) const {
  // At most half the index is ever in use, so an empty position always ends the probe.
  for (size_t at = Home(key);; at = (at + 1) & index_mask_) {
    const uint32_t slot = index_[at];
    if (slot == kNoSlot || keys_[slot] == key) return at;
  }
}

void DeltaBase::EraseAt(size_t hole) {
  // Backward-shift deletion: later entries of the probe run move up into the hole unless their home lies
  // cyclically in (hole, next], so every key stays reachable from its home without tombstones.
  for (size_t next = (hole + 1) & index_mask_; index_[next] != kNoSlot; next = (next + 1) & index_mask_) {
    const size_t home = Home(keys_[index_[next]]);
    const bool stays = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next);
    if (!stays) {
      index_[hole] = index_[next];
      hole = next;
    }
  }
  index_[hole] = kNoSlot;
}

const uint8_t* DeltaBase::Lookup(uint32_t block, uint64_t offset) const {
  if (capacity_ == 0) return nullptr;
  const uint32_t slot = index_[Find(Key(block, offset))];
  return slot == kNoSlot ? nullptr : SlotPage(slot);
}

uint32_t DeltaBase::TakeSlot() {
  if (!free_.empty()) {
    const uint32_t slot = free_.back();
    free_.pop_back();
    return slot;
  }
  if (unused_ < capacity_) return unused_++;
  for (;;) {
    const uint32_t slot = hand_;
    hand_ = hand_ + 1 == capacity_ ? 0 : hand_ + 1;
    if (referenced_[slot]) {
      referenced_[slot] = 0;
      continue;
    }
    const uint64_t key = keys_[slot];
    if (fingerprints_ != nullptr) {
      fingerprints_->Record(uint32_t(key >> kPageBits), (key & ((uint64_t{1} << kPageBits) - 1)) * kPageSize,
                            SlotPage(slot));
    }
    EraseAt(Find(key));
    keys_[slot] = kNoKey;
    size_--;
    counters_.evictions++;
    return slot;
  }
}

void DeltaBase::Update(uint32_t block, uint64_t offset, const uint8_t* page) {
  const uint64_t key = Key(block, offset);
  if (capacity_ == 0) {
    counters_.misses++;
    if (fingerprints_ != nullptr) fingerprints_->Record(block, offset, page);
    return;
  }
  size_t at = Find(key);
  if (uint32_t slot = index_[at]; slot != kNoSlot) {
    CopyPage(SlotPage(slot), page);
    referenced_[slot] = 1;
    counters_.hits++;
    return;
  }
  counters_.misses++;
  if (fingerprints_ != nullptr) fingerprints_->Forget(block, offset);  // stale from now on: the bytes are here
  const uint32_t slot = TakeSlot();
  at = Find(key);  // an eviction may have shifted the probe run
  index_[at] = slot;
  keys_[slot] = key;
  referenced_[slot] = 0;  // a second chance is earned by being dirtied again
  CopyPage(SlotPage(slot), page);
  size_++;
}

void DeltaBase::Record(const Epoch& epoch) {
  for (const PageRecord& p : epoch.pages()) {
    if (p.filled) {
      Invalidate(p.block, p.offset);
      if (fingerprints_ != nullptr) fingerprints_->RecordFilled(p.block, p.offset, p.fill);
    } else if (p.patch_size > 0) {
      Invalidate(p.block, p.offset);
    } else {
      Update(p.block, p.offset, epoch.PageData(p));
    }
  }
}

void DeltaBase::Invalidate(uint32_t block, uint64_t offset) {
  if (fingerprints_ != nullptr) fingerprints_->Forget(block, offset);
  if (capacity_ == 0) return;
  const size_t at = Find(Key(block, offset));
  const uint32_t slot = index_[at];
  if (slot == kNoSlot) return;
  EraseAt(at);
  keys_[slot] = kNoKey;
  referenced_[slot] = 0;
  free_.push_back(slot);  // never beyond the capacity reserved
  size_--;
  counters_.invalidations++;
}

void DeltaBase::Invalidate(std::span<const PageRef> pages) {
  for (const PageRef& p : pages) Invalidate(p.block, p.offset);
}

void DeltaBase::Invalidate(const Epoch& epoch) {
  for (const PageRecord& p : epoch.pages()) Invalidate(p.block, p.offset);
}

void DeltaBase::Clear() {
  if (fingerprints_ != nullptr) fingerprints_->ForgetAll();
  counters_.invalidations += size_;
  std::fill(keys_.begin(), keys_.end(), kNoKey);
  std::fill(referenced_.begin(), referenced_.end(), 0);
  std::fill(index_.begin(), index_.end(), kNoSlot);
  free_.clear();
  size_ = 0;
  unused_ = 0;
  hand_ = 0;
}

}  // namespace tandem::replicator
