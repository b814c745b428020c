// EpochDecoder: PAGES, DEVICE_STATE and EPOCH_END of one epoch into a staging Epoch, every hash verified.
#include <xxhash.h>
#include <xxh_x86dispatch.h>  // XXH3 on AVX2/AVX-512 when the CPU has them: see messages.cc

#include <sys/mman.h>

#include <cstdio>
#include <cstring>

#include "replicator/epoch_codec_internal.h"
#include "replicator/messages.h"
#include "replicator/page_entry.h"

namespace tandem::replicator {
namespace {

// The replica pages this record writes through, mapped writable in one call per contiguous run
// (MADV_POPULATE_WRITE) instead of one page fault each: on a fresh replica every written page is a new tmpfs page,
// and the faults, not the copies, were most of a first sync's time on the standby. Advice only, on the entries'
// headers alone: AddPages validates everything; a malformed entry just ends the advice. Zero pages left in a hole
// (Begin) are not populated: that would allocate them.
void PopulateWrites(std::span<const uint8_t> payload, uint32_t count, RamImage* write_through,
                    const std::vector<FileHoles>& holes) {
  uint8_t* run = nullptr;
  size_t run_bytes = 0;
  auto flush = [&] {
    if (run_bytes > kPageSize) madvise(run, run_bytes, MADV_POPULATE_WRITE);
    run = nullptr;
    run_bytes = 0;
  };
  size_t pos = kPagesHeaderSize;
  for (uint32_t i = 0; i < count && payload.size() - pos >= kPageEntryHeaderSize; ++i) {
    const PageEntryHeader e = LoadPageEntryHeader(payload.data() + pos);
    pos += kPageEntryHeaderSize;
    if (e.size > payload.size() - pos) break;
    const bool zero = e.encoding == uint8_t(PageEncoding::kFilled) && e.size == 1 && payload[pos] == 0;
    pos += e.size;
    uint8_t* page = write_through->PageBuffer(e.block, e.offset);
    if (page == nullptr) break;
    if (zero && e.block < holes.size() && holes[e.block].InHole(e.offset)) {
      flush();
      continue;
    }
    if (run != nullptr && page == run + run_bytes) {
      run_bytes += kPageSize;
    } else {
      flush();
      run = page;
      run_bytes = kPageSize;
    }
  }
  flush();
}

}  // namespace

struct EpochDecoder::Hashes {
  Xxh3State records = NewXxh3State();
  Xxh3State device = NewXxh3State();
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
                         RamImage* write_through, std::vector<FileHoles> write_through_holes) {
  ForgetSeen();
  if (replica != nullptr) {
    const auto& blocks = replica->blocks();
    seen_.resize(blocks.size());
    for (size_t b = 0; b < blocks.size(); ++b) seen_[b].resize((blocks[b].size_bytes / kPageSize + 63) / 64);
  }
  staged_.Reset(begin.epoch, begin.full);
  replica_ = replica;
  write_through_ = begin.full ? write_through : nullptr;
  holes_ = write_through_ != nullptr ? std::move(write_through_holes) : std::vector<FileHoles>();
  // A keeps epoch stages only the pages that differ: no room for all RAM.
  if (begin.full && !begin.keeps && write_through_ == nullptr && replica != nullptr) {
    uint64_t ram = 0;
    for (const RamBlockInfo& b : replica->blocks()) ram += b.size_bytes;
    staged_.ReservePageBytes(ram);
  }
  in_epoch_ = true;
  full_ = begin.full;
  keeps_ = begin.full && begin.keeps;
  live_ = begin.live;
  settles_after_ = 0;
  replica_differs_ = false;
  term_ = begin.term;
  next_block_ = 0;
  next_offset_ = 0;
  page_count_ = 0;
  payload_bytes_ = begin_record.payload.size();
  record_count_ = 1;
  device_total_ = 0;
  disk_total_ = 0;
  XXH3_64bits_reset(hashes_->records.get());
  XXH3_64bits_reset(hashes_->device.get());
  ChainChecksum(hashes_->records.get(), begin_record.checksum);
}

DecodeStatus EpochDecoder::Fail(const DecodeStatus& st) {
  return st.WithContext("epoch " + std::to_string(staged_.number()));
}

DecodeStatus EpochDecoder::Fail(DecodeError error, std::string_view message) {
  return Fail(DecodeStatus::Corrupt(error, message));
}

DecodeStatus EpochDecoder::Add(const RecordView& record) {
  if (!in_epoch_) {
    return DecodeStatus::Corrupt(DecodeError::kUnexpectedRecord,
                                 std::string(RecordTypeName(record.type)) + " record outside an epoch");
  }
  record_count_++;
  payload_bytes_ += record.payload.size();
  ChainChecksum(hashes_->records.get(), record.checksum);
  switch (static_cast<RecordType>(record.type)) {
    case RecordType::kPages:
      return AddPages(record.payload);
    case RecordType::kDeviceState:
      return AddDeviceState(record.payload);
    case RecordType::kDiskWrites:
      if (!accept_disk_writes_) {
        return Fail(DecodeStatus(DecodeError::kUnsupportedRecord,
                                 Status::Unsupported("DISK_WRITES record, but the primary's HELLO announced no disk")));
      }
      return AddDiskWrites(record.payload);
    case RecordType::kDiskHashes:
      return Fail(DecodeError::kUnexpectedRecord, "DISK_HASHES from the primary");
    case RecordType::kPageHashes:
      return Fail(DecodeError::kUnexpectedRecord, "PAGE_HASHES from the primary");
    case RecordType::kHello:
      return Fail(DecodeError::kUnexpectedRecord, "HELLO inside an epoch");
    case RecordType::kEpochBegin:
      return Fail(DecodeError::kUnexpectedRecord, "EPOCH_BEGIN inside an epoch: records out of order");
    case RecordType::kAck:
      return Fail(DecodeError::kUnexpectedRecord, "ACK from the primary");
    case RecordType::kAuth:
      return Fail(DecodeError::kUnexpectedRecord, "AUTH inside an epoch (the link handshake is over)");
    case RecordType::kEpochEnd:
      return Fail(DecodeError::kUnexpectedRecord, "EPOCH_END passed to Add");
  }
  char buf[64];
  snprintf(buf, sizeof(buf), "unknown record type 0x%08x", record.type);
  return Fail(DecodeError::kUnknownRecord, buf);
}

DecodeStatus EpochDecoder::AddPages(std::span<const uint8_t> payload) {
  if (payload.size() < kPagesHeaderSize) return Fail(DecodeError::kTruncated, "PAGES record shorter than its header");
  const uint32_t count = LoadLe32(payload.data());
  if (count == 0 || count > kMaxPagesPerRecord || LoadLe32(payload.data() + 4) != 0) {
    return Fail(DecodeError::kBadField, "PAGES record with a bad page count or reserved bits");
  }
  if (write_through_ != nullptr) PopulateWrites(payload, count, write_through_, holes_);
  size_t pos = kPagesHeaderSize;
  for (uint32_t i = 0; i < count; ++i) {
    if (payload.size() - pos < kPageEntryHeaderSize) {
      return Fail(DecodeError::kTruncated, "PAGES record cut inside an entry");
    }
    const uint8_t* entry = payload.data() + pos;
    const auto [offset, block, size, hash, raw_encoding, reserved_clear] = LoadPageEntryHeader(entry);
    if (!reserved_clear) return Fail(DecodeError::kBadField, PageName(block, offset) + " entry with reserved bits set");
    pos += kPageEntryHeaderSize;
    if (size > kMaxEncodedPage || size > payload.size() - pos) {
      return Fail(DecodeError::kTruncated,
                  PageName(block, offset) + " claims " + std::to_string(size) + " encoded bytes");
    }
    const uint8_t* data = entry + kPageEntryHeaderSize;
    pos += size;
    if (raw_encoding > kMaxEncoding) {
      return Fail(DecodeError::kUnknownEncoding,
                  PageName(block, offset) + " with unknown encoding " + std::to_string(raw_encoding));
    }
    const auto encoding = static_cast<PageEncoding>(raw_encoding);
    PrefetchNextBase(payload, pos);
    const uint8_t* base = replica_ != nullptr ? replica_->Page(block, offset) : nullptr;
    if (base == nullptr) {
      return Fail(DecodeError::kPageOutsideLayout, PageName(block, offset) + " outside the RAM layout");
    }
    if (full_) {
      // A keeps epoch may skip pages (the standby keeps them), never repeat or go back.
      const bool in_order = keeps_ ? block > next_block_ || (block == next_block_ && offset >= next_offset_)
                                   : block == next_block_ && offset == next_offset_;
      if (!in_order) {
        return Fail(DecodeError::kPageOrder, std::string(keeps_ ? "full epoch (keeps) repeats or reorders pages: got "
                                                                : "full epoch skips or repeats pages: got ") +
                                                 PageName(block, offset) + ", expected " +
                                                 (keeps_ ? "at or after " : "") + PageName(next_block_, next_offset_));
      }
      next_block_ = block;
      next_offset_ = offset + kPageSize;
      if (next_offset_ >= replica_->blocks()[block].size_bytes) next_block_++, next_offset_ = 0;
      if (IsRelativeEncoding(encoding)) {
        return Fail(DecodeError::kPageOrder,
                    PageName(block, offset) + " of a full epoch is relative to the standby's copy");
      }
    }
    // Plain copies for the lambda: clang 14 cannot capture structured bindings.
    const auto page_block = block;
    const auto page_offset = offset;
    auto hash_mismatch = [&] {
      replica_differs_ = IsRelativeEncoding(encoding);
      return Fail(DecodeError::kPageHashMismatch, PageName(page_block, page_offset) + " hash mismatch after decode (" +
                                                      PageEncodingName(encoding) + ")");
    };
    const bool first_entry = full_ || !SeenBefore(block, offset);
    if (encoding == PageEncoding::kFilled) {
      if (size != 1) {
        return Fail(DecodeError::kBadLength,
                    PageName(block, offset) + ": filled page of " + std::to_string(size) + " bytes");
      }
      if (FilledPageHash(data[0]) != hash) return hash_mismatch();
      if (write_through_ != nullptr) {
        // A full epoch lists each page once, so a hole of the replica as of Begin is still one here.
        const bool zero_already = data[0] == 0 && block < holes_.size() && holes_[block].InHole(offset);
        if (!zero_already) write_through_->FilledPage(block, offset, data[0]);
      } else {
        staged_.FilledPage(block, offset, data[0]);
      }
    } else if (write_through_ != nullptr) {
      Status st = page_decoder_.Decode(encoding, data, size, nullptr, check_page_.get());
      if (!st.ok()) return Fail(DecodeStatus(DecodeError::kDecompressFailed, st.WithContext(PageName(block, offset))));
      if (PageHash(check_page_.get()) != hash) return hash_mismatch();
      StreamPage(write_through_->PageBuffer(block, offset), check_page_.get());
    } else if (encoding == PageEncoding::kUnchanged && first_entry) {
      if (size != 0) return Fail(DecodeError::kBadLength, PageName(block, offset) + ": unchanged page with a payload");
      if (PageHash(base) != hash) return hash_mismatch();  // nothing to stage: the replica holds it
    } else if (encoding == PageEncoding::kSparse && first_entry) {
      Status st = page_decoder_.Decode(encoding, data, size, base, check_page_.get());
      if (!st.ok()) return Fail(DecodeStatus(DecodeError::kDecompressFailed, st.WithContext(PageName(block, offset))));
      if (PageHash(check_page_.get()) != hash) return hash_mismatch();
      memcpy(staged_.PatchBuffer(block, offset, size), data, size);
    } else {
      uint8_t* dst = staged_.PageBuffer(block, offset);
      Status st = page_decoder_.Decode(encoding, data, size, base, dst);
      if (!st.ok()) return Fail(DecodeStatus(DecodeError::kDecompressFailed, st.WithContext(PageName(block, offset))));
      if (PageHash(dst) != hash) return hash_mismatch();
    }
    page_count_++;
  }
  if (pos != payload.size()) {
    return Fail(DecodeError::kBadLength,
                "PAGES record with " + std::to_string(payload.size() - pos) + " trailing bytes");
  }
  return DecodeStatus::Ok();
}

// The standby's copy of the page the entry at `pos` rebuilds, if it is relative: it is read cold while this entry
// is decoded otherwise (a page ahead is enough: an entry takes about a microsecond).
void EpochDecoder::PrefetchNextBase(std::span<const uint8_t> payload, size_t pos) const {
  if (replica_ == nullptr || payload.size() - pos < kPageEntryHeaderSize) return;
  const PageEntryHeader next = LoadPageEntryHeader(payload.data() + pos);
  if (next.encoding > kMaxEncoding || !IsRelativeEncoding(static_cast<PageEncoding>(next.encoding))) return;
  if (const uint8_t* base = replica_->Page(next.block, next.offset); base != nullptr) PrefetchPage(base);
}

DecodeStatus EpochDecoder::AddDeviceState(std::span<const uint8_t> payload) {
  if (payload.size() <= kDeviceStateHeaderSize) {
    return Fail(DecodeError::kTruncated, "DEVICE_STATE record without data");
  }
  const uint64_t total = LoadLe64(payload.data());
  const uint64_t offset = LoadLe64(payload.data() + 8);
  std::span<const uint8_t> chunk = payload.subspan(kDeviceStateHeaderSize);
  std::vector<uint8_t>& dev = staged_.device_state();
  if (device_total_ == 0) {
    if (total == 0 || total > kMaxDeviceState) {
      return Fail(DecodeError::kDeviceStateOrder, "DEVICE_STATE claims a total of " + std::to_string(total) + " bytes");
    }
    device_total_ = total;
  }
  if (total != device_total_ || offset != dev.size() || chunk.size() > total - dev.size()) {
    return Fail(DecodeError::kDeviceStateOrder, "DEVICE_STATE chunk at offset " + std::to_string(offset) + " of " +
                                                          std::to_string(total) + " does not continue the " +
                                                          std::to_string(dev.size()) + " bytes received");
  }
  dev.insert(dev.end(), chunk.begin(), chunk.end());
  XXH3_64bits_update(hashes_->device.get(), chunk.data(), chunk.size());
  return DecodeStatus::Ok();
}

// The chunks reassemble into one DISK_WRITES payload; its contents are verified when it is applied (before the
// RAM), by disk::DecodeDiskWrites.
DecodeStatus EpochDecoder::AddDiskWrites(std::span<const uint8_t> payload) {
  if (payload.size() <= kDiskWritesRecordHeaderSize) {
    return Fail(DecodeError::kTruncated, "DISK_WRITES record without data");
  }
  const uint64_t total = LoadLe64(payload.data());
  const uint64_t offset = LoadLe64(payload.data() + 8);
  std::span<const uint8_t> chunk = payload.subspan(kDiskWritesRecordHeaderSize);
  std::vector<uint8_t>& disk = staged_.disk_writes();
  if (disk_total_ == 0) {
    if (total == 0 || total > kMaxDiskWrites) {
      return Fail(DecodeError::kDiskWritesOrder, "DISK_WRITES claims a total of " + std::to_string(total) + " bytes");
    }
    disk_total_ = total;
  }
  if (total != disk_total_ || offset != disk.size() || chunk.size() > total - disk.size()) {
    return Fail(DecodeError::kDiskWritesOrder, "DISK_WRITES chunk at offset " + std::to_string(offset) + " of " +
                                                   std::to_string(total) + " does not continue the " +
                                                   std::to_string(disk.size()) + " bytes received");
  }
  disk.insert(disk.end(), chunk.begin(), chunk.end());
  return DecodeStatus::Ok();
}

DecodeStatus EpochDecoder::End(const RecordView& end_record) {
  if (!in_epoch_) return DecodeStatus::Corrupt(DecodeError::kUnexpectedRecord, "EPOCH_END outside an epoch");
  in_epoch_ = false;
  if (write_through_ != nullptr) StreamFence();  // the pages are in the replica before anyone reads it
  EpochEndMessage end;
  if (DecodeStatus st = ParseEpochEnd(end_record.payload, &end); !st.ok()) return Fail(st);
  auto mismatch = [&](const char* what, uint64_t claimed, uint64_t seen) {
    return Fail(DecodeError::kTotalsMismatch, std::string("EPOCH_END ") + what + " " + std::to_string(claimed) +
                                                  " but received " + std::to_string(seen));
  };
  if (end.epoch != staged_.number()) return mismatch("closes epoch", end.epoch, staged_.number());
  if (end.record_count != record_count_) return mismatch("counts records:", end.record_count, record_count_);
  if (end.records_hash != XXH3_64bits_digest(hashes_->records.get())) {
    return Fail(DecodeError::kRecordChainMismatch,
                "EPOCH_END record chain hash mismatch: records lost, repeated or reordered");
  }
  if (end.page_count != page_count_) return mismatch("counts pages:", end.page_count, page_count_);
  if (end.payload_bytes != payload_bytes_) return mismatch("counts payload bytes:", end.payload_bytes, payload_bytes_);
  const uint64_t dev = staged_.device_state().size();
  if (end.device_state_bytes != dev) return mismatch("counts device state bytes:", end.device_state_bytes, dev);
  if (dev > 0 && end.device_state_hash != XXH3_64bits_digest(hashes_->device.get())) {
    return Fail(DecodeError::kDeviceStateHashMismatch, "device state hash mismatch");
  }
  if (staged_.disk_writes().size() != disk_total_) {
    return Fail(DecodeError::kDiskWritesOrder, "DISK_WRITES ends after " +
                                                   std::to_string(staged_.disk_writes().size()) + " of " +
                                                   std::to_string(disk_total_) + " bytes");
  }
  if (full_ && !keeps_ && next_block_ != replica_->blocks().size()) {
    return Fail(DecodeError::kPageOrder, "full epoch ends before " + PageName(next_block_, next_offset_));
  }
  if (live_ != (end.settles_after > 0)) {
    return Fail(DecodeError::kBadField, live_ ? "live epoch without settles_after in its EPOCH_END"
                                              : "EPOCH_END settles_after " + std::to_string(end.settles_after) +
                                                    " for an epoch that is not live");
  }
  if (end.settles_after > UINT64_MAX - end.epoch) {
    return Fail(DecodeError::kBadField, "EPOCH_END settles_after beyond the last epoch number");
  }
  settles_after_ = end.settles_after;
  return DecodeStatus::Ok();
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
