// What a bounded delta base (DeltaBase) costs on the wire against today's full mirror, on the captured page
// sets. Each set holds `snapshot_pairs` pairs of (old, new) pages of a guest 40 ms apart, the pairs ~700 ms
// apart, stored pair after pair (bench/capture_pageset.cc). Shipping the pairs in order:
//   mirror      every page encoded against its `old` (the mirror knows the standby's copy of every page);
//   cache:1/N   a DeltaBase of guest RAM / N: a page shipped in an earlier pair and still cached is encoded
//               against its `old` (the standby's copy, which the cache holds), any other page standalone. The
//               first pair starts cold. This counts as hits only pages seen in an earlier 40 ms window, not the
//               ones the guest dirtied in the unobserved 700 ms between windows: a lower bound on the hit rate.
//   +churn      the same, with every gap also recording 17x the pair's pages of pages never seen again (every
//               40 ms of the gap dirtying only new pages): the pessimistic bound on eviction pressure.
//   none        every page standalone (no base at all).
// Wire bytes are page entries plus PAGES record framing plus EPOCH_BEGIN/END per pair, i.e. what EpochEncoder
// writes for those pages. Counters: wire_ratio (all pairs), warm_wire_ratio (pairs 2..n), vs_mirror (wire
// bytes / the mirror's, same pairs: the goal is <= 1.10), warm_vs_mirror, hit_rate, warm_hit_rate;
// bytes_per_second is encode speed over the raw page bytes (pages hot in cache: compare rows, not memcpy).
//   TANDEM_PAGESET=<a.pageset.zst>[:<b>...] (default: every set in bench/data), one row group per set.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "bench/pageset.h"
#include "replicator/delta_base.h"
#include "replicator/format.h"
#include "replicator/page_codec.h"
#include "replicator/page_fingerprints.h"

namespace tandem::bench {
namespace {

using replicator::Compression;
using replicator::DeltaBase;
using replicator::kPageSize;

constexpr uint64_t kChurnFactor = 17;  // 700 ms gap / 40 ms window

struct Pairs {
  std::string name;
  PageSet set;
  std::vector<size_t> starts;  // first page of each pair, then count()
};

// A pair's pages are in RAM order (the capture scans RAM), so a pair starts where the offset stops growing.
Pairs Split(std::string name, PageSet set) {
  Pairs p{std::move(name), std::move(set), {}};
  for (size_t i = 0; i < p.set.count(); ++i) {
    if (i == 0 || p.set.offsets[i] <= p.set.offsets[i - 1]) p.starts.push_back(i);
  }
  p.starts.push_back(p.set.count());
  return p;
}

struct Mode {
  const char* name;
  int denominator;  // > 0: cache of guest RAM / denominator; 0: the mirror; -1: no base
  bool churn;
  bool fingerprints = false;  // a miss may go as its changed chunks (PageFingerprints, EncodeWithoutBase)
};

struct Tally {
  uint64_t raw = 0, wire = 0, warm_raw = 0, warm_wire = 0, pages = 0, hits = 0, warm_pages = 0, warm_hits = 0;
};

uint64_t FramingBytes(uint64_t pages) {
  const uint64_t records = (pages + replicator::kMaxPagesPerRecord - 1) / replicator::kMaxPagesPerRecord;
  return records * (replicator::kRecordHeaderSize + replicator::kPagesHeaderSize) +
         2 * replicator::kRecordHeaderSize + replicator::kEpochBeginSize + replicator::kEpochEndSize;
}

// Ships every pair in order; `cache` null: the mirror (denominator 0) or no base (-1).
Tally Ship(const Pairs& p, const Mode& mode, DeltaBase* cache, replicator::PageFingerprints* fingerprints,
           replicator::PageEncoder& encoder, uint8_t* out, uint8_t* scratch, const uint8_t* filler) {
  Tally t;
  uint64_t next_filler = uint64_t{1} << 32;  // page numbers no guest page has
  for (size_t pair = 0; pair + 1 < p.starts.size(); ++pair) {
    uint64_t wire = 0, hits = 0;
    const size_t first = p.starts[pair], end = p.starts[pair + 1];

    for (size_t i = first; i < end; ++i) {
      const uint8_t* old_page = &p.set.old_pages[i * kPageSize];
      const uint8_t* new_page = &p.set.new_pages[i * kPageSize];
      const uint8_t* base = mode.denominator == 0 ? old_page : nullptr;
      if (cache != nullptr && cache->Lookup(0, p.set.offsets[i]) != nullptr) base = old_page;
      hits += base != nullptr;
      uint32_t size = 0;
      if (base != nullptr) {
        size = encoder.Encode(new_page, base, out).size;
      } else {
        // The standby holds `old`, and the fingerprints of a page not cached are its copy's. The shipper records
        // them when DeltaBase evicts the page (about once per miss once the cache is full): counted here.
        if (fingerprints != nullptr) fingerprints->Record(0, p.set.offsets[i], old_page);
        size = replicator::EncodeWithoutBase(encoder, fingerprints, 0, p.set.offsets[i], new_page, out, scratch).size;
      }
      wire += replicator::kPageEntryHeaderSize + size;
    }
    wire += FramingBytes(end - first);
    if (cache != nullptr) {
      for (size_t i = first; i < end; ++i) cache->Update(0, p.set.offsets[i], &p.set.new_pages[i * kPageSize]);
      if (mode.churn) {
        for (uint64_t n = 0; n < kChurnFactor * (end - first); ++n) cache->Update(0, next_filler++ * kPageSize, filler);
      }
    }
    const uint64_t raw = (end - first) * kPageSize;
    t.raw += raw, t.wire += wire, t.pages += end - first, t.hits += hits;
    if (pair > 0) t.warm_raw += raw, t.warm_wire += wire, t.warm_pages += end - first, t.warm_hits += hits;
  }
  return t;
}

replicator::PageCodecOptions Codec(int compression, int acceleration) {
  replicator::PageCodecOptions codec;
  codec.compression = static_cast<Compression>(compression);
  codec.lz4_acceleration = acceleration;
  return codec;
}

void Run(benchmark::State& state, const Pairs* p, Mode mode, replicator::PageCodecOptions codec) {
  std::unique_ptr<DeltaBase> cache;
  if (mode.denominator > 0) cache = std::make_unique<DeltaBase>(p->set.guest_ram_bytes / uint64_t(mode.denominator));
  std::unique_ptr<replicator::PageFingerprints> fingerprints;
  if (mode.fingerprints) {
    fingerprints = std::move(replicator::PageFingerprints::Create({{"mem", p->set.guest_ram_bytes}})).value();
  }
  replicator::PageEncoder encoder(codec);
  std::vector<uint8_t> out(replicator::kMaxEncodedPage), scratch(replicator::kMaxEncodedPage), filler(kPageSize, 0x5c);
  replicator::PageEncoder mirror_encoder(codec);
  const Tally mirror =
      Ship(*p, {"mirror", 0, false}, nullptr, nullptr, mirror_encoder, out.data(), scratch.data(), filler.data());
  auto ship = [&] {
    if (cache != nullptr) cache->Clear();
    if (fingerprints != nullptr) fingerprints->ForgetAll();
    return Ship(*p, mode, cache.get(), fingerprints.get(), encoder, out.data(), scratch.data(), filler.data());
  };
  Tally t = ship();  // touches the cache's and the fingerprints' memory once, outside the timing
  for (auto _ : state) t = ship();
  state.SetBytesProcessed(int64_t(state.iterations() * t.raw));
  state.counters["pages"] = double(t.pages);
  // Bytes, for totals over several sets.
  state.counters["raw"] = double(t.raw);
  state.counters["wire"] = double(t.wire);
  state.counters["warm_raw"] = double(t.warm_raw);
  state.counters["warm_wire"] = double(t.warm_wire);
  state.counters["mirror_wire"] = double(mirror.wire);
  state.counters["mirror_warm_wire"] = double(mirror.warm_wire);
  state.counters["wire_ratio"] = double(t.wire) / double(t.raw);
  state.counters["warm_wire_ratio"] = double(t.warm_wire) / double(t.warm_raw);
  state.counters["vs_mirror"] = double(t.wire) / double(mirror.wire);
  state.counters["warm_vs_mirror"] = double(t.warm_wire) / double(mirror.warm_wire);
  state.counters["hit_rate"] = double(t.hits) / double(t.pages);
  state.counters["warm_hit_rate"] = double(t.warm_hits) / double(t.warm_pages);
  double mib = cache != nullptr ? double(cache->memory_bytes()) : 0;
  if (fingerprints != nullptr) mib += double(fingerprints->memory_bytes());
  state.counters["base_mib"] = mib / 1048576.0;
}

// The primary's memory per guest size, from the structures' real sizes: today QEMU's RAM + the mirror +
// page_epochs_ (8 bytes a page, kept either way), vs QEMU's RAM + DeltaBase (default budget) + PageFingerprints
// + page_epochs_ + GuestRam's copies of the small blocks (ROMs, ACPI tables: a few MiB on q35; 4 MiB assumed).
void PrintMemory() {
  printf("primary host memory in MiB (x guest RAM), default budget: mirror today vs DeltaBase + PageFingerprints\n");
  printf("%6s %10s %10s %10s %10s %10s %16s %16s\n", "guest", "mirror", "cache", "fingerpr.", "epochs", "small",
         "today", "bounded");
  for (uint64_t gib : {1, 2, 4, 16}) {
    const uint64_t ram = gib << 30;
    const DeltaBase cache(replicator::DefaultDeltaBaseBudget(ram));
    auto fingerprints = replicator::PageFingerprints::Create({{"mem", ram}});
    if (!fingerprints.ok()) std::exit(1);
    const double mib = 1048576.0, ram_mib = double(ram) / mib;
    const double epochs = double(ram / kPageSize * sizeof(uint64_t)) / mib, small = 4;
    const double cache_mib = double(cache.memory_bytes()) / mib, fp = double((*fingerprints)->memory_bytes()) / mib;
    const double today = 2 * ram_mib + epochs, bounded = ram_mib + cache_mib + fp + epochs + small;
    printf("%3" PRIu64 "GiB %10.0f %10.1f %10.1f %10.1f %10.1f %9.0f (%.3f) %9.0f (%.3f)\n", gib, ram_mib, cache_mib, fp,
           epochs, small, today, today / ram_mib, bounded, bounded / ram_mib);
  }
  fflush(stdout);
}

}  // namespace
}  // namespace tandem::bench

int main(int argc, char** argv) {
  using namespace tandem::bench;
  std::vector<std::string> files;
  if (const char* env = std::getenv("TANDEM_PAGESET")) {
    for (std::string s = env; !s.empty();) {
      const size_t colon = s.find(':');
      files.push_back(s.substr(0, colon));
      s = colon == std::string::npos ? "" : s.substr(colon + 1);
    }
  } else {
    for (const auto& entry : std::filesystem::directory_iterator(TANDEM_PAGESET_DIR)) {
      if (entry.path().string().ends_with(".pageset.zst")) files.push_back(entry.path().string());
    }
    std::sort(files.begin(), files.end());
  }
  static std::vector<std::unique_ptr<Pairs>> sets;
  for (const std::string& file : files) {
    auto loaded = LoadPageSet(file);
    if (!loaded.ok()) {
      fprintf(stderr, "cannot load page set %s: %s\n", file.c_str(), loaded.status().ToString().c_str());
      return 1;
    }
    std::string name = std::filesystem::path(file).filename().string();
    name = name.substr(0, name.find('.'));
    sets.push_back(std::make_unique<Pairs>(Split(name, std::move(loaded).value())));
  }
  const Mode modes[] = {{"mirror", 0, false},        {"none", -1, false},         {"cache:1/64", 64, false},
                        {"cache:1/16", 16, false},   {"cache:1/8", 8, false},     {"cache:1/4", 4, false},
                        {"cache:1/64+churn", 64, true}, {"cache:1/16+churn", 16, true}, {"cache:1/8+churn", 8, true},
                        {"cache:1/4+churn", 4, true},
                        {"fp", -1, false, true},     {"cache:1/64+fp", 64, false, true},
                        {"cache:1/16+fp", 16, false, true}, {"cache:1/8+fp", 8, false, true},
                        {"cache:1/16+fp+churn", 16, true, true}, {"cache:1/8+fp+churn", 8, true, true}};
  const struct {
    const char* name;
    int compression, acceleration;
  } codecs[] = {{"lz4:1", int(Compression::kLz4), 1}, {"lz4:512", int(Compression::kLz4), 512},
                {"zstd", int(Compression::kZstd), 1}};
  for (const auto& set : sets) {
    for (const auto& codec : codecs) {
      for (const Mode& mode : modes) {
        const std::string name = "BM_Ship/" + set->name + "/" + codec.name + "/" + mode.name;
        benchmark::RegisterBenchmark(name.c_str(), Run, set.get(), mode, Codec(codec.compression, codec.acceleration));
      }
    }
  }
  PrintMemory();
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
