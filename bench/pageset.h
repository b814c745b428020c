// A reference set of pages for benchmarks: pages a real guest changed between two RAM snapshots taken some
// tens of ms apart, each with its previous version (what the standby would hold).
//
// File (zstd-compressed as a whole, bench/data/*.pageset.zst):
//   "TPGSET01"  u32 page_size (4096)  u32 count  u64 guest_ram_bytes  u32 interval_ms  u32 snapshot_pairs
//   count x { u64 offset_in_ram, u8 old[page_size], u8 new[page_size] }            (little-endian)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace tandem::bench {

struct PageSet {
  uint64_t guest_ram_bytes = 0;
  uint32_t interval_ms = 0;
  uint32_t snapshot_pairs = 0;
  std::vector<uint64_t> offsets;
  std::vector<uint8_t> old_pages;  // count * 4096
  std::vector<uint8_t> new_pages;  // count * 4096
  size_t count() const { return offsets.size(); }
};

Status SavePageSet(const PageSet& set, const std::string& path);
Result<PageSet> LoadPageSet(const std::string& path);

// The page set a benchmark runs on: $TANDEM_PAGESET, else `default_path`; loaded once per process. Several files
// separated by ':' are concatenated (the workloads side by side). Exits with a message if one cannot be read (a
// benchmark without its data has nothing to measure).
const PageSet& BenchPageSet(const char* default_path);

}  // namespace tandem::bench
