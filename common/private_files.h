// Files that hold guest memory (RAM file, replica) and control the VM (QMP and COLO sockets, status) are kept in
// directories only tandem's own user can enter. See SECURITY.md beside this file for the threat model.
//
// A private directory is a real directory (not a symlink), owned by the effective user, with no group or other
// permission bits; every ancestor is owned by root or that user and is not writable by others unless sticky
// (like /dev/shm), so nobody else can swap a path component. A private file is a regular file in such a
// directory, owned by the effective user, mode 0600 or stricter. Anything else is refused with the reason:
// tandem does not start on top of a path someone else controls.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/fd.h"
#include "common/status.h"

namespace tandem {

// Creates `path` and its missing parents (mode 0700) and checks that it is private.
Status EnsurePrivateDir(const std::string& path);

// Checks an existing path: a private file (regular, ours, no group/other bits), not a symlink.
Status CheckPrivateFile(const std::string& path);

// A fresh private file of `size_bytes` (sparse) at `path` in a private directory: created O_EXCL|O_NOFOLLOW with
// mode 0600 whatever the umask. A file already there (a stale one of an earlier run) is checked to be ours and
// removed first; a symlink or a foreign file there is refused.
Result<UniqueFd> CreatePrivateFile(const std::string& path, uint64_t size_bytes);

// The private file of `size_bytes` at `path`, kept with its content when one is already there that is a regular
// file of this user, mode 0600 or stricter, with one link and exactly that size (*kept = true); anything else there
// is replaced as CreatePrivateFile does (*kept = false). For the standby's replica: a restarted standby keeps what
// it held so that the primary resyncs only the pages that differ (replicator/page_hashes.h). Safe because the
// content is never trusted: it is only ever a base the standby hashes and the primary compares against, and every
// page it keeps is one whose hash equals the primary's. The checks are on the open file (fstat after
// O_NOFOLLOW), so a file swapped in between is not kept either.
Result<UniqueFd> KeepOrCreatePrivateFile(const std::string& path, uint64_t size_bytes, bool* kept);

struct FileOnDisk {
  std::string path;
  uint64_t bytes = 0;  // allocated bytes (what a tmpfs file really costs), not its apparent size
};
// The regular files directly in `dir` whose names start with `prefix` (no error for a missing dir).
std::vector<FileOnDisk> ListFiles(const std::string& dir, const std::string& prefix);

// Removes `path` on destruction unless Keep() was called: what a clean stop must not leave behind.
class RemoveOnExit {
 public:
  RemoveOnExit() = default;
  explicit RemoveOnExit(std::string path) : path_(std::move(path)) {}
  RemoveOnExit(RemoveOnExit&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  RemoveOnExit& operator=(RemoveOnExit&& o) noexcept;
  RemoveOnExit(const RemoveOnExit&) = delete;
  RemoveOnExit& operator=(const RemoveOnExit&) = delete;
  ~RemoveOnExit();

  void Keep() { path_.clear(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tandem
