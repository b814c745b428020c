#include "replicator/epoch.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "common/fd.h"
#include "disk/disk_writes.h"
#include "replicator/page_codec.h"

namespace tandem::replicator {

void Epoch::Reset(uint64_t number, bool full) {
  number_ = number;
  full_ = full;
  merged_ = 0;
  pages_.clear();
  index_.clear();
  arena_used_ = 0;
  device_state_.clear();
  disk_writes_.clear();
}

void Epoch::ReservePageBytes(uint64_t bytes) {
  if (arena_.size() < bytes) arena_.resize(bytes);
}

uint8_t* Epoch::Append(uint32_t block, uint64_t offset, uint32_t bytes, uint32_t patch_size) {
  if (arena_.size() < arena_used_ + bytes) {
    // Grows geometrically once; steady-state epochs reuse the capacity.
    arena_.resize(std::max<size_t>(arena_.size() * 2, arena_used_ + bytes));
  }
  pages_.push_back(PageRecord{block, offset, arena_used_, false, 0, patch_size});
  uint8_t* out = arena_.data() + arena_used_;
  arena_used_ += bytes;
  return out;
}

uint8_t* Epoch::PageBuffer(uint32_t block, uint64_t offset) { return Append(block, offset, kPageSize, 0); }

uint8_t* Epoch::PatchBuffer(uint32_t block, uint64_t offset, uint32_t size) {
  return Append(block, offset, size, size);
}

bool Epoch::FilledPage(uint32_t block, uint64_t offset, uint8_t fill) {
  pages_.push_back(PageRecord{block, offset, 0, true, fill, 0});
  return true;
}

Status Epoch::Absorb(const Epoch& later) {
  if (this == &later) return Status::InvalidArgument("an epoch does not absorb itself");
  if (full() || later.full()) return Status::InvalidArgument("a full epoch does not merge");
  if (later.number() - later.merged() != number() + 1) {
    return Status::InvalidArgument("epoch " + std::to_string(later.number()) + " does not follow epoch " +
                                   std::to_string(number()));
  }
  for (const PageRecord& p : later.pages()) {
    if (p.patch_size > 0) return Status::InvalidArgument("a staged patch does not merge");
  }
  // The disk first: it is the step that can fail, and this epoch must stay unchanged when it does.
  if (!later.disk_writes().empty()) {
    if (disk_writes_.empty()) {
      disk_writes_ = later.disk_writes();
    } else {
      TANDEM_ASSIGN_OR_RETURN(disk_writes_, disk::MergeDiskWrites(disk_writes_, later.disk_writes()));
    }
  }
  auto key = [](const PageRecord& p) { return uint64_t{p.block} << 48 | p.offset / kPageSize; };
  if (index_.empty()) {
    for (size_t i = 0; i < pages_.size(); ++i) index_[key(pages_[i])] = i;
  }
  for (const PageRecord& p : later.pages()) {
    auto [it, added] = index_.try_emplace(key(p), pages_.size());
    if (added) {
      if (p.filled) {
        FilledPage(p.block, p.offset, p.fill);
      } else {
        memcpy(PageBuffer(p.block, p.offset), later.PageData(p), kPageSize);
      }
      continue;
    }
    PageRecord& mine = pages_[it->second];
    if (p.filled) {
      mine.filled = true;  // a page slot it may have stays unused
      mine.fill = p.fill;
      continue;
    }
    if (mine.filled) {
      // It becomes a whole page: a new entry in its place; the filled entry before it is overwritten on apply.
      it->second = pages_.size();
      memcpy(PageBuffer(p.block, p.offset), later.PageData(p), kPageSize);
      continue;
    }
    memcpy(MutablePageData(mine), later.PageData(p), kPageSize);
  }
  number_ = later.number();
  merged_ += later.merged() + 1;
  if (!later.device_state().empty()) device_state_ = later.device_state();
  return Status::Ok();
}

Result<std::unique_ptr<RamImage>> RamImage::Create(const VmDescriptor& descriptor,
                                                   const std::map<std::string, std::string>& file_backed,
                                                   const std::map<std::string, std::string>& read_only) {
  if (descriptor.page_size != kPageSize) return Status::Unsupported("page size other than 4096");
  std::unique_ptr<RamImage> image(new RamImage());
  for (const RamBlockInfo& block : descriptor.ram_blocks) {
    if (block.size_bytes == 0 || block.size_bytes % kPageSize != 0) {
      return Status::InvalidArgument("RAM block " + block.name + " has a size that is not a page multiple");
    }
    void* base = MAP_FAILED;
    auto it = file_backed.find(block.name);
    auto viewed = read_only.find(block.name);
    if (viewed != read_only.end()) {
      if (it != file_backed.end()) return Status::InvalidArgument("RAM block " + block.name + " mapped twice");
      UniqueFd fd(::open(viewed->second.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return Status::FromErrno("open guest RAM file " + viewed->second, errno);
      struct stat st {};
      if (fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + viewed->second, errno);
      if (uint64_t(st.st_size) < block.size_bytes) {
        return Status::InvalidArgument("guest RAM file " + viewed->second + " holds " + std::to_string(st.st_size) +
                                       " bytes, RAM block " + block.name + " " + std::to_string(block.size_bytes));
      }
      base = mmap(nullptr, block.size_bytes, PROT_READ, MAP_SHARED, fd.get(), 0);
    } else if (it != file_backed.end()) {
      UniqueFd fd(::open(it->second.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
      if (!fd.valid()) return Status::FromErrno("open replica file " + it->second, errno);
      struct stat st {};
      if (fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + it->second, errno);
      if (uint64_t(st.st_size) != block.size_bytes && ftruncate(fd.get(), off_t(block.size_bytes)) != 0) {
        return Status::FromErrno("size replica file " + it->second, errno);
      }
      base = mmap(nullptr, block.size_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    } else {
      base = mmap(nullptr, block.size_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    }
    if (base == MAP_FAILED) return Status::FromErrno("map RAM block " + block.name, errno);
    image->blocks_.push_back(block);
    image->bases_.push_back(static_cast<uint8_t*>(base));
    image->read_only_.push_back(viewed != read_only.end());
  }
  return image;
}

RamImage::~RamImage() {
  for (size_t i = 0; i < bases_.size(); ++i) munmap(bases_[i], blocks_[i].size_bytes);
}

uint8_t* RamImage::PageBuffer(uint32_t block, uint64_t offset) {
  if (block >= blocks_.size() || offset % kPageSize != 0 || offset >= blocks_[block].size_bytes) return nullptr;
  if (read_only_[block]) return nullptr;
  return bases_[block] + offset;
}

const uint8_t* RamImage::Page(uint32_t block, uint64_t offset) const {
  if (block >= blocks_.size() || offset % kPageSize != 0 || offset >= blocks_[block].size_bytes) return nullptr;
  return bases_[block] + offset;
}

bool RamImage::FilledPage(uint32_t block, uint64_t offset, uint8_t fill) {
  uint8_t* page = PageBuffer(block, offset);
  if (page == nullptr) return false;
  memset(page, fill, kPageSize);
  return true;
}

Status RamImage::Apply(const Epoch& epoch, int threads) {
  const std::span<const PageRecord> pages = epoch.pages();
  for (const PageRecord& page : pages) {
    if (page.block >= blocks_.size() || page.offset % kPageSize != 0 ||
        page.offset >= blocks_[page.block].size_bytes) {
      return Status::Corruption("epoch " + std::to_string(epoch.number()) + ": page outside RAM block " +
                                std::to_string(page.block));
    }
    if (read_only_[page.block]) {
      return Status::InvalidArgument("epoch " + std::to_string(epoch.number()) + ": RAM block " +
                                     blocks_[page.block].name + " is a read-only view");
    }
    if (page.patch_size > 0) {
      TANDEM_RETURN_IF_ERROR(CheckSparsePatch(epoch.PageData(page), page.patch_size)
                                 .WithContext("epoch " + std::to_string(epoch.number())));
    }
  }
  // Thread `share` of `shares` applies the pages in its 2 MiB stripes of guest memory, in epoch order: a page
  // listed twice is applied twice by the same thread, so the later entry wins on any number of threads.
  auto apply_share = [&](unsigned share, unsigned shares) {
    for (const PageRecord& page : pages) {
      if (shares > 1 && ((page.offset >> 21) + page.block) % shares != share) continue;
      uint8_t* dst = bases_[page.block] + page.offset;
      if (page.filled) {
        memset(dst, page.fill, kPageSize);
      } else if (page.patch_size > 0) {
        ApplySparsePatch(epoch.PageData(page), page.patch_size, dst);
      } else {
        StreamPage(dst, epoch.PageData(page));
      }
    }
    StreamFence();
  };
  if (threads <= 1 || epoch.page_bytes() < kParallelApplyMinBytes) {
    apply_share(0, 1);
    return Status::Ok();
  }
  // A thread that cannot be started leaves its share to the calling thread.
  const unsigned shares = unsigned(threads);
  std::vector<std::thread> helpers;
  std::vector<unsigned> unstarted;
  for (unsigned share = 1; share < shares; ++share) {
    try {
      helpers.emplace_back(apply_share, share, shares);
    } catch (const std::system_error&) {
      unstarted.push_back(share);
    }
  }
  apply_share(0, shares);
  for (unsigned share : unstarted) apply_share(share, shares);
  for (std::thread& t : helpers) t.join();
  return Status::Ok();
}

}  // namespace tandem::replicator
