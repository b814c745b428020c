// The DISK_WRITES payload: one epoch's disk writes, in the order they completed (layout in disk/README.md).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/status.h"

namespace tandem::disk {

inline constexpr uint32_t kDiskWritesMagic = 0x4c574454;  // "TDWL" read as little-endian
inline constexpr uint16_t kDiskWritesVersion = 1;
inline constexpr size_t kDiskWritesHeaderSize = 48;
inline constexpr size_t kDiskWriteEntryHeaderSize = 24;
inline constexpr uint64_t kMaxDiskWriteLength = UINT32_MAX;  // one entry; longer zero ranges are split

enum class WriteKind : uint16_t {
  kData = 1,   // the bytes follow the entry header
  kZero = 2,   // WRITE_ZEROES: the range reads as zeros
  kTrim = 3,   // TRIM: the range reads as zeros too (see BlockDevice::Trim)
};

struct DiskWrite {
  uint64_t offset = 0;
  uint64_t length = 0;
  WriteKind kind = WriteKind::kData;
  std::span<const uint8_t> data;  // kData only: a view into the payload
};

// Builds payloads. Not thread-safe (EpochWriteLog locks around it).
class DiskWritesEncoder {
 public:
  explicit DiskWritesEncoder(uint64_t disk_size);

  // Callers check bounds: offset + length <= disk_size, length > 0.
  void AddData(uint64_t offset, std::span<const uint8_t> data);
  void Add(WriteKind kind, uint64_t offset, uint64_t length);  // kZero / kTrim

  uint32_t count() const { return count_; }
  size_t bytes() const { return buffer_.size(); }  // the payload so far, header included
  uint64_t disk_size() const { return disk_size_; }

  // Seals the payload for `epoch` and returns it; the encoder starts empty again, in `reuse`'s capacity if given.
  std::vector<uint8_t> Finish(uint64_t epoch, std::vector<uint8_t> reuse = {});

 private:
  void AddEntry(WriteKind kind, uint64_t offset, uint32_t length, std::span<const uint8_t> data);

  uint64_t disk_size_;
  uint32_t count_ = 0;
  uint64_t data_bytes_ = 0;
  std::vector<uint8_t> buffer_;
};

struct DiskWrites {
  uint64_t epoch = 0;
  uint64_t disk_size = 0;
  uint64_t data_bytes = 0;
  std::vector<DiskWrite> writes;  // views into the decoded payload, which must outlive them
};

// Verifies everything (magic, version, sizes, bounds, per-entry and whole-record XXH3) before returning; any
// defect is a Corruption (Unsupported for another version) naming what is wrong.
Result<DiskWrites> DecodeDiskWrites(std::span<const uint8_t> payload);

// One payload with `earlier`'s writes, then `later`'s, for later's epoch: what applying both in turn does (the
// primary merging queued epochs while no standby takes them). Both are verified first; disk sizes must agree.
Result<std::vector<uint8_t>> MergeDiskWrites(std::span<const uint8_t> earlier, std::span<const uint8_t> later);

}  // namespace tandem::disk
