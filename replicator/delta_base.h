// The primary's delta base without a mirror of all RAM: the version last shipped of the pages dirtied recently,
// within a fixed byte budget (replication.delta_base_mib, default DefaultDeltaBaseBudget).
//
// A cached page is exactly what the standby holds for it (every page shipped goes through Update after its epoch
// was encoded, and the standby applies epochs in order), so a dirty page found here is XOR-encoded against it as
// against the mirror today; a page not found is encoded standalone (PageEncoder::Encode with previous == nullptr).
// Pages it keeps rewriting (stacks, counters, kernel data) stay cached and cost what they cost against the
// mirror; a page dirtied after a long while is found in the second tier, PageFingerprints (set_fingerprints),
// and travels as its changed chunks, or standalone when its fingerprints are not known either.
//
// Eviction is CLOCK: a page recorded again while cached (dirtied again: the only "use" of a base that matters)
// gets a second chance, a page recorded once is the first to go, so a burst of pages written once (a file being
// written out) does not flush the pages that are rewritten every epoch. Everything is allocated up front:
// `capacity_pages()` page slots (anonymous memory, touched as they fill), their keys and CLOCK bits, and an
// open-addressing index of at least twice as many entries; the whole is at most the budget (`memory_bytes()`).
// Update, Invalidate and Lookup are O(1) (the CLOCK hand's sweep is amortised O(1)) and allocate nothing.
//
// Concurrency: Lookup is const and writes nothing, not even counters, so any number of threads (the encoder's)
// may call it at once, provided nobody calls a mutating member (Update, Record, Invalidate*, Clear) meanwhile.
// The shipper mutates between epochs on its sender thread, after EncodeEpoch returned (its helper threads are
// then idle); a pointer Lookup returned stays valid until the next mutating call. Hits and misses are therefore
// counted by Update: a page recorded while it was cached had its base found when it was encoded just before.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "replicator/epoch.h"
#include "replicator/page_fingerprints.h"

namespace tandem::replicator {

// Budget for a guest of `guest_ram_bytes` when replication.delta_base_mib is 0 (auto): 1/16 of it, at least
// 16 MiB (or all of a smaller guest) and at most 4 GiB. With PageFingerprints (another 9.4%) the primary holds
// about 1.16x guest RAM. bench/delta_base_bench: 1/16 keeps every page the captured workloads rewrote (1/8 and
// 1/4 ship the same bytes); a page beyond it still travels as its changed chunks.
uint64_t DefaultDeltaBaseBudget(uint64_t guest_ram_bytes);

struct DeltaBaseCounters {
  uint64_t hits = 0;           // pages recorded while cached: they were encoded against their base
  uint64_t misses = 0;         // pages recorded while not cached: they went standalone
  uint64_t evictions = 0;      // cached pages dropped for room
  uint64_t invalidations = 0;  // cached pages dropped because the standby's copy is no longer known
};

class DeltaBase {
 public:
  // Bytes each cached page costs besides its kPageSize: key, CLOCK bit, free-list entry, and two to four index
  // entries (the index is a power of two at least twice the slots).
  static constexpr uint64_t kSlotOverheadBytes = sizeof(uint64_t) + 1 + sizeof(uint32_t) + 4 * sizeof(uint32_t);

  // A cache that never holds more than `budget_bytes` (page slots, keys and index together). A budget below one
  // page and its overhead caches nothing: every page is encoded standalone.
  explicit DeltaBase(uint64_t budget_bytes);
  ~DeltaBase();
  DeltaBase(const DeltaBase&) = delete;
  DeltaBase& operator=(const DeltaBase&) = delete;

  uint64_t capacity_pages() const { return capacity_; }
  uint64_t size_pages() const { return size_; }
  // What the cache reserved (its page slots are anonymous memory, resident once used): at most the budget.
  uint64_t memory_bytes() const;
  const DeltaBaseCounters& counters() const { return counters_; }

  // The standby's copy of page (block, offset) (offset page aligned), or nullptr when it is not known here:
  // encode the page standalone. Thread-safe against other Lookups only (see the top of this file).
  const uint8_t* Lookup(uint32_t block, uint64_t offset) const;

  // `page` (kPageSize bytes) went out as (block, offset): it is now the standby's copy.
  void Update(uint32_t block, uint64_t offset, const uint8_t* page);
  // Every page of an epoch that went out (call it after EncodeEpoch): whole pages are recorded, filled pages
  // (QEMU's zero pages; no better base than none) are dropped (their fingerprints recorded), staged patches
  // dropped and forgotten.
  void Record(const Epoch& epoch);
  // The standby's copy of these pages is no longer what was recorded (a catch-up resent them as they are now,
  // or they changed in epochs that were folded without being sent).
  void Invalidate(uint32_t block, uint64_t offset);
  void Invalidate(std::span<const PageRef> pages);
  void Invalidate(const Epoch& epoch);
  // Forgets every page (a full resync: the standby's copies are whatever the resync read from live RAM).
  void Clear();

  // The second tier (null: none). The cache keeps `fingerprints` such that a page's fingerprints are known only
  // when they are its standby copy's and the page is not cached: a page entering the cache is forgotten there
  // (its bytes are here; a page rewritten every epoch is never fingerprinted), a page evicted (or recorded by a
  // cache without room, or recorded filled) leaves its fingerprints, so that its next change still travels as
  // the chunks that changed; Invalidate forgets the page there too and Clear forgets all. A resync may then
  // Record the pages it sent into `fingerprints` itself (exactly what the standby got), or leave them unknown.
  void set_fingerprints(PageFingerprints* fingerprints) { fingerprints_ = fingerprints; }

 private:
  static constexpr uint64_t kNoKey = ~uint64_t{0};
  static constexpr uint32_t kNoSlot = ~uint32_t{0};
  static constexpr int kPageBits = 40;  // page numbers below 2^40 (4 PiB blocks), blocks below 2^24
  static uint64_t Key(uint32_t block, uint64_t offset) { return uint64_t{block} << kPageBits | offset / kPageSize; }
  size_t Home(uint64_t key) const { return size_t((key * 0x9e3779b97f4a7c15ull) >> index_shift_); }
  // Index position holding `key`, or the empty position where it would go.
  size_t Find(uint64_t key) const;
  void EraseAt(size_t position);
  // A free slot: unused, invalidated, or a victim of the CLOCK hand (evicted here).
  uint32_t TakeSlot();
  uint8_t* SlotPage(uint32_t slot) const { return pages_ + uint64_t{slot} * kPageSize; }

  uint64_t capacity_ = 0;
  uint64_t size_ = 0;
  uint8_t* pages_ = nullptr;  // capacity_ x kPageSize, page aligned
  std::vector<uint64_t> keys_;      // per slot; kNoKey: free
  std::vector<uint8_t> referenced_; // per slot: CLOCK's second-chance bit
  std::vector<uint32_t> index_;     // open addressing, linear probing: slot numbers; kNoSlot: empty
  std::vector<uint32_t> free_;      // invalidated slots (capacity reserved up front)
  size_t index_mask_ = 0;
  int index_shift_ = 64;
  uint32_t unused_ = 0;  // slots never used yet start here
  uint32_t hand_ = 0;
  DeltaBaseCounters counters_;
  PageFingerprints* fingerprints_ = nullptr;
};

}  // namespace tandem::replicator
