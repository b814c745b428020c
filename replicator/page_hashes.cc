#include "replicator/page_hashes.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <functional>
#include <system_error>
#include <thread>

#include "replicator/epoch_codec.h"
#include "replicator/format.h"
#include "replicator/guest_ram.h"
#include "replicator/messages.h"
#include "replicator/page_codec.h"
#include "replicator/page_fingerprints.h"

namespace tandem::replicator {
namespace {

// Work is cut into runs of this many pages (64 MiB) that threads take in turn: small enough to balance, large
// enough that taking one costs nothing.
constexpr uint64_t kRunPages = 16384;

struct Run {
  uint32_t block;
  uint64_t first_page, pages;
};

std::vector<Run> RunsOf(const std::vector<RamBlockInfo>& blocks) {
  std::vector<Run> runs;
  for (uint32_t b = 0; b < blocks.size(); ++b) {
    const uint64_t pages = blocks[b].size_bytes / kPageSize;
    for (uint64_t first = 0; first < pages; first += kRunPages) {
      runs.push_back({b, first, std::min(kRunPages, pages - first)});
    }
  }
  return runs;
}

// Runs `work(run index)` for every run on up to `threads` threads, the calling thread included.
void ForEachRun(size_t runs, int threads, const std::function<void(size_t)>& work) {
  std::atomic<size_t> next{0};
  auto loop = [&] {
    for (size_t i = next++; i < runs; i = next++) work(i);
  };
  const int n = std::clamp(std::min(threads, UsableCpus()), 1, int(std::max<size_t>(1, runs)));
  std::vector<std::thread> helpers;
  for (int t = 1; t < n; ++t) {
    try {
      helpers.emplace_back(loop);
    } catch (const std::system_error&) {
      break;  // the threads that did start, and this one, do the rest
    }
  }
  loop();
  for (std::thread& t : helpers) t.join();
}

}  // namespace

std::vector<FileHoles> HolesOfFiles(const std::vector<RamBlockInfo>& blocks,
                                    const std::map<std::string, std::string>& files) {
  std::vector<FileHoles> holes;
  for (const RamBlockInfo& b : blocks) {
    auto it = files.find(b.name);
    const UniqueFd fd(it == files.end() ? -1 : ::open(it->second.c_str(), O_RDONLY | O_CLOEXEC));
    holes.push_back(FileHoles::Of(fd.get(), b.size_bytes));
  }
  return holes;
}

Status HashReplicaPages(const RamImage& image, const std::map<std::string, std::string>& files, int threads,
                        PageHashList* out) {
  const std::vector<RamBlockInfo>& blocks = image.blocks();
  out->assign(blocks.size(), {});
  for (size_t b = 0; b < blocks.size(); ++b) (*out)[b].resize(blocks[b].size_bytes / kPageSize);
  const std::vector<FileHoles> holes = HolesOfFiles(blocks, files);
  const std::vector<Run> runs = RunsOf(blocks);
  const uint64_t zero = FilledPageHash(0);
  ForEachRun(runs.size(), threads, [&](size_t i) {
    const Run& run = runs[i];
    holes[run.block].Populate(image.Block(run.block).data(), run.first_page * kPageSize,
                              (run.first_page + run.pages) * kPageSize);
    uint64_t* hashes = (*out)[run.block].data();
    for (uint64_t p = run.first_page; p < run.first_page + run.pages; ++p) {
      const uint64_t offset = p * kPageSize;
      hashes[p] = holes[run.block].InHole(offset) ? zero : PageHash(image.Page(run.block, offset));
    }
  });
  return Status::Ok();
}

void AppendPageHashesRecords(const PageHashList& hashes, std::vector<uint8_t>* out) {
  std::vector<uint8_t> payload;
  for (uint32_t b = 0; b < hashes.size(); ++b) {
    const std::vector<uint64_t>& list = hashes[b];
    for (uint64_t first = 0; first < list.size(); first += kMaxPageHashesPerRecord) {
      const uint32_t count = uint32_t(std::min<uint64_t>(kMaxPageHashesPerRecord, list.size() - first));
      payload.resize(kPageHashesHeaderSize + size_t{count} * 8);
      StoreLe32(payload.data(), b);
      StoreLe32(payload.data() + 4, kPageSize);
      StoreLe64(payload.data() + 8, first);
      StoreLe32(payload.data() + 16, count);
      StoreLe32(payload.data() + 20, 0);
      StoreLe64(payload.data() + 24, list.size());
      for (uint32_t i = 0; i < count; ++i) StoreLe64(payload.data() + kPageHashesHeaderSize + i * 8, list[first + i]);
      AppendRecord(RecordType::kPageHashes, payload, out);
    }
  }
}

PageHashesReader::PageHashesReader(const std::vector<RamBlockInfo>& layout) {
  hashes_.resize(layout.size());
  for (size_t b = 0; b < layout.size(); ++b) hashes_[b].reserve(layout[b].size_bytes / kPageSize);
  sizes_.reserve(layout.size());
  for (const RamBlockInfo& b : layout) sizes_.push_back(b.size_bytes / kPageSize);
  Skip();
}

void PageHashesReader::Skip() {
  while (block_ < sizes_.size() && hashes_[block_].size() == sizes_[block_]) block_++;
}

DecodeStatus PageHashesReader::Add(std::span<const uint8_t> payload) {
  auto bad = [](DecodeError error, const std::string& what) {
    return DecodeStatus::Corrupt(error, "PAGE_HASHES: " + what);
  };
  if (complete()) return bad(DecodeError::kUnexpectedRecord, "a record after every page was covered");
  if (payload.size() < kPageHashesHeaderSize) return bad(DecodeError::kTruncated, "shorter than its header");
  const uint32_t block = LoadLe32(payload.data());
  const uint32_t page_size = LoadLe32(payload.data() + 4);
  const uint64_t first = LoadLe64(payload.data() + 8);
  const uint32_t count = LoadLe32(payload.data() + 16);
  const uint32_t reserved = LoadLe32(payload.data() + 20);
  const uint64_t block_pages = LoadLe64(payload.data() + 24);
  if (page_size != kPageSize) {
    return DecodeStatus(DecodeError::kUnsupported,
                        Status::Unsupported("PAGE_HASHES of " + std::to_string(page_size) + "-byte pages"));
  }
  if (reserved != 0) return bad(DecodeError::kBadField, "reserved bits set");
  std::vector<uint64_t>& list = hashes_[block_];
  if (block != block_ || first != list.size() || block_pages != sizes_[block_]) {
    return bad(DecodeError::kPageOrder, "block " + std::to_string(block) + " (" + std::to_string(block_pages) +
                                            " pages) from page " + std::to_string(first) + ", expected block " +
                                            std::to_string(block_) + " (" + std::to_string(sizes_[block_]) +
                                            " pages) from page " + std::to_string(list.size()));
  }
  if (count == 0 || count > kMaxPageHashesPerRecord || count > block_pages - first) {
    return bad(DecodeError::kBadField, "count " + std::to_string(count) + " at page " + std::to_string(first) +
                                           " of " + std::to_string(block_pages));
  }
  if (payload.size() != kPageHashesHeaderSize + size_t{count} * 8) {
    return bad(payload.size() < kPageHashesHeaderSize + size_t{count} * 8 ? DecodeError::kTruncated
                                                                           : DecodeError::kBadLength,
               std::to_string(payload.size()) + " bytes for " + std::to_string(count) + " hashes");
  }
  for (uint32_t i = 0; i < count; ++i) list.push_back(LoadLe64(payload.data() + kPageHashesHeaderSize + i * 8));
  Skip();
  return DecodeStatus::Ok();
}

Status DifferingPages(const GuestRam& ram, const PageHashList& theirs, PageFingerprints* fingerprints, int threads,
                      std::vector<PageRef>* out) {
  const RamImage& image = ram.image();
  const std::vector<RamBlockInfo>& blocks = image.blocks();
  if (theirs.size() != blocks.size()) return Status::InvalidArgument("page hashes of another RAM layout");
  for (size_t b = 0; b < blocks.size(); ++b) {
    if (theirs[b].size() != blocks[b].size_bytes / kPageSize) {
      return Status::InvalidArgument("page hashes of another RAM layout");
    }
  }
  std::vector<FileHoles> holes;
  for (uint32_t b = 0; b < blocks.size(); ++b) holes.push_back(ram.Holes(b));
  const std::vector<Run> runs = RunsOf(blocks);
  std::vector<std::vector<PageRef>> differing(runs.size());
  const uint64_t zero = FilledPageHash(0);
  ForEachRun(runs.size(), threads, [&](size_t i) {
    const Run& run = runs[i];
    const bool live = ram.live(run.block);
    holes[run.block].Populate(image.Block(run.block).data(), run.first_page * kPageSize,
                              (run.first_page + run.pages) * kPageSize);
    alignas(64) uint8_t copy[kPageSize];
    for (uint64_t p = run.first_page; p < run.first_page + run.pages; ++p) {
      const uint64_t offset = p * kPageSize;
      if (holes[run.block].InHole(offset)) {  // a zero page, not touched
        if (theirs[run.block][p] != zero) {
          differing[i].push_back({run.block, offset});
        } else if (fingerprints != nullptr) {
          fingerprints->RecordFilled(run.block, offset, 0);
        }
        continue;
      }
      const uint8_t* page = image.Page(run.block, offset);
      const uint64_t hash = PageHash(page);
      if (hash != theirs[run.block][p]) {  // sent: the encoder reads it again, once
        differing[i].push_back({run.block, offset});
        continue;
      }
      if (fingerprints == nullptr) continue;
      if (hash == zero) {  // kept as the zero page: no chunks to fingerprint
        fingerprints->RecordFilled(run.block, offset, 0);
        continue;
      }
      if (live) {
        // Kept: its fingerprints must be of exactly the bytes the standby holds, so of a copy whose hash is
        // checked again (the guest may have written the page since; then it is sent instead).
        CopyPage(copy, page);
        if (PageHash(copy) != hash) {
          differing[i].push_back({run.block, offset});
          continue;
        }
        page = copy;
      }
      fingerprints->Record(run.block, offset, page);
    }
  });
  out->clear();
  for (const std::vector<PageRef>& d : differing) out->insert(out->end(), d.begin(), d.end());
  return Status::Ok();
}

}  // namespace tandem::replicator
