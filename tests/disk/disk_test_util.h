// Shared by the disk/ tests: images with known contents, and a file system that fails or "crashes" on cue.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "disk/file.h"
#include "tests/qemu/qemu_test_util.h"  // TempDir

namespace tandem::disk::testing {

using tandem::qemu::testing::TempDir;

// Bytes that differ per seed and per offset, so a misplaced write shows.
std::vector<uint8_t> Pattern(size_t size, uint8_t seed);
void WriteWholeFile(const std::string& path, const std::vector<uint8_t>& bytes);
std::vector<uint8_t> ReadWholeFile(const std::string& path);

// Wraps the real file system. Every mutating call (write, zero, allocate, truncate, sync, create, rename, remove,
// directory sync) is counted; after `crash_after` of them every call fails, as if the process had died there
// (nothing more reaches the disk, not even cleanup). Files whose path ends in `space_suffix` may hold at most
// `space_bytes` bytes; a write beyond fails with ENOSPC, like a full disk.
class FaultyFileSystem : public FileSystem {
 public:
  int64_t crash_after = -1;  // -1: never
  std::string space_suffix = ".tmp";
  uint64_t space_bytes = UINT64_MAX;
  // Image writes (files not ending in space_suffix or ".journal") fail with EIO once this many were done.
  int64_t image_writes_before_eio = -1;

  int64_t mutations() const { return mutations_; }
  bool crashed() const { return crash_after >= 0 && mutations_ > crash_after; }
  // Counts one mutation; false if it must fail (the "process" is dead).
  bool Mutate() {
    ++mutations_;
    return crash_after < 0 || mutations_ <= crash_after;
  }

  Result<std::unique_ptr<File>> Open(const std::string& path, Mode mode) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status Remove(const std::string& path) override;
  bool Exists(const std::string& path) override { return DefaultFileSystem()->Exists(path); }
  Status SyncDir(const std::string& dir) override;

  int64_t image_writes = 0;

 private:
  int64_t mutations_ = 0;
};

}  // namespace tandem::disk::testing
