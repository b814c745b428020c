#include "common/private_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

#include "common/log.h"

namespace tandem {
namespace {

std::string ParentOf(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string Octal(mode_t mode) {
  char buf[8];
  snprintf(buf, sizeof buf, "%04o", unsigned(mode & 07777));
  return buf;
}

// An ancestor may be shared (/, /dev/shm, /run) but nobody but root or us may be able to replace what is in it.
Status CheckTrustedAncestor(const std::string& dir) {
  struct stat st;
  if (::lstat(dir.c_str(), &st) != 0) return Status::FromErrno("stat " + dir, errno);
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(dir + " is not a directory");
  if (st.st_uid != 0 && st.st_uid != ::geteuid()) {
    return Status::InvalidArgument(dir + " is owned by uid " + std::to_string(st.st_uid) +
                                   ": refusing to keep guest memory below a directory another user controls");
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) && !(st.st_mode & S_ISVTX)) {
    return Status::InvalidArgument(dir + " is writable by others (mode " + Octal(st.st_mode) +
                                   ") without the sticky bit: anyone could replace what is in it");
  }
  return Status::Ok();
}

Status CheckTrustedChain(const std::string& resolved) {
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = resolved.find('/', pos + 1);
    const std::string prefix = pos == std::string::npos ? resolved : resolved.substr(0, pos);
    TANDEM_RETURN_IF_ERROR(CheckTrustedAncestor(prefix.empty() ? "/" : prefix));
  }
  return CheckTrustedAncestor("/");
}

Status CheckOwnedPrivate(const std::string& path, const struct stat& st, const char* what) {
  if (st.st_uid != ::geteuid()) {
    return Status::InvalidArgument(path + " is owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                                   std::to_string(::geteuid()) + " (this process): refusing to use it");
  }
  if (st.st_mode & 077) {
    return Status::InvalidArgument(path + " has mode " + Octal(st.st_mode) + ": a " + what +
                                   " that holds guest memory must not be open to group or others");
  }
  return Status::Ok();
}

// A real directory or regular file (never followed through a symlink) of this user, closed to everyone else.
Status CheckPrivatePath(const std::string& path, bool directory) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return Status::FromErrno("stat " + path, errno);
  if (S_ISLNK(st.st_mode)) return Status::InvalidArgument(path + " is a symlink: refusing to follow it");
  if (directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
    return Status::InvalidArgument(path + (directory ? " is not a directory" : " is not a regular file"));
  }
  return CheckOwnedPrivate(path, st, directory ? "directory (expected 0700)" : "file (expected 0600)");
}

}  // namespace

Status EnsurePrivateDir(const std::string& requested) {
  if (requested.empty() || requested.front() != '/') {
    return Status::InvalidArgument("private directory '" + requested + "' must be an absolute path");
  }
  const std::string path = StripTrailingSlashes(requested);
  // The deepest part that exists is checked as resolved by the kernel; what is missing is created below it.
  std::string existing = path;
  std::vector<std::string> missing;
  struct stat st;
  while (::lstat(existing.c_str(), &st) != 0) {
    if (errno != ENOENT) return Status::FromErrno("stat " + existing, errno);
    missing.push_back(existing);
    existing = ParentOf(existing);
  }
  if (missing.empty()) {
    TANDEM_RETURN_IF_ERROR(CheckPrivatePath(path, /*directory=*/true));
    existing = ParentOf(path);
  }
  char resolved[PATH_MAX];
  if (::realpath(existing.c_str(), resolved) == nullptr) return Status::FromErrno("resolve " + existing, errno);
  TANDEM_RETURN_IF_ERROR(CheckTrustedChain(resolved));
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno("mkdir " + *it, errno);
    // Also catches a directory someone else created there meanwhile.
    TANDEM_RETURN_IF_ERROR(CheckPrivatePath(*it, /*directory=*/true));
  }
  return Status::Ok();
}

Status CheckPrivateFile(const std::string& path) { return CheckPrivatePath(path, /*directory=*/false); }

Result<UniqueFd> CreatePrivateFile(const std::string& path, uint64_t size_bytes) {
  TANDEM_RETURN_IF_ERROR(EnsurePrivateDir(ParentOf(path)));
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      TLOG_WARN("files", "a symlink was planted at %s: removed, not followed", path.c_str());
    } else if (S_ISREG(st.st_mode) && st.st_uid == ::geteuid()) {
      TLOG_INFO("files", "removed stale %s of an earlier run (%.1f MiB in memory)", path.c_str(),
                double(st.st_blocks) * 512 / (1 << 20));
    } else {
      return Status::InvalidArgument(path + " exists and is not a file of this user: refusing to replace it");
    }
    if (::unlink(path.c_str()) != 0) return Status::FromErrno("remove stale " + path, errno);
  } else if (errno != ENOENT) {
    return Status::FromErrno("stat " + path, errno);
  }
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno("create " + path, errno);
  // The umask may only have taken bits away; make the mode exactly 0600 whatever it was.
  if (::fchmod(fd.get(), 0600) != 0) return Status::FromErrno("chmod " + path, errno);
  if (::ftruncate(fd.get(), off_t(size_bytes)) != 0) return Status::FromErrno("size " + path, errno);
  return fd;
}

Result<UniqueFd> KeepOrCreatePrivateFile(const std::string& path, uint64_t size_bytes, bool* kept) {
  *kept = false;
  TANDEM_RETURN_IF_ERROR(EnsurePrivateDir(ParentOf(path)));
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
  struct stat st;
  if (fd.valid() && ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() &&
      (st.st_mode & 077) == 0 && st.st_nlink == 1 && uint64_t(st.st_size) == size_bytes) {
    TLOG_INFO("files", "kept %s of an earlier run (%.1f MiB in memory): a base for a resync by page hashes",
              path.c_str(), double(st.st_blocks) * 512 / (1 << 20));
    *kept = true;
    return fd;
  }
  fd.reset();
  return CreatePrivateFile(path, size_bytes);
}

std::vector<FileOnDisk> ListFiles(const std::string& dir, const std::string& prefix) {
  std::vector<FileOnDisk> files;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return files;
  while (const dirent* entry = ::readdir(d)) {
    const std::string name = entry->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    struct stat st;
    const std::string path = dir + "/" + name;
    if (::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) files.push_back({path, uint64_t(st.st_blocks) * 512});
  }
  ::closedir(d);
  return files;
}

RemoveOnExit& RemoveOnExit::operator=(RemoveOnExit&& o) noexcept {
  if (this != &o) {
    if (!path_.empty()) ::unlink(path_.c_str());
    path_ = std::move(o.path_);
    o.path_.clear();
  }
  return *this;
}

RemoveOnExit::~RemoveOnExit() {
  if (!path_.empty()) ::unlink(path_.c_str());
}

}  // namespace tandem
