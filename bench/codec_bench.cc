// Epoch data-path throughput on a real guest's page set, each beside memcpy of the same bytes in the same run.
//   TANDEM_PAGESET=<file.pageset.zst> (default: bench/data/linux-workload.pageset.zst)
// Counters: bytes_per_second (of raw page bytes), wire_ratio (encoded bytes / raw bytes).
#include <benchmark/benchmark.h>
#include <xxhash.h>

#include <cstdlib>
#include <cstring>
#include <vector>

#include "bench/pageset.h"
#include "replicator/page_codec.h"

namespace tandem::bench {
namespace {

using replicator::Compression;
using replicator::EncodedPage;
using replicator::kPageSize;

const PageSet& Set() {
  static const PageSet set = [] {
    const char* path = std::getenv("TANDEM_PAGESET");
    auto loaded = LoadPageSet(path ? path : TANDEM_DEFAULT_PAGESET);
    if (!loaded.ok()) {
      fprintf(stderr, "cannot load page set: %s (make one with scripts/capture-pageset)\n",
              loaded.status().ToString().c_str());
      std::exit(1);
    }
    return std::move(loaded).value();
  }();
  return set;
}

struct Encoded {
  std::vector<uint8_t> wire;
  std::vector<EncodedPage> pages;
  std::vector<uint64_t> hashes;  // XXH3 of each page's final content, as the wire carries
};

Encoded EncodeAll(Compression c, bool delta) {
  const PageSet& s = Set();
  replicator::PageEncoder enc({c, 1, delta});
  Encoded e;
  e.wire.resize(s.count() * replicator::kMaxEncodedPage);
  size_t at = 0;
  for (size_t i = 0; i < s.count(); ++i) {
    EncodedPage p = enc.Encode(&s.new_pages[i * kPageSize], delta ? &s.old_pages[i * kPageSize] : nullptr,
                               e.wire.data() + at);
    e.pages.push_back(p);
    e.hashes.push_back(XXH3_64bits(&s.new_pages[i * kPageSize], kPageSize));
    at += p.size;
  }
  e.wire.resize(at);
  return e;
}

void SetBytes(benchmark::State& state) {
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(Set().count() * kPageSize));
}

void BM_Memcpy(benchmark::State& state) {
  const PageSet& s = Set();
  std::vector<uint8_t> dst(s.new_pages.size());
  for (auto _ : state) {
    memcpy(dst.data(), s.new_pages.data(), s.new_pages.size());
    benchmark::ClobberMemory();
  }
  SetBytes(state);
}

void BM_Checksum(benchmark::State& state) {
  const PageSet& s = Set();
  for (auto _ : state) {
    uint64_t acc = 0;
    for (size_t i = 0; i < s.count(); ++i) acc ^= XXH3_64bits(&s.new_pages[i * kPageSize], kPageSize);
    benchmark::DoNotOptimize(acc);
  }
  SetBytes(state);
}

// Encode = what the primary does per page: choose the encoding, compress, and checksum the final content.
void BM_Encode(benchmark::State& state) {
  const PageSet& s = Set();
  const auto c = static_cast<Compression>(state.range(0));
  const bool delta = state.range(1) != 0;
  replicator::PageEncoder enc({c, 1, delta});
  std::vector<uint8_t> wire(s.count() * replicator::kMaxEncodedPage);
  size_t wire_bytes = 0;
  for (auto _ : state) {
    size_t at = 0;
    for (size_t i = 0; i < s.count(); ++i) {
      EncodedPage p = enc.Encode(&s.new_pages[i * kPageSize], delta ? &s.old_pages[i * kPageSize] : nullptr,
                                 wire.data() + at);
      benchmark::DoNotOptimize(XXH3_64bits(&s.new_pages[i * kPageSize], kPageSize));
      at += p.size;
    }
    wire_bytes = at;
  }
  SetBytes(state);
  state.counters["wire_ratio"] = double(wire_bytes) / double(s.count() * kPageSize);
}

// Decode + verify + apply = what the standby does: decode onto its copy, check the final XXH3, store the page.
void BM_DecodeVerifyApply(benchmark::State& state) {
  const PageSet& s = Set();
  const auto c = static_cast<Compression>(state.range(0));
  const bool delta = state.range(1) != 0;
  const Encoded e = EncodeAll(c, delta);
  replicator::PageDecoder dec;
  std::vector<uint8_t> replica = s.old_pages;  // the standby's copy, one slot per page
  alignas(64) uint8_t staged[kPageSize];
  for (auto _ : state) {
    state.PauseTiming();
    memcpy(replica.data(), s.old_pages.data(), replica.size());
    state.ResumeTiming();
    size_t at = 0;
    for (size_t i = 0; i < s.count(); ++i) {
      uint8_t* slot = &replica[i * kPageSize];
      memcpy(staged, slot, kPageSize);  // decode into staging, never into the replica
      if (!dec.Decode(e.pages[i].encoding, e.wire.data() + at, e.pages[i].size, staged).ok() ||
          XXH3_64bits(staged, kPageSize) != e.hashes[i]) {
        state.SkipWithError("decode failed");
        return;
      }
      memcpy(slot, staged, kPageSize);
      at += e.pages[i].size;
    }
  }
  SetBytes(state);
}

BENCHMARK(BM_Memcpy);
BENCHMARK(BM_Checksum);
BENCHMARK(BM_Encode)
    ->ArgNames({"codec", "delta"})
    ->Args({int(Compression::kNone), 0})
    ->Args({int(Compression::kLz4), 0})
    ->Args({int(Compression::kLz4), 1})
    ->Args({int(Compression::kZstd), 1})
    ->ThreadRange(1, 2)
    ->UseRealTime();
BENCHMARK(BM_DecodeVerifyApply)
    ->ArgNames({"codec", "delta"})
    ->Args({int(Compression::kLz4), 1})
    ->Args({int(Compression::kZstd), 1});

}  // namespace
}  // namespace tandem::bench

BENCHMARK_MAIN();
