// The primary's whole encode step (replicator::EpochEncoder: page encodings, page hashes, record framing and
// checksums) on large epochs built from a real guest's page set, on 1 and 2 threads, beside memcpy of the same
// bytes in the same run. The records go to a sink that only counts them: the transport is transport_bench's.
//   TANDEM_PAGESET=<file.pageset.zst>[:<more>...] (default: bench/data/linux-workload.pageset.zst)
//
//   BM_EncodeEpoch/threads:N   delta epochs of kTilesPerEpoch copies of the page set (> kParallelMinPages pages),
//                              each page against its previous version in a base RamImage, as the shipper does
//   BM_EncodeFull/threads:N    a full epoch (resync) of a RamImage made of the page set's pages
//   BM_ApplyFull/threads:N     the standby applying that full epoch to its replica
//   BM_Memcpy                  the same bytes as one delta epoch, copied
//
// As in codec_bench, everything is cold in cache: the page set is tiled over 2 x 256 MiB (old and new versions)
// and every iteration takes the next epoch's tiles, because epoch pages come from guest RAM, not from the LLC.
// Counters: bytes_per_second of raw page bytes, wire_ratio (wire bytes / raw bytes), threads (as used by the
// encoder: 1 means the epoch was too small to split).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "bench/counting_sink.h"
#include "bench/pageset.h"
#include "replicator/epoch_codec.h"

namespace tandem::bench {
namespace {

using replicator::Epoch;
using replicator::EpochEncoder;
using replicator::kPageSize;
using replicator::RamImage;

const PageSet& Set() { return BenchPageSet(TANDEM_DEFAULT_PAGESET); }

constexpr size_t kColdBytes = size_t(256) << 20;  // per version (old, new)

// A guest whose RAM ("mem") holds kTiles copies of the page set's old pages, and epochs that rewrite them with
// the new pages, kTilesPerEpoch copies per epoch, in ascending page order as QEMU's dirty bitmap yields them.
struct World {
  size_t tiles = 0, tiles_per_epoch = 0;
  std::unique_ptr<RamImage> base;
  std::vector<std::unique_ptr<Epoch>> epochs;
  uint64_t epoch_bytes = 0;  // raw page bytes of one epoch
};

const World& TheWorld() {
  static const World world = [] {
    const PageSet& s = Set();
    World w;
    const size_t tile_bytes = s.count() * kPageSize;
    w.tiles_per_epoch = std::max<size_t>(1, (EpochEncoder::kParallelMinPages + s.count() - 1) / s.count() + 1);
    w.tiles = std::max(2 * w.tiles_per_epoch, kColdBytes / tile_bytes / w.tiles_per_epoch * w.tiles_per_epoch);
    replicator::VmDescriptor d;
    d.vm_name = "bench";
    d.ram_blocks = {{"mem", w.tiles * tile_bytes}};
    w.base = std::move(RamImage::Create(d, {})).value();
    for (size_t t = 0; t < w.tiles; ++t) memcpy(w.base->Block(0).data() + t * tile_bytes, s.old_pages.data(), tile_bytes);
    for (size_t first = 0; first < w.tiles; first += w.tiles_per_epoch) {
      auto e = std::make_unique<Epoch>();
      e->Reset(w.epochs.size() + 1, false);
      for (size_t t = first; t < first + w.tiles_per_epoch; ++t) {
        for (size_t i = 0; i < s.count(); ++i) {
          memcpy(e->PageBuffer(0, (t * s.count() + i) * kPageSize), &s.new_pages[i * kPageSize], kPageSize);
        }
      }
      w.epochs.push_back(std::move(e));
    }
    w.epoch_bytes = w.tiles_per_epoch * tile_bytes;
    return w;
  }();
  return world;
}

bool EnoughCpus(benchmark::State& state, int threads) {
  if (threads <= replicator::UsableCpus()) return true;
  char why[160];
  snprintf(why, sizeof(why), "NOT MEASURED: %d threads but only %d CPU(s) usable (taskset?)", threads,
           replicator::UsableCpus());
  fprintf(stderr, "encode_bench: %s\n", why);
  state.SkipWithError(why);
  return false;
}

void BM_EncodeEpoch(benchmark::State& state) {
  const int threads = int(state.range(0));
  if (!EnoughCpus(state, threads)) return;
  const World& w = TheWorld();
  EpochEncoder encoder({replicator::Compression::kLz4, 1, true}, threads);
  CountingSink sink;
  size_t next = 0;
  uint64_t raw = 0;
  for (auto _ : state) {
    const Epoch& e = *w.epochs[next];
    if (Status st = encoder.EncodeEpoch(e, 1, w.base.get(), &sink); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
    raw += w.epoch_bytes;
    next = (next + 1) % w.epochs.size();
  }
  state.SetBytesProcessed(int64_t(raw));
  state.counters["wire_ratio"] = double(sink.bytes) / double(std::max<uint64_t>(1, raw));
  state.counters["threads"] = encoder.last_epoch_stats().threads;
  state.counters["epoch_pages"] = double(w.epochs[0]->pages().size());
}

void BM_EncodeFull(benchmark::State& state) {
  const int threads = int(state.range(0));
  if (!EnoughCpus(state, threads)) return;
  const World& w = TheWorld();
  EpochEncoder encoder({replicator::Compression::kLz4, 1, true}, threads);
  CountingSink sink;
  const uint64_t ram = w.base->blocks()[0].size_bytes;
  for (auto _ : state) {
    if (Status st = encoder.EncodeFull(1, 1, *w.base, {}, &sink); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
  }
  state.SetBytesProcessed(int64_t(state.iterations() * ram));
  state.counters["wire_ratio"] = double(sink.bytes) / double(std::max<uint64_t>(1, state.iterations() * ram));
  state.counters["threads"] = encoder.last_epoch_stats().threads;
}

// The standby's side of a full resync: a full epoch of the base image's RAM applied to a replica, on 1 and 2
// threads (RamImage::Apply splits epochs of kParallelApplyMinBytes or more).
void BM_ApplyFull(benchmark::State& state) {
  const int threads = int(state.range(0));
  if (!EnoughCpus(state, threads)) return;
  const World& w = TheWorld();
  static const std::unique_ptr<Epoch> full = [&w] {
    auto e = std::make_unique<Epoch>();
    e->Reset(1, true);
    const auto ram = w.base->Block(0);
    for (uint64_t at = 0; at < ram.size(); at += kPageSize) memcpy(e->PageBuffer(0, at), ram.data() + at, kPageSize);
    return e;
  }();
  static const std::unique_ptr<RamImage> replica = [&w] {
    replicator::VmDescriptor d;
    d.vm_name = "bench-replica";
    d.ram_blocks = w.base->blocks();
    auto image = std::move(RamImage::Create(d, {})).value();
    // Faulted in before timing: a standby's replica is in place long before a resync, and a first touch of
    // fresh memory costs more than the copy.
    for (uint32_t b = 0; b < image->blocks().size(); ++b) memset(image->Block(b).data(), 0, image->Block(b).size());
    return image;
  }();
  for (auto _ : state) {
    if (Status st = replica->Apply(*full, threads); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
  }
  state.SetBytesProcessed(int64_t(state.iterations() * full->page_bytes()));
}

// memcpy of one delta epoch's page bytes per iteration, walking the epochs like BM_EncodeEpoch.
void BM_Memcpy(benchmark::State& state) {
  const World& w = TheWorld();
  std::vector<uint8_t> dst(w.epochs.size() * w.epoch_bytes);
  size_t next = 0;
  for (auto _ : state) {
    memcpy(&dst[next * w.epoch_bytes], w.epochs[next]->PageData(w.epochs[next]->pages()[0]), w.epoch_bytes);
    benchmark::ClobberMemory();
    next = (next + 1) % w.epochs.size();
  }
  state.SetBytesProcessed(int64_t(state.iterations() * w.epoch_bytes));
}

BENCHMARK(BM_Memcpy)->UseRealTime();
BENCHMARK(BM_EncodeEpoch)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_EncodeFull)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();
BENCHMARK(BM_ApplyFull)->ArgName("threads")->Arg(1)->Arg(2)->UseRealTime();

}  // namespace
}  // namespace tandem::bench

BENCHMARK_MAIN();
