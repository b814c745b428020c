#include "disk/disk_writes.h"

#include <xxhash.h>

#include <algorithm>
#include <string>

#include "common/fd.h"

namespace tandem::disk {

namespace {

// Header fields (offsets into the payload).
constexpr size_t kMagicAt = 0, kVersionAt = 4, kFlagsAt = 6, kEpochAt = 8, kDiskSizeAt = 16, kCountAt = 24,
                 kReservedAt = 28, kDataBytesAt = 32, kHashAt = 40;
// Entry fields (offsets into the entry).
constexpr size_t kEntryOffsetAt = 0, kEntryLengthAt = 8, kEntryKindAt = 12, kEntryReservedAt = 14,
                 kEntryHashAt = 16;

uint16_t LoadLe16(const uint8_t* p) { return uint16_t(p[0] | p[1] << 8); }
void StoreLe16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v), p[1] = uint8_t(v >> 8); }

// An entry's hash covers its offset, length, kind and reserved bytes, then its data.
uint64_t EntryHash(const uint8_t* entry, std::span<const uint8_t> data) {
  return XXH3_64bits_withSeed(data.data(), data.size(), XXH3_64bits(entry, kEntryHashAt));
}

// The record's hash covers the header before the hash field and everything after the header.
uint64_t RecordHash(std::span<const uint8_t> payload) {
  return XXH3_64bits_withSeed(payload.data() + kDiskWritesHeaderSize, payload.size() - kDiskWritesHeaderSize,
                              XXH3_64bits(payload.data(), kHashAt));
}

Status Bad(const std::string& what) { return Status::Corruption("DISK_WRITES: " + what); }

}  // namespace

DiskWritesEncoder::DiskWritesEncoder(uint64_t disk_size) : disk_size_(disk_size) {
  buffer_.resize(kDiskWritesHeaderSize);
}

void DiskWritesEncoder::AddEntry(WriteKind kind, uint64_t offset, uint32_t length, std::span<const uint8_t> data) {
  size_t at = buffer_.size();
  buffer_.resize(at + kDiskWriteEntryHeaderSize + data.size());
  uint8_t* entry = buffer_.data() + at;
  StoreLe64(entry + kEntryOffsetAt, offset);
  StoreLe32(entry + kEntryLengthAt, length);
  StoreLe16(entry + kEntryKindAt, uint16_t(kind));
  StoreLe16(entry + kEntryReservedAt, 0);
  if (!data.empty()) memcpy(entry + kDiskWriteEntryHeaderSize, data.data(), data.size());
  StoreLe64(entry + kEntryHashAt, EntryHash(entry, data));
  ++count_;
  data_bytes_ += data.size();
}

void DiskWritesEncoder::AddData(uint64_t offset, std::span<const uint8_t> data) {
  // NBD requests are at most 4 GiB - 1; a longer span (a resync run) is split.
  while (!data.empty()) {
    size_t chunk = size_t(std::min<uint64_t>(data.size(), kMaxDiskWriteLength));
    AddEntry(WriteKind::kData, offset, uint32_t(chunk), data.first(chunk));
    offset += chunk;
    data = data.subspan(chunk);
  }
}

void DiskWritesEncoder::Add(WriteKind kind, uint64_t offset, uint64_t length) {
  while (length > 0) {
    uint32_t chunk = uint32_t(std::min(length, kMaxDiskWriteLength));
    AddEntry(kind, offset, chunk, {});
    offset += chunk;
    length -= chunk;
  }
}

std::vector<uint8_t> DiskWritesEncoder::Finish(uint64_t epoch, std::vector<uint8_t> reuse) {
  uint8_t* h = buffer_.data();
  StoreLe32(h + kMagicAt, kDiskWritesMagic);
  StoreLe16(h + kVersionAt, kDiskWritesVersion);
  StoreLe16(h + kFlagsAt, 0);
  StoreLe64(h + kEpochAt, epoch);
  StoreLe64(h + kDiskSizeAt, disk_size_);
  StoreLe32(h + kCountAt, count_);
  StoreLe32(h + kReservedAt, 0);
  StoreLe64(h + kDataBytesAt, data_bytes_);
  StoreLe64(h + kHashAt, RecordHash(buffer_));
  std::vector<uint8_t> sealed = std::move(buffer_);
  buffer_ = std::move(reuse);
  buffer_.assign(kDiskWritesHeaderSize, 0);
  count_ = 0;
  data_bytes_ = 0;
  return sealed;
}

Result<DiskWrites> DecodeDiskWrites(std::span<const uint8_t> payload) {
  if (payload.size() < kDiskWritesHeaderSize) {
    return Bad(std::to_string(payload.size()) + " bytes, shorter than the 48-byte header");
  }
  const uint8_t* h = payload.data();
  if (LoadLe32(h + kMagicAt) != kDiskWritesMagic) return Bad("bad magic (not a DISK_WRITES payload)");
  if (uint16_t version = LoadLe16(h + kVersionAt); version != kDiskWritesVersion) {
    return Status::Unsupported("DISK_WRITES: version " + std::to_string(version) + " (this build reads version " +
                               std::to_string(kDiskWritesVersion) + ")");
  }
  if (LoadLe16(h + kFlagsAt) != 0 || LoadLe32(h + kReservedAt) != 0) return Bad("reserved header bits set");
  if (LoadLe64(h + kHashAt) != RecordHash(payload)) return Bad("record checksum mismatch");

  DiskWrites out;
  out.epoch = LoadLe64(h + kEpochAt);
  out.disk_size = LoadLe64(h + kDiskSizeAt);
  out.data_bytes = LoadLe64(h + kDataBytesAt);
  uint32_t count = LoadLe32(h + kCountAt);
  // Each entry takes at least its header: a count the payload cannot hold is refused before reserving for it.
  if (count > (payload.size() - kDiskWritesHeaderSize) / kDiskWriteEntryHeaderSize) {
    return Bad("entry count " + std::to_string(count) + " does not fit in " + std::to_string(payload.size()) +
               " bytes");
  }
  out.writes.reserve(count);
  size_t at = kDiskWritesHeaderSize;
  uint64_t data_bytes = 0;
  for (uint32_t i = 0; i < count; ++i) {
    std::string which = "entry " + std::to_string(i) + ": ";
    if (payload.size() - at < kDiskWriteEntryHeaderSize) return Bad(which + "truncated header");
    const uint8_t* e = payload.data() + at;
    DiskWrite w;
    w.offset = LoadLe64(e + kEntryOffsetAt);
    w.length = LoadLe32(e + kEntryLengthAt);
    uint16_t kind = LoadLe16(e + kEntryKindAt);
    if (kind < uint16_t(WriteKind::kData) || kind > uint16_t(WriteKind::kTrim)) {
      return Bad(which + "unknown kind " + std::to_string(kind));
    }
    w.kind = WriteKind(kind);
    if (LoadLe16(e + kEntryReservedAt) != 0) return Bad(which + "reserved bits set");
    if (w.length == 0) return Bad(which + "zero length");
    if (w.offset > out.disk_size || w.length > out.disk_size - w.offset) {
      return Bad(which + "range [" + std::to_string(w.offset) + ", +" + std::to_string(w.length) +
                 ") beyond the " + std::to_string(out.disk_size) + "-byte disk");
    }
    at += kDiskWriteEntryHeaderSize;
    if (w.kind == WriteKind::kData) {
      if (payload.size() - at < w.length) return Bad(which + "data truncated");
      w.data = payload.subspan(at, w.length);
      at += w.length;
      data_bytes += w.length;
    }
    if (LoadLe64(e + kEntryHashAt) != EntryHash(e, w.data)) return Bad(which + "checksum mismatch");
    out.writes.push_back(w);
  }
  if (at != payload.size()) return Bad(std::to_string(payload.size() - at) + " bytes after the last entry");
  if (data_bytes != out.data_bytes) return Bad("data byte total does not match the entries");
  return out;
}

Result<std::vector<uint8_t>> MergeDiskWrites(std::span<const uint8_t> earlier, std::span<const uint8_t> later) {
  TANDEM_ASSIGN_OR_RETURN(DiskWrites first, DecodeDiskWrites(earlier));
  TANDEM_ASSIGN_OR_RETURN(DiskWrites second, DecodeDiskWrites(later));
  if (first.disk_size != second.disk_size) {
    return Status::InvalidArgument("DISK_WRITES of a " + std::to_string(first.disk_size) + "-byte and a " +
                                   std::to_string(second.disk_size) + "-byte disk do not merge");
  }
  DiskWritesEncoder merged(first.disk_size);
  for (const DiskWrites* writes : {&first, &second}) {
    for (const DiskWrite& w : writes->writes) {
      if (w.kind == WriteKind::kData) {
        merged.AddData(w.offset, w.data);
      } else {
        merged.Add(w.kind, w.offset, w.length);
      }
    }
  }
  return merged.Finish(second.epoch);
}

}  // namespace tandem::disk
