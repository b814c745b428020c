// The files disk/ reads and writes, behind a seam so tests can inject a full disk or a crash at any step.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/status.h"

namespace tandem::disk {

// One open file. Offsets are absolute; every call either does all it was asked or returns an error.
class File {
 public:
  virtual ~File() = default;
  // Reads exactly out.size() bytes; a read past the end of the file is an error (Corruption).
  virtual Status PRead(uint64_t offset, std::span<uint8_t> out) = 0;
  virtual Status PWrite(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Makes [offset, offset+length) read as zeros. deallocate = the blocks may be released (TRIM on the primary);
  // otherwise they stay allocated, so a later write there cannot fail for lack of space (the standby).
  virtual Status ZeroRange(uint64_t offset, uint64_t length, bool deallocate) = 0;
  // Allocates [0, size) without changing data (posix_fallocate semantics).
  virtual Status Allocate(uint64_t size) = 0;
  virtual Status Truncate(uint64_t size) = 0;
  virtual Status Sync() = 0;  // data and the size (fdatasync)
  virtual Result<uint64_t> Size() = 0;
};

class FileSystem {
 public:
  virtual ~FileSystem() = default;
  enum class Mode { kReadOnly, kReadWrite, kCreateTruncate };
  virtual Result<std::unique_ptr<File>> Open(const std::string& path, Mode mode) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  virtual Status Remove(const std::string& path) = 0;  // a missing file is not an error
  virtual bool Exists(const std::string& path) = 0;
  // Makes renames and creations inside `dir` durable.
  virtual Status SyncDir(const std::string& dir) = 0;
};

// The real file system (POSIX calls).
FileSystem* DefaultFileSystem();

// An IoError for a failed call; one that failed for lack of space is recognized by IsNoSpace.
Status FileError(std::string_view what, int err);

// True when `status` came from a write that failed for lack of space (ENOSPC, or EFBIG from RLIMIT_FSIZE /
// the maximum file size): the NBD server reports it as NBD_ENOSPC and the replica says "disk full".
bool IsNoSpace(const Status& status);

}  // namespace tandem::disk
