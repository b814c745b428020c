// Epoch data-path throughput on a real guest's page set, each beside memcpy of the same bytes in the same run.
//   TANDEM_PAGESET=<file.pageset.zst>[:<more>...] (default: bench/data/linux-workload.pageset.zst)
// Counters: bytes_per_second (of raw page bytes), wire_ratio (encoded bytes / raw bytes), pages (in the set).
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench/pageset.h"
#include "replicator/page_codec.h"

namespace tandem::bench {
namespace {

using replicator::Compression;
using replicator::EncodedPage;
using replicator::PageEncoding;
using replicator::kPageSize;

const PageSet& Set() { return BenchPageSet(TANDEM_DEFAULT_PAGESET); }

struct Encoded {
  std::vector<uint8_t> wire;
  std::vector<EncodedPage> pages;
  std::vector<uint64_t> hashes;  // XXH3 of each page's final content, as the wire carries
};

// Encodes every page of `pages` against `previous` (the standby's copy).
Encoded EncodeAll(Compression c, bool delta, const std::vector<uint8_t>& pages, const std::vector<uint8_t>& previous) {
  const size_t count = pages.size() / kPageSize;
  replicator::PageEncoder enc({c, 1, delta});
  Encoded e;
  e.wire.resize(count * replicator::kMaxEncodedPage);
  size_t at = 0;
  for (size_t i = 0; i < count; ++i) {
    EncodedPage p = enc.Encode(&pages[i * kPageSize], delta ? &previous[i * kPageSize] : nullptr, e.wire.data() + at);
    e.pages.push_back(p);
    e.hashes.push_back(XXH3_64bits(&pages[i * kPageSize], kPageSize));
    at += p.size;
  }
  e.wire.resize(at);
  return e;
}

void SetBytes(benchmark::State& state) {
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(Set().count() * kPageSize));
  state.counters["pages"] = double(Set().count());
}

// Epoch pages come from guest RAM the CPU has not touched since the guest wrote them, not from a buffer that
// sits in the last-level cache. So every cold benchmark walks `kTiles` copies of the page set (far more than
// the LLC) one copy per iteration, and memcpy is measured the same way; BM_MemcpyHot shows the cached figure
// beside it so the table says which baseline the ratios use.
constexpr size_t kColdBytes = size_t(512) << 20;

struct Tiles {
  size_t count = 0;               // copies of the page set
  std::vector<uint8_t> old_ram;   // count x old pages: the standby's copy
  std::vector<uint8_t> new_ram;   // count x new pages: what the guest wrote
  size_t tile_bytes = 0;
  const uint8_t* Old(size_t tile, size_t page) const { return &old_ram[tile * tile_bytes + page * kPageSize]; }
  const uint8_t* New(size_t tile, size_t page) const { return &new_ram[tile * tile_bytes + page * kPageSize]; }
};

const Tiles& Cold() {
  static const Tiles tiles = [] {
    const PageSet& s = Set();
    Tiles t;
    t.tile_bytes = s.count() * kPageSize;
    t.count = std::max<size_t>(2, kColdBytes / 2 / t.tile_bytes);
    for (size_t i = 0; i < t.count; ++i) {
      t.old_ram.insert(t.old_ram.end(), s.old_pages.begin(), s.old_pages.end());
      t.new_ram.insert(t.new_ram.end(), s.new_pages.begin(), s.new_pages.end());
    }
    return t;
  }();
  return tiles;
}

void BM_MemcpyHot(benchmark::State& state) {
  const PageSet& s = Set();
  std::vector<uint8_t> dst(s.new_pages.size());
  for (auto _ : state) {
    memcpy(dst.data(), s.new_pages.data(), s.new_pages.size());
    benchmark::ClobberMemory();
  }
  SetBytes(state);
}

void BM_Memcpy(benchmark::State& state) {
  const Tiles& t = Cold();
  std::vector<uint8_t> dst(t.new_ram.size());
  size_t tile = 0;
  for (auto _ : state) {
    memcpy(&dst[tile * t.tile_bytes], t.New(tile, 0), t.tile_bytes);
    benchmark::ClobberMemory();
    tile = (tile + 1) % t.count;
  }
  SetBytes(state);
}

void BM_Checksum(benchmark::State& state) {
  const Tiles& t = Cold();
  const size_t pages = Set().count();
  size_t tile = 0;
  for (auto _ : state) {
    uint64_t acc = 0;
    for (size_t i = 0; i < pages; ++i) acc ^= XXH3_64bits(t.New(tile, i), kPageSize);
    benchmark::DoNotOptimize(acc);
    tile = (tile + 1) % t.count;
  }
  SetBytes(state);
}

// Encode = what the primary does per page: choose the encoding, compress, and checksum the final content.
void BM_Encode(benchmark::State& state) {
  const Tiles& t = Cold();
  const size_t pages = Set().count();
  const auto c = static_cast<Compression>(state.range(0));
  const bool delta = state.range(1) != 0;
  replicator::PageEncoder enc({c, 1, delta});
  std::vector<uint8_t> wire(pages * replicator::kMaxEncodedPage);
  size_t wire_bytes = 0;
  size_t tile = size_t(state.thread_index()) % t.count;
  for (auto _ : state) {
    size_t at = 0;
    for (size_t i = 0; i < pages; ++i) {
      EncodedPage p = enc.Encode(t.New(tile, i), delta ? t.Old(tile, i) : nullptr, wire.data() + at);
      benchmark::DoNotOptimize(XXH3_64bits(t.New(tile, i), kPageSize));
      at += p.size;
    }
    wire_bytes = at;
    tile = (tile + size_t(state.threads())) % t.count;
  }
  SetBytes(state);
  if (state.thread_index() == 0) {
    state.counters["wire_ratio"] = double(wire_bytes) / double(pages * kPageSize);
  }
}

// Decode + verify + apply = what the standby does: decode onto its copy (in staging), check the final XXH3,
// store the page into the replica. The replica copies alternate between old and new content, so each pass
// applies old->new or new->old without re-priming (and so re-caching) them between iterations.
void BM_DecodeVerifyApply(benchmark::State& state) {
  const PageSet& s = Set();
  const Tiles& t = Cold();
  const auto c = static_cast<Compression>(state.range(0));
  const bool delta = state.range(1) != 0;
  const Encoded forward = EncodeAll(c, delta, s.new_pages, s.old_pages);
  const Encoded backward = EncodeAll(c, delta, s.old_pages, s.new_pages);
  replicator::PageDecoder dec;
  std::vector<uint8_t> replica = t.old_ram;
  std::vector<bool> holds_new(t.count, false);
  alignas(64) uint8_t staged[kPageSize];
  size_t tile = 0;
  for (auto _ : state) {
    const Encoded& e = holds_new[tile] ? backward : forward;
    size_t at = 0;
    for (size_t i = 0; i < s.count(); ++i) {
      uint8_t* slot = &replica[tile * t.tile_bytes + i * kPageSize];
      // Decode into staging, never into the replica, as EpochDecoder does.
      if (!dec.Decode(e.pages[i].encoding, e.wire.data() + at, e.pages[i].size, slot, staged).ok() ||
          XXH3_64bits(staged, kPageSize) != e.hashes[i]) {
        state.SkipWithError("decode failed");
        return;
      }
      replicator::CopyPage(slot, staged);  // as RamImage::Apply does
      at += e.pages[i].size;
    }
    holds_new[tile] = !holds_new[tile];
    tile = (tile + 1) % t.count;
  }
  SetBytes(state);
}

BENCHMARK(BM_MemcpyHot);
BENCHMARK(BM_Memcpy);
BENCHMARK(BM_Checksum);
BENCHMARK(BM_Encode)
    ->ArgNames({"codec", "delta"})
    ->Args({int(Compression::kNone), 0})
    ->Args({int(Compression::kLz4), 0})
    ->Args({int(Compression::kLz4), 1})
    ->Args({int(Compression::kZstd), 1})
    ->UseRealTime();  // one core: scripts/bench pins it; encode_bench shows scaling with threads
BENCHMARK(BM_DecodeVerifyApply)
    ->ArgNames({"codec", "delta"})
    ->Args({int(Compression::kLz4), 1})
    ->Args({int(Compression::kZstd), 1});

}  // namespace
}  // namespace tandem::bench

BENCHMARK_MAIN();
