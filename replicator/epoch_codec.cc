#include "replicator/epoch_codec.h"

#include <sched.h>
#include <xxhash.h>
#include <xxh_x86dispatch.h>  // XXH3 on AVX2/AVX-512 when the CPU has them: see messages.cc

#include <algorithm>
#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "common/log.h"

namespace tandem::replicator {
namespace {

struct Xxh3StateDeleter {
  void operator()(XXH3_state_t* s) const { XXH3_freeState(s); }
};
using Xxh3State = std::unique_ptr<XXH3_state_t, Xxh3StateDeleter>;
Xxh3State NewState() { return Xxh3State(XXH3_createState()); }

void ChainChecksum(XXH3_state_t* state, uint64_t checksum) {
  uint8_t le[8];
  StoreLe64(le, checksum);
  XXH3_64bits_update(state, le, sizeof(le));
}

std::string Where(uint32_t block, uint64_t offset) {
  char buf[64];
  snprintf(buf, sizeof(buf), "page (block %u, offset 0x%" PRIx64 ")", block, offset);
  return buf;
}


constexpr uint8_t kMaxEncoding = static_cast<uint8_t>(PageEncoding::kSparse);

// One PAGES entry at `entry`: header, then the page encoded against `previous`. The single- and multi-threaded
// encoders both write entries here, which is what keeps their output identical.
EncodedPage WriteEntry(PageEncoder& encoder, uint8_t* entry, uint32_t block, uint64_t offset, const uint8_t* page,
                       const uint8_t* previous) {
  uint8_t* data = entry + kPageEntryHeaderSize;
  const EncodedPage e = encoder.Encode(page, previous, data);
  const uint64_t hash = e.encoding == PageEncoding::kFilled ? FilledPageHash(data[0]) : PageHash(page);
  StoreLe64(entry, offset);
  StoreLe32(entry + 8, block);
  StoreLe32(entry + 12, e.size);
  StoreLe64(entry + 16, hash);
  entry[24] = static_cast<uint8_t>(e.encoding);
  entry[25] = entry[26] = entry[27] = 0;
  return e;
}

// A page the epoch already knows is filled with one byte (QEMU's zero pages).
EncodedPage WriteFilledEntry(uint8_t* entry, uint32_t block, uint64_t offset, uint8_t fill) {
  StoreLe64(entry, offset);
  StoreLe32(entry + 8, block);
  StoreLe32(entry + 12, 1);
  StoreLe64(entry + 16, FilledPageHash(fill));
  entry[24] = static_cast<uint8_t>(PageEncoding::kFilled);
  entry[25] = entry[26] = entry[27] = 0;
  entry[kPageEntryHeaderSize] = fill;
  return {PageEncoding::kFilled, 1};
}

}  // namespace

int UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return std::max(1u, std::thread::hardware_concurrency());
  return std::max(1, CPU_COUNT(&set));
}

// ---------------------------------------------------------------------------------------------------------------
// Encoder

struct EpochEncoder::EpochTotals {
  Xxh3State records = NewState();
  uint64_t page_count = 0;
  uint64_t payload_bytes = 0;
  uint32_t record_count = 0;
  void Reset() {
    XXH3_64bits_reset(records.get());
    page_count = payload_bytes = 0;
    record_count = 0;
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Multi-threaded pages. Record i of an epoch holds pages [i * kMaxPagesPerRecord, (i + 1) * kMaxPagesPerRecord)
// whatever their encodings, so records are independent units of work. Threads claim the next record, encode it
// into a slot of a ring of 2 x threads record buffers, and mark it ready; the calling thread also encodes, and
// hands ready records to the sink strictly in order. A record is claimed only when its slot is free (at most the
// ring's size ahead of the next record to emit), so memory stays bounded and nothing is allocated per epoch.

struct EpochEncoder::PageSource {
  const Epoch* epoch = nullptr;     // a delta epoch's pages, in order...
  const RamImage* base = nullptr;   // ...against the standby's copies (nullptr: unknown)
  const RamImage* image = nullptr;  // or pages of this image: every page of every block (a full epoch)...
  std::span<const PageRef> listed;  // ...or these (a catch-up epoch)
  uint64_t pages = 0;
};

// Cache-line aligned: two threads fill neighbouring slots at the same time.
struct alignas(64) EpochEncoder::Slot {
  std::vector<uint8_t> record;  // header + largest PAGES payload
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
      if (p.filled) {
        account(WriteFilledEntry(out + cursor, p.block, p.offset, p.fill));
      } else {
        const uint8_t* previous = source.base != nullptr ? source.base->Page(p.block, p.offset) : nullptr;
        account(WriteEntry(encoder, out + cursor, p.block, p.offset, source.epoch->PageData(p), previous));
      }
    }
  } else if (!source.listed.empty()) {
    for (const PageRef& p : source.listed.subspan(first, count)) {
      account(WriteEntry(encoder, out + cursor, p.block, p.offset, source.image->Page(p.block, p.offset), nullptr));
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
      const uint8_t* page = source.image->Block(block).data() + offset;
      account(WriteEntry(encoder, out + cursor, block, offset, page, nullptr));
      offset += kPageSize;
    }
  }
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
    for (Slot& slot : parallel_->slots) slot.record.resize(kRecordHeaderSize + kMaxPagesPayload);
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

uint64_t EpochEncoder::RecordCount(uint64_t pages, uint64_t device_state_bytes) {
  return 2 + (pages + kMaxPagesPerRecord - 1) / kMaxPagesPerRecord +
         (device_state_bytes + kDeviceStateChunk - 1) / kDeviceStateChunk;
}

Status EpochEncoder::EncodeHello(const HelloMessage& hello, EpochSink* sink) {
  SerializeHello(hello, &hello_);
  if (hello_.size() > kMaxRecordPayload) return Status::InvalidArgument("HELLO larger than a record");
  std::vector<uint8_t> record;
  AppendRecord(RecordType::kHello, hello_, &record);
  TANDEM_RETURN_IF_ERROR(sink->WriteRecord(record));
  return sink->Flush();
}

Status EpochEncoder::Emit(RecordType type, uint32_t payload_length, EpochSink* sink) {
  const uint64_t sum = FinishRecord(type, record_.data(), payload_length);
  if (type != RecordType::kEpochEnd) {
    ChainChecksum(totals_->records.get(), sum);
    totals_->payload_bytes += payload_length;
    totals_->record_count++;
  }
  stats_.records++;
  stats_.wire_bytes += kRecordHeaderSize + payload_length;
  return sink->WriteRecord({record_.data(), kRecordHeaderSize + payload_length});
}

Status EpochEncoder::FlushPages(EpochSink* sink) {
  if (pages_in_record_ == 0) return Status::Ok();
  StoreLe32(record_.data() + kRecordHeaderSize, pages_in_record_);
  StoreLe32(record_.data() + kRecordHeaderSize + 4, 0);
  const uint32_t length = uint32_t(pages_cursor_ - kRecordHeaderSize);
  pages_in_record_ = 0;
  pages_cursor_ = kRecordHeaderSize + kPagesHeaderSize;
  return Emit(RecordType::kPages, length, sink);
}

Status EpochEncoder::MakeRoom(EpochSink* sink) {
  if (pages_in_record_ == kMaxPagesPerRecord) return FlushPages(sink);
  return Status::Ok();
}

Status EpochEncoder::AddPage(uint32_t block, uint64_t offset, const uint8_t* page, const uint8_t* previous,
                             EpochSink* sink) {
  TANDEM_RETURN_IF_ERROR(MakeRoom(sink));
  uint8_t* entry = record_.data() + pages_cursor_;
  const EncodedPage e = WriteEntry(page_encoder_, entry, block, offset, page, previous);
  if (corrupting_ && e.size > 0) {
    entry[kPageEntryHeaderSize + e.size / 2] ^= 0x10;
    corrupting_ = false;
  }
  pages_cursor_ += kPageEntryHeaderSize + e.size;
  pages_in_record_++;
  totals_->page_count++;
  stats_.pages++;
  stats_.page_payload_bytes += e.size;
  stats_.by_encoding[static_cast<uint8_t>(e.encoding)]++;
  return Status::Ok();
}

Status EpochEncoder::AddFilledPage(uint32_t block, uint64_t offset, uint8_t fill, EpochSink* sink) {
  TANDEM_RETURN_IF_ERROR(MakeRoom(sink));
  uint8_t* entry = record_.data() + pages_cursor_;
  const EncodedPage e = WriteFilledEntry(entry, block, offset, fill);
  if (corrupting_) {
    entry[kPageEntryHeaderSize] ^= 0x10;
    corrupting_ = false;
  }
  pages_cursor_ += kPageEntryHeaderSize + e.size;
  pages_in_record_++;
  totals_->page_count++;
  stats_.pages++;
  stats_.page_payload_bytes += e.size;
  stats_.by_encoding[static_cast<uint8_t>(e.encoding)]++;
  return Status::Ok();
}

template <typename EmitPages>
Status EpochEncoder::EncodeCommon(const EpochBeginMessage& begin, std::span<const uint8_t> device_state,
                                  EpochSink* sink, EmitPages&& emit_pages) {
  if (device_state.size() > kMaxDeviceState) return Status::InvalidArgument("device state larger than 1 GiB");
  stats_ = EncodeStats();
  totals_->Reset();
  corrupting_ = corrupt_next_;
  corrupt_next_ = false;
  pages_in_record_ = 0;
  pages_cursor_ = kRecordHeaderSize + kPagesHeaderSize;

  SerializeEpochBegin(begin, record_.data() + kRecordHeaderSize);
  TANDEM_RETURN_IF_ERROR(Emit(RecordType::kEpochBegin, kEpochBeginSize, sink));
  TANDEM_RETURN_IF_ERROR(emit_pages());
  TANDEM_RETURN_IF_ERROR(FlushPages(sink));

  const uint64_t device_hash = device_state.empty() ? 0 : XXH3_64bits(device_state.data(), device_state.size());
  for (size_t at = 0; at < device_state.size(); at += kDeviceStateChunk) {
    const size_t n = std::min(kDeviceStateChunk, device_state.size() - at);
    uint8_t* payload = record_.data() + kRecordHeaderSize;
    StoreLe64(payload, device_state.size());
    StoreLe64(payload + 8, at);
    memcpy(payload + kDeviceStateHeaderSize, device_state.data() + at, n);
    if (corrupting_) {
      payload[kDeviceStateHeaderSize + n / 2] ^= 0x10;
      corrupting_ = false;
    }
    TANDEM_RETURN_IF_ERROR(Emit(RecordType::kDeviceState, uint32_t(kDeviceStateHeaderSize + n), sink));
  }
  if (corrupting_) {
    TLOG_WARN("encoder", "epoch %" PRIu64 " has no page payload nor device state: nothing to corrupt", begin.epoch);
    corrupting_ = false;
  }

  EpochEndMessage end;
  end.epoch = begin.epoch;
  end.page_count = totals_->page_count;
  end.payload_bytes = totals_->payload_bytes;
  end.device_state_bytes = device_state.size();
  end.device_state_hash = device_hash;
  end.record_count = totals_->record_count;
  end.records_hash = XXH3_64bits_digest(totals_->records.get());
  SerializeEpochEnd(end, record_.data() + kRecordHeaderSize);
  TANDEM_RETURN_IF_ERROR(Emit(RecordType::kEpochEnd, kEpochEndSize, sink));
  return sink->Flush();
}

Status EpochEncoder::EncodeEpoch(const Epoch& epoch, uint64_t term, const RamImage* base, EpochSink* sink) {
  // Checked up front so that a bad epoch fails before anything of it was written to the sink.
  if (base != nullptr) {
    for (const PageRecord& p : epoch.pages()) {
      if (base->Page(p.block, p.offset) == nullptr) {
        return Status::InvalidArgument("epoch " + std::to_string(epoch.number()) + ": " + Where(p.block, p.offset) +
                                       " outside the RAM layout");
      }
    }
  }
  const EpochBeginMessage begin{epoch.number(), term, false, epoch.merged()};
  return EncodeCommon(begin, epoch.device_state(), sink, [&]() -> Status {
    if (UseParallel(epoch.pages().size(), false)) {
      PageSource source;
      source.epoch = &epoch;
      source.base = base;
      source.pages = epoch.pages().size();
      return EncodePagesParallel(source, sink);
    }
    for (const PageRecord& p : epoch.pages()) {
      if (p.filled) {
        TANDEM_RETURN_IF_ERROR(AddFilledPage(p.block, p.offset, p.fill, sink));
      } else {
        const uint8_t* previous = base != nullptr ? base->Page(p.block, p.offset) : nullptr;
        TANDEM_RETURN_IF_ERROR(AddPage(p.block, p.offset, epoch.PageData(p), previous, sink));
      }
    }
    return Status::Ok();
  });
}

Status EpochEncoder::EncodeCatchUp(uint64_t number, uint32_t merged, uint64_t term, const RamImage& image,
                                   std::span<const PageRef> pages, std::span<const uint8_t> device_state,
                                   EpochSink* sink) {
  for (const PageRef& p : pages) {
    if (image.Page(p.block, p.offset) == nullptr) {
      return Status::InvalidArgument("catch-up epoch " + std::to_string(number) + ": " + Where(p.block, p.offset) +
                                     " outside the RAM layout");
    }
  }
  return EncodeCommon({number, term, false, merged}, device_state, sink, [&]() -> Status {
    if (UseParallel(pages.size(), false)) {
      PageSource source;
      source.image = &image;
      source.listed = pages;
      source.pages = pages.size();
      return EncodePagesParallel(source, sink);
    }
    for (const PageRef& p : pages) {
      TANDEM_RETURN_IF_ERROR(AddPage(p.block, p.offset, image.Page(p.block, p.offset), nullptr, sink));
    }
    return Status::Ok();
  });
}

Status EpochEncoder::EncodeFull(uint64_t number, uint64_t term, const RamImage& image,
                                std::span<const uint8_t> device_state, EpochSink* sink) {
  return EncodeCommon({number, term, true, 0}, device_state, sink, [&]() -> Status {
    uint64_t pages = 0;
    for (const RamBlockInfo& b : image.blocks()) pages += b.size_bytes / kPageSize;
    if (UseParallel(pages, true)) {
      PageSource source;
      source.image = &image;
      source.pages = pages;
      return EncodePagesParallel(source, sink);
    }
    for (uint32_t b = 0; b < image.blocks().size(); ++b) {
      std::span<const uint8_t> block = image.Block(b);
      for (uint64_t off = 0; off < block.size(); off += kPageSize) {
        TANDEM_RETURN_IF_ERROR(AddPage(b, off, block.data() + off, nullptr, sink));
      }
    }
    return Status::Ok();
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Decoder

struct EpochDecoder::Hashes {
  Xxh3State records = NewState();
  Xxh3State device = NewState();
};

EpochDecoder::EpochDecoder() : check_page_(new uint8_t[kPageSize]), hashes_(new Hashes) {}
EpochDecoder::~EpochDecoder() = default;

bool EpochDecoder::SeenBefore(uint32_t block, uint64_t offset) {
  uint64_t& word = seen_[block][offset / kPageSize / 64];
  const uint64_t bit = uint64_t{1} << (offset / kPageSize % 64);
  if (word & bit) return true;
  word |= bit;
  seen_pages_.emplace_back(block, offset);
  return false;
}

void EpochDecoder::ForgetSeen() {
  for (auto [block, offset] : seen_pages_) seen_[block][offset / kPageSize / 64] = 0;
  seen_pages_.clear();
}

void EpochDecoder::Begin(const EpochBeginMessage& begin, const RecordView& begin_record, const RamImage* replica,
                         RamImage* write_through) {
  ForgetSeen();
  if (replica != nullptr) {
    const auto& blocks = replica->blocks();
    seen_.resize(blocks.size());
    for (size_t b = 0; b < blocks.size(); ++b) seen_[b].resize((blocks[b].size_bytes / kPageSize + 63) / 64);
  }
  staged_.Reset(begin.epoch, begin.full);
  replica_ = replica;
  write_through_ = begin.full ? write_through : nullptr;
  if (begin.full && write_through_ == nullptr && replica != nullptr) {
    uint64_t ram = 0;
    for (const RamBlockInfo& b : replica->blocks()) ram += b.size_bytes;
    staged_.ReservePageBytes(ram);
  }
  in_epoch_ = true;
  full_ = begin.full;
  replica_differs_ = false;
  term_ = begin.term;
  next_block_ = 0;
  next_offset_ = 0;
  page_count_ = 0;
  payload_bytes_ = begin_record.payload.size();
  record_count_ = 1;
  device_total_ = 0;
  XXH3_64bits_reset(hashes_->records.get());
  XXH3_64bits_reset(hashes_->device.get());
  ChainChecksum(hashes_->records.get(), begin_record.checksum);
}

Status EpochDecoder::Fail(const Status& st) {
  return st.WithContext("epoch " + std::to_string(staged_.number()));
}

Status EpochDecoder::Add(const RecordView& record) {
  if (!in_epoch_) return Status::Corruption(std::string(RecordTypeName(record.type)) + " record outside an epoch");
  record_count_++;
  payload_bytes_ += record.payload.size();
  ChainChecksum(hashes_->records.get(), record.checksum);
  switch (static_cast<RecordType>(record.type)) {
    case RecordType::kPages:
      return AddPages(record.payload);
    case RecordType::kDeviceState:
      return AddDeviceState(record.payload);
    case RecordType::kDiskWrites:
      return Fail(Status::Unsupported("DISK_WRITES record: disk replication is not supported by this standby"));
    case RecordType::kHello:
      return Fail(Status::Corruption("HELLO inside an epoch"));
    case RecordType::kEpochBegin:
      return Fail(Status::Corruption("EPOCH_BEGIN inside an epoch: records out of order"));
    case RecordType::kAck:
      return Fail(Status::Corruption("ACK from the primary"));
    case RecordType::kEpochEnd:
      return Fail(Status::Corruption("EPOCH_END passed to Add"));
  }
  char buf[64];
  snprintf(buf, sizeof(buf), "unknown record type 0x%08x", record.type);
  return Fail(Status::Corruption(buf));
}

Status EpochDecoder::AddPages(std::span<const uint8_t> payload) {
  if (payload.size() < kPagesHeaderSize) return Fail(Status::Corruption("PAGES record shorter than its header"));
  const uint32_t count = LoadLe32(payload.data());
  if (count == 0 || count > kMaxPagesPerRecord || LoadLe32(payload.data() + 4) != 0) {
    return Fail(Status::Corruption("PAGES record with a bad page count or reserved bits"));
  }
  size_t pos = kPagesHeaderSize;
  for (uint32_t i = 0; i < count; ++i) {
    if (payload.size() - pos < kPageEntryHeaderSize) return Fail(Status::Corruption("PAGES record cut inside an entry"));
    const uint8_t* entry = payload.data() + pos;
    const uint64_t offset = LoadLe64(entry);
    const uint32_t block = LoadLe32(entry + 8);
    const uint32_t size = LoadLe32(entry + 12);
    const uint64_t hash = LoadLe64(entry + 16);
    const uint8_t raw_encoding = entry[24];
    if (entry[25] != 0 || entry[26] != 0 || entry[27] != 0) {
      return Fail(Status::Corruption(Where(block, offset) + " entry with reserved bits set"));
    }
    pos += kPageEntryHeaderSize;
    if (size > kMaxEncodedPage || size > payload.size() - pos) {
      return Fail(Status::Corruption(Where(block, offset) + " claims " + std::to_string(size) + " encoded bytes"));
    }
    const uint8_t* data = entry + kPageEntryHeaderSize;
    pos += size;
    if (raw_encoding > kMaxEncoding) {
      return Fail(Status::Corruption(Where(block, offset) + " with unknown encoding " + std::to_string(raw_encoding)));
    }
    const auto encoding = static_cast<PageEncoding>(raw_encoding);
    PrefetchNextBase(payload, pos);
    const uint8_t* base = replica_ != nullptr ? replica_->Page(block, offset) : nullptr;
    if (base == nullptr) return Fail(Status::Corruption(Where(block, offset) + " outside the RAM layout"));
    if (full_) {
      if (block != next_block_ || offset != next_offset_) {
        return Fail(Status::Corruption("full epoch skips or repeats pages: got " + Where(block, offset) +
                                       ", expected " + Where(next_block_, next_offset_)));
      }
      next_offset_ += kPageSize;
      if (next_offset_ >= replica_->blocks()[block].size_bytes) next_block_++, next_offset_ = 0;
      if (IsRelativeEncoding(encoding)) {
        return Fail(Status::Corruption(Where(block, offset) + " of a full epoch is relative to the standby's copy"));
      }
    }
    auto hash_mismatch = [&] {
      replica_differs_ = IsRelativeEncoding(encoding);
      return Fail(Status::Corruption(Where(block, offset) + " hash mismatch after decode (" +
                                     PageEncodingName(encoding) + ")"));
    };
    const bool first_entry = full_ || !SeenBefore(block, offset);
    if (encoding == PageEncoding::kFilled) {
      if (size != 1) return Fail(Status::Corruption(Where(block, offset) + ": filled page of " + std::to_string(size) + " bytes"));
      if (FilledPageHash(data[0]) != hash) return hash_mismatch();
      if (write_through_ != nullptr) {
        write_through_->FilledPage(block, offset, data[0]);
      } else {
        staged_.FilledPage(block, offset, data[0]);
      }
    } else if (write_through_ != nullptr) {
      Status st = page_decoder_.Decode(encoding, data, size, nullptr, check_page_.get());
      if (!st.ok()) return Fail(st.WithContext(Where(block, offset)));
      if (PageHash(check_page_.get()) != hash) return hash_mismatch();
      StreamPage(write_through_->PageBuffer(block, offset), check_page_.get());
    } else if (encoding == PageEncoding::kUnchanged && first_entry) {
      if (size != 0) return Fail(Status::Corruption(Where(block, offset) + ": unchanged page with a payload"));
      if (PageHash(base) != hash) return hash_mismatch();  // nothing to stage: the replica holds it
    } else if (encoding == PageEncoding::kSparse && first_entry) {
      Status st = page_decoder_.Decode(encoding, data, size, base, check_page_.get());
      if (!st.ok()) return Fail(st.WithContext(Where(block, offset)));
      if (PageHash(check_page_.get()) != hash) return hash_mismatch();
      memcpy(staged_.PatchBuffer(block, offset, size), data, size);
    } else {
      uint8_t* dst = staged_.PageBuffer(block, offset);
      Status st = page_decoder_.Decode(encoding, data, size, base, dst);
      if (!st.ok()) return Fail(st.WithContext(Where(block, offset)));
      if (PageHash(dst) != hash) return hash_mismatch();
    }
    page_count_++;
  }
  if (pos != payload.size()) {
    return Fail(Status::Corruption("PAGES record with " + std::to_string(payload.size() - pos) + " trailing bytes"));
  }
  return Status::Ok();
}

// The standby's copy of the page the entry at `pos` rebuilds, if it is relative: it is read cold while this entry
// is decoded otherwise (a page ahead is enough: an entry takes about a microsecond).
void EpochDecoder::PrefetchNextBase(std::span<const uint8_t> payload, size_t pos) const {
  if (replica_ == nullptr || payload.size() - pos < kPageEntryHeaderSize) return;
  const uint8_t* entry = payload.data() + pos;
  if (entry[24] > kMaxEncoding || !IsRelativeEncoding(static_cast<PageEncoding>(entry[24]))) return;
  if (const uint8_t* base = replica_->Page(LoadLe32(entry + 8), LoadLe64(entry)); base != nullptr) PrefetchPage(base);
}

Status EpochDecoder::AddDeviceState(std::span<const uint8_t> payload) {
  if (payload.size() <= kDeviceStateHeaderSize) return Fail(Status::Corruption("DEVICE_STATE record without data"));
  const uint64_t total = LoadLe64(payload.data());
  const uint64_t offset = LoadLe64(payload.data() + 8);
  std::span<const uint8_t> chunk = payload.subspan(kDeviceStateHeaderSize);
  std::vector<uint8_t>& dev = staged_.device_state();
  if (device_total_ == 0) {
    if (total == 0 || total > kMaxDeviceState) {
      return Fail(Status::Corruption("DEVICE_STATE claims a total of " + std::to_string(total) + " bytes"));
    }
    device_total_ = total;
  }
  if (total != device_total_ || offset != dev.size() || chunk.size() > total - dev.size()) {
    return Fail(Status::Corruption("DEVICE_STATE chunk at offset " + std::to_string(offset) + " of " +
                                   std::to_string(total) + " does not continue the " + std::to_string(dev.size()) +
                                   " bytes received"));
  }
  dev.insert(dev.end(), chunk.begin(), chunk.end());
  XXH3_64bits_update(hashes_->device.get(), chunk.data(), chunk.size());
  return Status::Ok();
}

Status EpochDecoder::End(const RecordView& end_record) {
  if (!in_epoch_) return Status::Corruption("EPOCH_END outside an epoch");
  in_epoch_ = false;
  if (write_through_ != nullptr) StreamFence();  // the pages are in the replica before anyone reads it
  EpochEndMessage end;
  if (Status st = ParseEpochEnd(end_record.payload, &end); !st.ok()) return Fail(st);
  auto mismatch = [&](const char* what, uint64_t claimed, uint64_t seen) {
    return Fail(Status::Corruption(std::string("EPOCH_END ") + what + " " + std::to_string(claimed) +
                                   " but received " + std::to_string(seen)));
  };
  if (end.epoch != staged_.number()) return mismatch("closes epoch", end.epoch, staged_.number());
  if (end.record_count != record_count_) return mismatch("counts records:", end.record_count, record_count_);
  if (end.records_hash != XXH3_64bits_digest(hashes_->records.get())) {
    return Fail(Status::Corruption("EPOCH_END record chain hash mismatch: records lost, repeated or reordered"));
  }
  if (end.page_count != page_count_) return mismatch("counts pages:", end.page_count, page_count_);
  if (end.payload_bytes != payload_bytes_) return mismatch("counts payload bytes:", end.payload_bytes, payload_bytes_);
  const uint64_t dev = staged_.device_state().size();
  if (end.device_state_bytes != dev) return mismatch("counts device state bytes:", end.device_state_bytes, dev);
  if (dev > 0 && end.device_state_hash != XXH3_64bits_digest(hashes_->device.get())) {
    return Fail(Status::Corruption("device state hash mismatch"));
  }
  if (full_ && next_block_ != replica_->blocks().size()) {
    return Fail(Status::Corruption("full epoch ends before " + Where(next_block_, next_offset_)));
  }
  return Status::Ok();
}

void EpochDecoder::Discard() {
  ForgetSeen();
  in_epoch_ = false;
  // A full epoch staged a copy of all RAM: give it back rather than keep it as capacity.
  if (full_ || staged_.page_bytes() > (64u << 20)) {
    staged_ = Epoch();
  } else {
    staged_.Reset(0, false);
  }
}

}  // namespace tandem::replicator
