#include "tests/disk/disk_test_util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <stdexcept>

namespace tandem::disk::testing {

namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status Dead() { return Status::IoError("injected crash: the process is gone"); }

class FaultyFile : public File {
 public:
  FaultyFile(FaultyFileSystem* fs, std::unique_ptr<File> base, std::string path)
      : fs_(fs), base_(std::move(base)), path_(std::move(path)) {}

  Status PRead(uint64_t offset, std::span<uint8_t> out) override {
    if (fs_->crashed()) return Dead();
    return base_->PRead(offset, out);
  }
  Status PWrite(uint64_t offset, std::span<const uint8_t> data) override {
    if (!fs_->Mutate()) return Dead();
    if (EndsWith(path_, fs_->space_suffix) && offset + data.size() > fs_->space_bytes) {
      // Fill what fits first, as a real full disk does.
      if (offset < fs_->space_bytes) (void)base_->PWrite(offset, data.first(size_t(fs_->space_bytes - offset)));
      return FileError("pwrite", ENOSPC);
    }
    if (IsImage()) {
      if (fs_->image_writes_before_eio >= 0 && fs_->image_writes >= fs_->image_writes_before_eio) {
        return Status::FromErrno("pwrite", EIO);
      }
      ++fs_->image_writes;
    }
    return base_->PWrite(offset, data);
  }
  Status ZeroRange(uint64_t offset, uint64_t length, bool deallocate) override {
    if (!fs_->Mutate()) return Dead();
    return base_->ZeroRange(offset, length, deallocate);
  }
  Status Allocate(uint64_t size) override {
    if (!fs_->Mutate()) return Dead();
    return base_->Allocate(size);
  }
  Status Truncate(uint64_t size) override {
    if (!fs_->Mutate()) return Dead();
    return base_->Truncate(size);
  }
  Status Sync() override {
    if (!fs_->Mutate()) return Dead();
    return base_->Sync();
  }
  Result<uint64_t> Size() override { return base_->Size(); }

 private:
  bool IsImage() const { return !EndsWith(path_, fs_->space_suffix) && !EndsWith(path_, ".journal"); }

  FaultyFileSystem* fs_;
  std::unique_ptr<File> base_;
  std::string path_;
};

}  // namespace

std::vector<uint8_t> Pattern(size_t size, uint8_t seed) {
  std::vector<uint8_t> out(size);
  uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    out[i] = uint8_t(x);
  }
  return out;
}

void WriteWholeFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::vector<uint8_t> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

Result<std::unique_ptr<File>> FaultyFileSystem::Open(const std::string& path, Mode mode) {
  if (mode == Mode::kCreateTruncate ? !Mutate() : crashed()) return Dead();
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<File> base, DefaultFileSystem()->Open(path, mode));
  return std::unique_ptr<File>(new FaultyFile(this, std::move(base), path));
}

Status FaultyFileSystem::Rename(const std::string& from, const std::string& to) {
  if (!Mutate()) return Dead();
  return DefaultFileSystem()->Rename(from, to);
}

Status FaultyFileSystem::Remove(const std::string& path) {
  if (!Mutate()) return Dead();
  return DefaultFileSystem()->Remove(path);
}

Status FaultyFileSystem::SyncDir(const std::string& dir) {
  if (!Mutate()) return Dead();
  return DefaultFileSystem()->SyncDir(dir);
}

}  // namespace tandem::disk::testing
