// EpochEncoder's multi-threaded pages (see epoch_codec.h): records encoded on several threads, emitted in order.
#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "replicator/epoch_codec_internal.h"
#include "replicator/guest_ram.h"
#include "replicator/messages.h"

namespace tandem::replicator {

// Multi-threaded pages. Record i of an epoch holds pages [i * kMaxPagesPerRecord, (i + 1) * kMaxPagesPerRecord)
// whatever their encodings, so records are independent units of work. Threads claim the next record, encode it
// into a slot of a ring of 2 x threads record buffers, and mark it ready; the calling thread also encodes, and
// hands ready records to the sink strictly in order. A record is claimed only when its slot is free (at most the
// ring's size ahead of the next record to emit), so memory stays bounded and nothing is allocated per epoch.

// Cache-line aligned: two threads fill neighbouring slots at the same time.
struct alignas(64) EpochEncoder::Slot {
  std::vector<uint8_t> record;  // header + largest PAGES payload
  std::vector<uint8_t> scratch;  // EncodeWithoutBase's second buffer, for the thread encoding this slot
  std::vector<uint8_t> copy;     // a live page read once, likewise
  uint32_t payload_length = 0;
  uint64_t checksum = 0;
  uint64_t pages = 0;
  uint64_t page_payload_bytes = 0;
  uint64_t by_encoding[8] = {};
  bool ready = false;  // guarded by Parallel::mu
};

struct EpochEncoder::Parallel {
  std::mutex mu;
  std::condition_variable work_cv;  // helpers: a record can be claimed, or stop
  std::condition_variable done_cv;  // the emitting thread: a record is ready, or a helper went idle
  std::vector<Slot> slots;
  std::vector<std::thread> helpers;
  // The epoch being encoded (guarded by mu).
  PageCodecOptions options;
  const PageSource* source = nullptr;
  uint64_t records = 0;     // PAGES records of the epoch
  uint64_t next_claim = 0;  // next record to encode
  uint64_t next_emit = 0;   // next record to hand to the sink
  int busy = 0;             // helpers encoding a record
  bool stop = false;

  bool Claimable() const {
    return source != nullptr && next_claim < records && next_claim < next_emit + slots.size();
  }
};

void EpochEncoder::EncodeRecord(PageEncoder& encoder, const PageSource& source, uint64_t index, Slot* slot) {
  const uint64_t first = index * kMaxPagesPerRecord;
  const uint32_t count = uint32_t(std::min<uint64_t>(kMaxPagesPerRecord, source.pages - first));
  // Tallied in locals and stored once: per-page stores into the slot would be needless shared-memory traffic.
  uint64_t payload_bytes = 0;
  uint64_t by_encoding[8] = {};
  static_assert(sizeof(by_encoding) == sizeof(slot->by_encoding));
  size_t cursor = kRecordHeaderSize + kPagesHeaderSize;
  auto account = [&](const EncodedPage& e) {
    cursor += kPageEntryHeaderSize + e.size;
    payload_bytes += e.size;
    by_encoding[static_cast<uint8_t>(e.encoding)]++;
  };
  uint8_t* out = slot->record.data();
  if (source.epoch != nullptr) {
    std::span<const PageRecord> pages = source.epoch->pages().subspan(first, count);
    for (const PageRecord& p : pages) {
      account(p.filled ? WriteFilledEntry(out + cursor, p.block, p.offset, p.fill)
                       : WriteDeltaEntry(encoder, out + cursor, source, p.block, p.offset, source.epoch->PageData(p),
                                         slot->scratch.data()));
    }
    return Finish(slot, out, count, cursor, payload_bytes, by_encoding);
  }
  if (!source.listed.empty()) {
    for (const PageRef& p : source.listed.subspan(first, count)) {
      account(WriteResyncEntry(encoder, out + cursor, source, p.block, p.offset, slot->copy.data()));
    }
  } else {
    // Find the block holding page `first` of the image, then walk on from there.
    uint32_t block = 0;
    uint64_t skip = first;
    while (skip >= source.image->blocks()[block].size_bytes / kPageSize) {
      skip -= source.image->blocks()[block].size_bytes / kPageSize;
      ++block;
    }
    uint64_t offset = skip * kPageSize;
    for (uint32_t i = 0; i < count; ++i) {
      while (offset >= source.image->blocks()[block].size_bytes) ++block, offset = 0;
      account(WriteResyncEntry(encoder, out + cursor, source, block, offset, slot->copy.data()));
      offset += kPageSize;
    }
  }
  Finish(slot, out, count, cursor, payload_bytes, by_encoding);
}

void EpochEncoder::Finish(Slot* slot, uint8_t* out, uint32_t count, size_t cursor, uint64_t payload_bytes,
                          const uint64_t (&by_encoding)[8]) {
  StoreLe32(out + kRecordHeaderSize, count);
  StoreLe32(out + kRecordHeaderSize + 4, 0);
  slot->pages = count;
  slot->page_payload_bytes = payload_bytes;
  std::copy(std::begin(by_encoding), std::end(by_encoding), std::begin(slot->by_encoding));
  slot->payload_length = uint32_t(cursor - kRecordHeaderSize);
  slot->checksum = FinishRecord(RecordType::kPages, out, slot->payload_length);
}

void EpochEncoder::HelperLoop(Parallel* par) {
  std::unique_lock<std::mutex> lock(par->mu);
  PageEncoder encoder(par->options);
  for (;;) {
    par->work_cv.wait(lock, [&] { return par->stop || par->Claimable(); });
    if (par->stop) return;
    const uint64_t index = par->next_claim++;
    Slot& slot = par->slots[index % par->slots.size()];
    const PageSource& source = *par->source;
    encoder.set_options(par->options);
    par->busy++;
    lock.unlock();
    EncodeRecord(encoder, source, index, &slot);
    lock.lock();
    slot.ready = true;
    par->busy--;
    par->done_cv.notify_one();  // only the emitting thread waits on it
  }
}

bool EpochEncoder::UseParallel(uint64_t pages, bool full) const {
  // The fault injection flips a bit between a page's hash and its record's checksum: single-threaded only.
  return threads_ > 1 && !corrupting_ && pages > kMaxPagesPerRecord && (full || pages >= kParallelMinPages);
}

Status EpochEncoder::EmitSlot(const Slot& slot, EpochSink* sink) {
  ChainChecksum(totals_->records.get(), slot.checksum);
  totals_->payload_bytes += slot.payload_length;
  totals_->record_count++;
  totals_->page_count += slot.pages;
  stats_.records++;
  stats_.wire_bytes += kRecordHeaderSize + slot.payload_length;
  stats_.pages += slot.pages;
  stats_.page_payload_bytes += slot.page_payload_bytes;
  for (size_t i = 0; i < std::size(slot.by_encoding); ++i) stats_.by_encoding[i] += slot.by_encoding[i];
  return sink->WriteRecord({slot.record.data(), kRecordHeaderSize + slot.payload_length});
}

Status EpochEncoder::EncodePagesParallel(const PageSource& source, EpochSink* sink) {
  if (parallel_ == nullptr) {
    parallel_ = std::make_unique<Parallel>();
    parallel_->slots.resize(size_t(threads_) * 2);
    for (Slot& slot : parallel_->slots) {
      slot.record.resize(kRecordHeaderSize + kMaxPagesPayload);
      slot.scratch.resize(kMaxEncodedPage);
      slot.copy.resize(kPageSize);
    }
    parallel_->options = options_;
    for (int i = 1; i < threads_; ++i) parallel_->helpers.emplace_back(HelperLoop, parallel_.get());
  }
  Parallel& par = *parallel_;
  stats_.threads = uint32_t(threads_);
  std::unique_lock<std::mutex> lock(par.mu);
  par.options = options_;
  par.source = &source;
  par.records = (source.pages + kMaxPagesPerRecord - 1) / kMaxPagesPerRecord;
  par.next_claim = par.next_emit = 0;
  par.work_cv.notify_all();
  Status st;
  while (par.next_emit < par.records) {
    Slot& next = par.slots[par.next_emit % par.slots.size()];
    if (next.ready) {
      // Sending may block on the network: the helpers keep encoding meanwhile.
      lock.unlock();
      st = EmitSlot(next, sink);
      lock.lock();
      next.ready = false;
      if (!st.ok()) break;
      par.next_emit++;
      par.work_cv.notify_all();
    } else if (par.Claimable()) {
      const uint64_t index = par.next_claim++;
      Slot& slot = par.slots[index % par.slots.size()];
      lock.unlock();
      EncodeRecord(page_encoder_, source, index, &slot);
      lock.lock();
      slot.ready = true;
    } else {
      par.done_cv.wait(lock);
    }
  }
  // No more claims; records being encoded still read the epoch and write their slots: wait for them.
  par.records = par.next_claim;
  par.done_cv.wait(lock, [&] { return par.busy == 0; });
  par.source = nullptr;
  for (Slot& slot : par.slots) slot.ready = false;
  return st;
}

EpochEncoder::EpochEncoder(const PageCodecOptions& options, int threads)
    : options_(options),
      threads_(std::max(1, threads)),
      page_encoder_(options),
      record_(kRecordHeaderSize + kMaxRecordPayload),
      scratch_(kMaxEncodedPage),
      page_copy_(kPageSize),
      totals_(new EpochTotals) {}

EpochEncoder::~EpochEncoder() {
  if (parallel_ == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(parallel_->mu);
    parallel_->stop = true;
  }
  parallel_->work_cv.notify_all();
  for (std::thread& t : parallel_->helpers) t.join();
}

}  // namespace tandem::replicator
