#include "disk/file.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "common/fd.h"

namespace tandem::disk {

namespace {

constexpr std::string_view kNoSpaceMarker = "disk full (";

}  // namespace

Status FileError(std::string_view what, int err) {
  if (err == ENOSPC || err == EFBIG || err == EDQUOT) {
    std::string msg(what);
    msg += ": ";
    msg += kNoSpaceMarker;
    msg += std::strerror(err);
    msg += ")";
    return Status::IoError(msg);
  }
  return Status::FromErrno(what, err);
}

namespace {

class PosixFile : public File {
 public:
  explicit PosixFile(UniqueFd fd) : fd_(std::move(fd)) {}

  Status PRead(uint64_t offset, std::span<uint8_t> out) override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = ::pread(fd_.get(), out.data() + done, out.size() - done, off_t(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return FileError("pread", errno);
      }
      if (n == 0) return Status::Corruption("read past the end of the file");
      done += size_t(n);
    }
    return Status::Ok();
  }

  Status PWrite(uint64_t offset, std::span<const uint8_t> data) override {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::pwrite(fd_.get(), data.data() + done, data.size() - done, off_t(offset + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return FileError("pwrite", errno);
      }
      done += size_t(n);
    }
    return Status::Ok();
  }

  Status ZeroRange(uint64_t offset, uint64_t length, bool deallocate) override {
    int mode = deallocate ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
    if (::fallocate(fd_.get(), mode, off_t(offset), off_t(length)) == 0) return Status::Ok();
    if (errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL) return FileError("fallocate", errno);
    // The file system cannot do it in place (tmpfs has no ZERO_RANGE): write the zeros.
    static const std::vector<uint8_t> kZeros(1 << 20, 0);
    while (length > 0) {
      size_t chunk = size_t(std::min<uint64_t>(length, kZeros.size()));
      TANDEM_RETURN_IF_ERROR(PWrite(offset, std::span(kZeros.data(), chunk)));
      offset += chunk;
      length -= chunk;
    }
    return Status::Ok();
  }

  Status Allocate(uint64_t size) override {
    if (size == 0) return Status::Ok();
    int err = ::posix_fallocate(fd_.get(), 0, off_t(size));
    return err == 0 ? Status::Ok() : FileError("posix_fallocate", err);
  }

  Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_.get(), off_t(size)) != 0) return FileError("ftruncate", errno);
    return Status::Ok();
  }

  Status Sync() override {
    if (::fdatasync(fd_.get()) != 0) return FileError("fdatasync", errno);
    return Status::Ok();
  }

  Result<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_.get(), &st) != 0) return FileError("fstat", errno);
    return uint64_t(st.st_size);
  }

 private:
  UniqueFd fd_;
};

class PosixFileSystem : public FileSystem {
 public:
  Result<std::unique_ptr<File>> Open(const std::string& path, Mode mode) override {
    int flags = O_CLOEXEC;
    switch (mode) {
      case Mode::kReadOnly: flags |= O_RDONLY; break;
      case Mode::kReadWrite: flags |= O_RDWR; break;
      case Mode::kCreateTruncate: flags |= O_RDWR | O_CREAT | O_TRUNC; break;
    }
    UniqueFd fd(::open(path.c_str(), flags, 0600));
    if (!fd.valid()) return FileError("open " + path, errno);
    return std::unique_ptr<File>(new PosixFile(std::move(fd)));
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) return FileError("rename " + from, errno);
    return Status::Ok();
  }

  Status Remove(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) return FileError("unlink " + path, errno);
    return Status::Ok();
  }

  bool Exists(const std::string& path) override { return ::access(path.c_str(), F_OK) == 0; }

  Status SyncDir(const std::string& dir) override {
    UniqueFd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd.valid()) return FileError("open " + dir, errno);
    if (::fsync(fd.get()) != 0) return FileError("fsync " + dir, errno);
    return Status::Ok();
  }
};

}  // namespace

FileSystem* DefaultFileSystem() {
  static PosixFileSystem fs;
  return &fs;
}

bool IsNoSpace(const Status& status) {
  return status.code() == Status::Code::kIoError && status.message().find(kNoSpaceMarker) != std::string::npos;
}

}  // namespace tandem::disk
