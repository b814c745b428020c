#include "replicator/guest_ram.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iterator>

#include "replicator/page_codec.h"

namespace tandem::replicator {

Result<std::unique_ptr<GuestRam>> GuestRam::Open(const VmDescriptor& descriptor,
                                                 const std::map<std::string, std::string>& shared_files) {
  for (const auto& [name, path] : shared_files) {
    bool found = false;
    for (const RamBlockInfo& b : descriptor.ram_blocks) found = found || b.name == name;
    if (!found) return Status::InvalidArgument("guest RAM file " + path + " for unknown RAM block " + name);
  }
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<RamImage> image, RamImage::Create(descriptor, {}, shared_files));
  std::unique_ptr<GuestRam> ram(new GuestRam(std::move(image)));
  for (const RamBlockInfo& b : descriptor.ram_blocks) {
    auto it = shared_files.find(b.name);
    ram->files_.emplace_back(it == shared_files.end() ? -1 : ::open(it->second.c_str(), O_RDONLY | O_CLOEXEC));
    if (it != shared_files.end() && !ram->files_.back().valid()) {
      return Status::FromErrno("open guest RAM file " + it->second, errno);
    }
  }
  return ram;
}

uint64_t GuestRam::copied_bytes() const {
  uint64_t bytes = 0;
  for (uint32_t b = 0; b < image_->blocks().size(); ++b) {
    if (!live(b)) bytes += image_->blocks()[b].size_bytes;
  }
  return bytes;
}

Status GuestRam::Fold(const Epoch& epoch) {
  for (const PageRecord& p : epoch.pages()) {
    if (image_->Page(p.block, p.offset) == nullptr) {
      return Status::InvalidArgument("epoch " + std::to_string(epoch.number()) + ": page outside RAM block " +
                                     std::to_string(p.block));
    }
    if (p.patch_size > 0 && !live(p.block)) {
      TANDEM_RETURN_IF_ERROR(CheckSparsePatch(epoch.PageData(p), p.patch_size));
    }
  }
  for (const PageRecord& p : epoch.pages()) {
    if (live(p.block)) continue;
    uint8_t* dst = image_->PageBuffer(p.block, p.offset);
    if (p.filled) {
      memset(dst, p.fill, kPageSize);
    } else if (p.patch_size > 0) {
      ApplySparsePatch(epoch.PageData(p), p.patch_size, dst);
    } else {
      CopyPage(dst, epoch.PageData(p));
    }
  }
  return Status::Ok();
}

bool GuestRam::ReadPage(uint32_t block, uint64_t offset, uint8_t* out) const {
  const uint8_t* page = image_->Page(block, offset);
  if (page == nullptr) return false;
  CopyPage(out, page);
  return true;
}

FileHoles FileHoles::Of(int fd, uint64_t size) {
  FileHoles holes;
  if (fd < 0) return holes;
  for (uint64_t offset = 0; offset < size;) {
    const off_t data = lseek(fd, off_t(offset), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // holes to the end
      return FileHoles();         // cannot tell: no holes
    }
    const uint64_t begin = uint64_t(data) / kPageSize * kPageSize;
    if (begin >= size) break;
    const off_t hole = lseek(fd, off_t(begin), SEEK_HOLE);
    const uint64_t end =
        hole < 0 ? size : std::min(size, (uint64_t(hole) + kPageSize - 1) / kPageSize * kPageSize);
    holes.data_.push_back({begin, std::max(end, begin + kPageSize)});
    offset = holes.data_.back().end;
  }
  holes.walked_ = true;
  return holes;
}

bool FileHoles::InHole(uint64_t offset) const {
  if (!walked_) return false;
  // The last run that begins at or before `offset`.
  auto it = std::upper_bound(data_.begin(), data_.end(), offset, [](uint64_t o, const Run& r) { return o < r.begin; });
  return it == data_.begin() || offset >= std::prev(it)->end;
}

void FileHoles::Populate(const uint8_t* base, uint64_t from, uint64_t to) const {
  if (!walked_) return;
  auto it = std::upper_bound(data_.begin(), data_.end(), from, [](uint64_t o, const Run& r) { return o < r.begin; });
  if (it != data_.begin()) --it;
  for (; it != data_.end() && it->begin < to; ++it) {
    const uint64_t begin = std::max(it->begin, from), end = std::min(it->end, to);
    // Advice only: an older kernel (EINVAL) just takes the faults.
    if (begin < end) madvise(const_cast<uint8_t*>(base) + begin, end - begin, MADV_POPULATE_READ);
  }
}

FileHoles GuestRam::Holes(uint32_t block) const {
  return FileHoles::Of(files_[block].get(), image_->blocks()[block].size_bytes);
}

uint8_t* GuestRam::PageBuffer(uint32_t block, uint64_t offset) {
  if (image_->Page(block, offset) == nullptr) return nullptr;
  return live(block) ? discard_ : image_->PageBuffer(block, offset);
}

bool GuestRam::FilledPage(uint32_t block, uint64_t offset, uint8_t fill) {
  if (image_->Page(block, offset) == nullptr) return false;
  return live(block) || image_->FilledPage(block, offset, fill);
}

}  // namespace tandem::replicator
