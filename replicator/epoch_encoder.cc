// EpochEncoder on the calling thread: records, framing, totals (the multi-threaded pages: epoch_encoder_parallel.cc).
#include <sched.h>
#include <xxhash.h>
#include <xxh_x86dispatch.h>  // XXH3 on AVX2/AVX-512 when the CPU has them: see messages.cc

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <thread>

#include "common/log.h"
#include "replicator/delta_base.h"
#include "replicator/epoch_codec_internal.h"
#include "replicator/guest_ram.h"
#include "replicator/messages.h"
#include "replicator/page_entry.h"

namespace tandem::replicator {

void ChainChecksum(XXH3_state_t* state, uint64_t checksum) {
  uint8_t le[8];
  StoreLe64(le, checksum);
  XXH3_64bits_update(state, le, sizeof(le));
}

std::string PageName(uint32_t block, uint64_t offset) {
  char buf[64];
  snprintf(buf, sizeof(buf), "page (block %u, offset 0x%" PRIx64 ")", block, offset);
  return buf;
}

EncodedPage WriteEntry(PageEncoder& encoder, uint8_t* entry, uint32_t block, uint64_t offset, const uint8_t* page,
                       const uint8_t* previous) {
  uint8_t* data = entry + kPageEntryHeaderSize;
  const EncodedPage e = encoder.Encode(page, previous, data);
  const uint64_t hash = e.encoding == PageEncoding::kFilled ? FilledPageHash(data[0]) : PageHash(page);
  StorePageEntryHeader(entry, offset, block, e.size, hash, static_cast<uint8_t>(e.encoding));
  return e;
}

EncodedPage WriteFilledEntry(uint8_t* entry, uint32_t block, uint64_t offset, uint8_t fill) {
  StorePageEntryHeader(entry, offset, block, 1, FilledPageHash(fill), static_cast<uint8_t>(PageEncoding::kFilled));
  entry[kPageEntryHeaderSize] = fill;
  return {PageEncoding::kFilled, 1};
}

EncodedPage WriteDeltaEntry(PageEncoder& encoder, uint8_t* entry, const EpochEncoder::PageSource& source,
                            uint32_t block, uint64_t offset, const uint8_t* page, uint8_t* scratch) {
  if (source.cache == nullptr) {
    const uint8_t* previous = source.base != nullptr ? source.base->Page(block, offset) : nullptr;
    return WriteEntry(encoder, entry, block, offset, page, previous);
  }
  if (const uint8_t* previous = source.cache->Lookup(block, offset); previous != nullptr) {
    return WriteEntry(encoder, entry, block, offset, page, previous);
  }
  uint8_t* data = entry + kPageEntryHeaderSize;
  const EncodedPage e = EncodeWithoutBase(encoder, source.fingerprints, block, offset, page, data, scratch);
  const uint64_t hash = e.encoding == PageEncoding::kFilled ? FilledPageHash(data[0]) : PageHash(page);
  StorePageEntryHeader(entry, offset, block, e.size, hash, static_cast<uint8_t>(e.encoding));
  return e;
}

EncodedPage WriteResyncEntry(PageEncoder& encoder, uint8_t* entry, const EpochEncoder::PageSource& source,
                             uint32_t block, uint64_t offset, uint8_t* copy) {
  if (source.holes != nullptr && (*source.holes)[block].InHole(offset)) {
    if (source.record != nullptr) source.record->RecordFilled(block, offset, 0);
    return WriteFilledEntry(entry, block, offset, 0);
  }
  const uint8_t* page = source.image->Page(block, offset);
  if (source.live != nullptr && source.live->live(block)) {
    // One read of the live page: encoding and hashing two reads could disagree (guest_ram.h).
    CopyPage(copy, page);
    page = copy;
  }
  const EncodedPage e = WriteEntry(encoder, entry, block, offset, page, nullptr);
  if (source.record != nullptr) source.record->Record(block, offset, page);
  return e;
}

int UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return std::max(1u, std::thread::hardware_concurrency());
  return std::max(1, CPU_COUNT(&set));
}

uint64_t EpochEncoder::RecordCount(uint64_t pages, uint64_t device_state_bytes, uint64_t disk_writes_bytes) {
  return 2 + (pages + kMaxPagesPerRecord - 1) / kMaxPagesPerRecord +
         (device_state_bytes + kDeviceStateChunk - 1) / kDeviceStateChunk +
         (disk_writes_bytes + kDiskWritesChunk - 1) / kDiskWritesChunk;
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
  if (corrupting_) [[unlikely]] CorruptPayload(type, payload_length);
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

// CorruptNextEpoch's fault, once per record and not per page: one bit of the first page payload (or disk writes or
// device state chunk) of the record, flipped after the page hashes were taken and before the record checksum is.
void EpochEncoder::CorruptPayload(RecordType type, uint32_t payload_length) {
  uint8_t* payload = record_.data() + kRecordHeaderSize;
  if (type == RecordType::kDiskWrites) {  // caught by the DISK_WRITES payload's own hashes, before anything applies
    payload[kDiskWritesRecordHeaderSize + (payload_length - kDiskWritesRecordHeaderSize) / 2] ^= 0x10;
    corrupting_ = false;
    return;
  }
  if (type == RecordType::kDeviceState) {
    payload[kDeviceStateHeaderSize + (payload_length - kDeviceStateHeaderSize) / 2] ^= 0x10;
    corrupting_ = false;
    return;
  }
  if (type != RecordType::kPages) return;
  for (size_t pos = kPagesHeaderSize; pos < payload_length;) {
    const PageEntryHeader entry = LoadPageEntryHeader(payload + pos);
    if (entry.size > 0) {
      payload[pos + kPageEntryHeaderSize + entry.size / 2] ^= 0x10;
      corrupting_ = false;
      return;
    }
    pos += kPageEntryHeaderSize + entry.size;
  }
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

void EpochEncoder::EntryWritten(const EncodedPage& e) {
  pages_cursor_ += kPageEntryHeaderSize + e.size;
  pages_in_record_++;
  totals_->page_count++;
  stats_.pages++;
  stats_.page_payload_bytes += e.size;
  stats_.by_encoding[static_cast<uint8_t>(e.encoding)]++;
}

template <typename EmitPages>
Status EpochEncoder::EncodeCommon(const EpochBeginMessage& begin, std::span<const uint8_t> device_state,
                                  std::span<const uint8_t> disk_writes, EpochSink* sink, EmitPages&& emit_pages,
                                  const ResyncSource* resync) {
  if (device_state.size() > kMaxDeviceState) return Status::InvalidArgument("device state larger than 1 GiB");
  if (disk_writes.size() > kMaxDiskWrites) return Status::InvalidArgument("disk writes larger than 64 GiB");
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

  // The disk's writes after the pages: the standby applies them before the pages, but only once EPOCH_END verified.
  for (size_t at = 0; at < disk_writes.size(); at += kDiskWritesChunk) {
    const size_t n = std::min(kDiskWritesChunk, disk_writes.size() - at);
    uint8_t* payload = record_.data() + kRecordHeaderSize;
    StoreLe64(payload, disk_writes.size());
    StoreLe64(payload + 8, at);
    memcpy(payload + kDiskWritesRecordHeaderSize, disk_writes.data() + at, n);
    TANDEM_RETURN_IF_ERROR(Emit(RecordType::kDiskWrites, uint32_t(kDiskWritesRecordHeaderSize + n), sink));
  }

  const uint64_t device_hash = device_state.empty() ? 0 : XXH3_64bits(device_state.data(), device_state.size());
  for (size_t at = 0; at < device_state.size(); at += kDeviceStateChunk) {
    const size_t n = std::min(kDeviceStateChunk, device_state.size() - at);
    uint8_t* payload = record_.data() + kRecordHeaderSize;
    StoreLe64(payload, device_state.size());
    StoreLe64(payload + 8, at);
    memcpy(payload + kDeviceStateHeaderSize, device_state.data() + at, n);
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
  // Asked only now: the epochs submitted while the pages were read are the ones that settle a live resync.
  end.settles_after = 0;
  if (begin.live && resync != nullptr && resync->settles_after) end.settles_after = std::max<uint32_t>(1, resync->settles_after());
  if (begin.live && end.settles_after == 0) end.settles_after = 1;
  SerializeEpochEnd(end, record_.data() + kRecordHeaderSize);
  TANDEM_RETURN_IF_ERROR(Emit(RecordType::kEpochEnd, kEpochEndSize, sink));
  return sink->Flush();
}

Status EpochEncoder::EncodeEpoch(const Epoch& epoch, uint64_t term, const RamImage* base, EpochSink* sink) {
  // Checked up front so that a bad epoch fails before anything of it was written to the sink.
  if (base != nullptr) {
    for (const PageRecord& p : epoch.pages()) {
      if (base->Page(p.block, p.offset) == nullptr) {
        return Status::InvalidArgument("epoch " + std::to_string(epoch.number()) + ": " + PageName(p.block, p.offset) +
                                       " outside the RAM layout");
      }
    }
  }
  PageSource source;
  source.epoch = &epoch;
  source.base = base;
  source.pages = epoch.pages().size();
  return EncodeDelta(epoch, term, source, sink);
}

Status EpochEncoder::EncodeEpoch(const Epoch& epoch, uint64_t term, const DeltaBase* base,
                                 const PageFingerprints* fingerprints, std::span<const RamBlockInfo> layout,
                                 EpochSink* sink) {
  for (const PageRecord& p : epoch.pages()) {
    if (p.block >= layout.size() || p.offset % kPageSize != 0 || p.offset >= layout[p.block].size_bytes) {
      return Status::InvalidArgument("epoch " + std::to_string(epoch.number()) + ": " + PageName(p.block, p.offset) +
                                     " outside the RAM layout");
    }
  }
  PageSource source;
  source.epoch = &epoch;
  source.cache = base;
  source.fingerprints = fingerprints;
  source.pages = epoch.pages().size();
  return EncodeDelta(epoch, term, source, sink);
}

Status EpochEncoder::EncodeDelta(const Epoch& epoch, uint64_t term, const PageSource& source, EpochSink* sink) {
  const EpochBeginMessage begin{epoch.number(), term, false, epoch.merged()};
  return EncodeCommon(begin, epoch.device_state(), epoch.disk_writes(), sink, [&]() -> Status {
    if (UseParallel(epoch.pages().size(), false)) return EncodePagesParallel(source, sink);
    for (const PageRecord& p : epoch.pages()) {
      TANDEM_RETURN_IF_ERROR(MakeRoom(sink));
      uint8_t* entry = record_.data() + pages_cursor_;
      EntryWritten(p.filled ? WriteFilledEntry(entry, p.block, p.offset, p.fill)
                            : WriteDeltaEntry(page_encoder_, entry, source, p.block, p.offset, epoch.PageData(p),
                                              scratch_.data()));
    }
    return Status::Ok();
  });
}

Status EpochEncoder::EncodeResync(const EpochBeginMessage& begin, const PageSource& pages,
                                  std::span<const uint8_t> device_state, const ResyncSource* resync,
                                  EpochSink* sink) {
  const RamImage& image = *pages.image;
  std::vector<FileHoles> holes;
  PageSource source = pages;
  if (source.live != nullptr) {
    for (uint32_t b = 0; b < image.blocks().size(); ++b) {
      holes.push_back(source.live->Holes(b));
      // A full epoch reads every data page: mapped in one go (a catch-up's or keeping epoch's few pages were
      // just read by DifferingPages, or are too few to matter).
      if (begin.full && !begin.keeps && source.live->live(b)) {
        holes.back().Populate(image.Block(b).data(), 0, image.blocks()[b].size_bytes);
      }
    }
    source.holes = &holes;
  }
  return EncodeCommon(
      begin, device_state, resync != nullptr ? resync->disk_writes : std::span<const uint8_t>(), sink,
      [&]() -> Status {
        if (UseParallel(source.pages, begin.full)) return EncodePagesParallel(source, sink);
        auto add = [&](uint32_t b, uint64_t off) -> Status {
          TANDEM_RETURN_IF_ERROR(MakeRoom(sink));
          EntryWritten(WriteResyncEntry(page_encoder_, record_.data() + pages_cursor_, source, b, off,
                                        page_copy_.data()));
          return Status::Ok();
        };
        if (!begin.full || begin.keeps) {
          for (const PageRef& p : source.listed) TANDEM_RETURN_IF_ERROR(add(p.block, p.offset));
          return Status::Ok();
        }
        for (uint32_t b = 0; b < image.blocks().size(); ++b) {
          for (uint64_t off = 0; off < image.blocks()[b].size_bytes; off += kPageSize) {
            TANDEM_RETURN_IF_ERROR(add(b, off));
          }
        }
        return Status::Ok();
      },
      resync);
}

namespace {

Status CheckListed(uint64_t number, const RamImage& image, std::span<const PageRef> pages) {
  for (const PageRef& p : pages) {
    if (image.Page(p.block, p.offset) == nullptr) {
      return Status::InvalidArgument("catch-up epoch " + std::to_string(number) + ": " + PageName(p.block, p.offset) +
                                     " outside the RAM layout");
    }
  }
  return Status::Ok();
}

uint64_t PagesOf(const RamImage& image) {
  uint64_t pages = 0;
  for (const RamBlockInfo& b : image.blocks()) pages += b.size_bytes / kPageSize;
  return pages;
}

bool HasLiveBlock(const GuestRam& ram) {
  for (uint32_t b = 0; b < ram.image().blocks().size(); ++b) {
    if (ram.live(b)) return true;
  }
  return false;
}

}  // namespace

Status EpochEncoder::EncodeCatchUp(uint64_t number, uint32_t merged, uint64_t term, const RamImage& image,
                                   std::span<const PageRef> pages, std::span<const uint8_t> device_state,
                                   EpochSink* sink) {
  TANDEM_RETURN_IF_ERROR(CheckListed(number, image, pages));
  PageSource source;
  source.image = &image;
  source.listed = pages;
  source.pages = pages.size();
  return EncodeResync({number, term, false, merged}, source, device_state, nullptr, sink);
}

Status EpochEncoder::EncodeFull(uint64_t number, uint64_t term, const RamImage& image,
                                std::span<const uint8_t> device_state, EpochSink* sink,
                                std::span<const uint8_t> disk_writes) {
  PageSource source;
  source.image = &image;
  source.pages = PagesOf(image);
  ResyncSource disk;  // not live: only its disk writes are read
  disk.disk_writes = disk_writes;
  return EncodeResync({number, term, true, 0}, source, device_state, &disk, sink);
}

Status EpochEncoder::EncodeCatchUp(uint64_t number, uint32_t merged, uint64_t term, const ResyncSource& resync,
                                   std::span<const PageRef> pages, std::span<const uint8_t> device_state,
                                   EpochSink* sink) {
  const RamImage& image = resync.ram->image();
  TANDEM_RETURN_IF_ERROR(CheckListed(number, image, pages));
  PageSource source;
  source.image = &image;
  source.listed = pages;
  source.live = resync.ram;
  source.record = resync.fingerprints;
  source.pages = pages.size();
  return EncodeResync({number, term, false, merged, HasLiveBlock(*resync.ram)}, source, device_state, &resync, sink);
}

Status EpochEncoder::EncodeKeeping(uint64_t number, uint64_t term, const ResyncSource& resync,
                                   std::span<const PageRef> differing, std::span<const uint8_t> device_state,
                                   EpochSink* sink) {
  const RamImage& image = resync.ram->image();
  TANDEM_RETURN_IF_ERROR(CheckListed(number, image, differing));
  for (size_t i = 1; i < differing.size(); ++i) {
    const PageRef& a = differing[i - 1];
    const PageRef& b = differing[i];
    if (b.block < a.block || (b.block == a.block && b.offset <= a.offset)) {
      return Status::InvalidArgument("full epoch " + std::to_string(number) + ": pages not in increasing order");
    }
  }
  PageSource source;
  source.image = &image;
  source.listed = differing;
  source.live = resync.ram;
  source.record = resync.fingerprints;
  source.pages = differing.size();
  EpochBeginMessage begin{number, term, true, 0, HasLiveBlock(*resync.ram)};
  begin.keeps = true;
  return EncodeResync(begin, source, device_state, &resync, sink);
}

Status EpochEncoder::EncodeFull(uint64_t number, uint64_t term, const ResyncSource& resync,
                                std::span<const uint8_t> device_state, EpochSink* sink) {
  const RamImage& image = resync.ram->image();
  PageSource source;
  source.image = &image;
  source.live = resync.ram;
  source.record = resync.fingerprints;
  source.pages = PagesOf(image);
  return EncodeResync({number, term, true, 0, HasLiveBlock(*resync.ram)}, source, device_state, &resync, sink);
}

}  // namespace tandem::replicator
