// Epoch data-path throughput on a real guest's page set, each beside memcpy of the same bytes in the same run.
//   TANDEM_PAGESET=<file.pageset.zst>[:<more>...] (default: bench/data/linux-workload.pageset.zst)
// Counters: bytes_per_second (of raw page bytes), pages (in the set), wire_ratio (the epoch as sent: records, page
// entries, checksums, and in BM_EncodeShip the link's tags / raw bytes).
#include <benchmark/benchmark.h>
#include <xxhash.h>
#include <xxh_x86dispatch.h>  // XXH3 on AVX2/AVX-512 when the CPU has them: see messages.cc

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "bench/counting_sink.h"
#include "bench/pageset.h"
#include "replicator/epoch_codec.h"
#include "replicator/link_security.h"
#include "replicator/messages.h"
#include "replicator/page_codec.h"
#include "replicator/transport.h"

namespace tandem::bench {
namespace {

using replicator::Compression;
using replicator::kPageSize;

const PageSet& Set() { return BenchPageSet(TANDEM_DEFAULT_PAGESET); }

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

std::unique_ptr<replicator::RamImage> ImageOf(const uint8_t* pages, size_t bytes) {
  replicator::VmDescriptor d;
  d.vm_name = "bench";
  d.ram_blocks = {{"mem", bytes}};
  auto image = std::move(replicator::RamImage::Create(d, {})).value();
  memcpy(image->Block(0).data(), pages, bytes);
  return image;
}

// The epoch that rewrites every page of the set with `pages`.
void FillEpoch(const uint8_t* pages, size_t bytes, replicator::Epoch* epoch) {
  epoch->Reset(2, false);
  for (size_t at = 0; at < bytes; at += kPageSize) memcpy(epoch->PageBuffer(0, at), pages + at, kPageSize);
}

// Arguments {codec, delta, accel}: the page codec options a row runs with (accel: LZ4 acceleration).
replicator::PageCodecOptions Codec(const benchmark::State& state) {
  replicator::PageCodecOptions codec;
  codec.compression = static_cast<Compression>(state.range(0));
  codec.xor_delta = state.range(1) != 0;
  codec.lz4_acceleration = int(state.range(2));
  return codec;
}

// Per cold tile: the standby's copy (old pages) and the epoch of new pages, made once for every encode row.
struct TiledEpochs {
  std::vector<std::unique_ptr<replicator::RamImage>> bases;
  std::vector<std::unique_ptr<replicator::Epoch>> epochs;
};
const TiledEpochs& TileEpochs() {
  static const TiledEpochs tiled = [] {
    const Tiles& t = Cold();
    TiledEpochs e;
    for (size_t i = 0; i < t.count; ++i) {
      e.bases.push_back(ImageOf(t.Old(i, 0), t.tile_bytes));
      e.epochs.push_back(std::make_unique<replicator::Epoch>());
      FillEpoch(t.New(i, 0), t.tile_bytes, e.epochs.back().get());
    }
    return e;
  }();
  return tiled;
}

// Encode = what the primary does, through its real code (EpochEncoder on one thread): per page choose the
// encoding, compress, hash the final content; frame the records and checksum them. Each cold tile is an epoch
// of new pages and the standby's copy (old pages) of its own.
void BM_Encode(benchmark::State& state) {
  const Tiles& t = Cold();
  const replicator::PageCodecOptions codec = Codec(state);
  const bool delta = codec.xor_delta;
  const auto& [bases, epochs] = TileEpochs();
  replicator::EpochEncoder encoder(codec);
  CountingSink sink;
  size_t tile = 0;
  for (auto _ : state) {
    sink.bytes = 0;
    if (Status st = encoder.EncodeEpoch(*epochs[tile], 1, delta ? bases[tile].get() : nullptr, &sink); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
    tile = (tile + 1) % t.count;
  }
  SetBytes(state);
  state.counters["wire_ratio"] = double(sink.bytes) / double(t.tile_bytes);
}

// The link with nothing behind it: what a socket would take, dropped at once (an infinitely fast network).
class NullTransport final : public replicator::Transport {
 public:
  Status Send(std::span<const iovec> iov, int) override {
    for (const iovec& v : iov) bytes += v.iov_len;
    return Status::Ok();
  }
  Status Recv(void*, size_t, int) override { return Status::Unsupported("write-only"); }
  Status WaitReadable(int) override { return Status::Ok(); }
  void Shutdown() override {}
  const char* engine_name() const override { return "null"; }
  uint64_t bytes = 0;
};

// Argument {link}: 0 plain records (no link security: what protocol version 2 sent), else the LinkEncryption
// (1 none = HMAC-SHA256 tags, 2 aes-gcm).
std::unique_ptr<replicator::RecordCipher> LinkCipher(int64_t link) {
  if (link == 0) return nullptr;
  replicator::LinkKey key{};
  key[0] = 1;
  return std::move(replicator::RecordCipher::Create(static_cast<replicator::LinkEncryption>(link), key)).value();
}

// Encode + ship = BM_Encode's EpochEncoder writing into the primary's real TransportSink, which seals every record
// (HMAC tag, or AES-256-GCM into its buffer) before the send; the transport drops the bytes. Arguments {link, accel}:
// LZ4 with delta at that acceleration (1: the link is the bottleneck; 512: auto's lightest step, the encoder is).
void BM_EncodeShip(benchmark::State& state) {
  const Tiles& t = Cold();
  replicator::PageCodecOptions codec;
  codec.compression = Compression::kLz4;
  codec.xor_delta = true;
  codec.lz4_acceleration = int(state.range(1));
  const auto& [bases, epochs] = TileEpochs();
  replicator::EpochEncoder encoder(codec);
  const auto cipher = LinkCipher(state.range(0));
  NullTransport transport;
  replicator::TransportSink sink(&transport, 1000, cipher.get());
  size_t tile = 0;
  for (auto _ : state) {
    if (Status st = encoder.EncodeEpoch(*epochs[tile], 1, bases[tile].get(), &sink); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
    tile = (tile + 1) % t.count;
  }
  SetBytes(state);
  state.counters["wire_ratio"] = double(transport.bytes) / double(t.tile_bytes) / double(state.iterations());
}

// Sealing alone, on 1 MiB PAGES records (about a full record of 256 raw pages), bytes of record per second.
void BM_Seal(benchmark::State& state) {
  std::vector<uint8_t> record;
  replicator::AppendRecord(replicator::RecordType::kPages, std::vector<uint8_t>(1 << 20, 0x5a), &record);
  const auto cipher = LinkCipher(state.range(0));
  std::vector<uint8_t> out(record.size());
  uint8_t tag[replicator::kRecordTagSize];
  for (auto _ : state) {
    if (!cipher->Seal(record, out.data(), tag).ok()) std::abort();
    benchmark::DoNotOptimize(tag);
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(record.size()));
}

// Decode + verify + apply = what the standby does, through its real code: the page set encoded as one epoch
// (EpochEncoder, against the old pages), read record by record (RecordReader: framing and record checksums),
// decoded into staging by EpochDecoder (page hashes, totals), then RamImage::Apply onto a replica holding the
// old pages. Each cold tile is a replica of its own; tiles alternate between old and new content, so every pass
// applies old->new or new->old without re-priming (and so re-caching) them between iterations.
class SpanTransport final : public replicator::Transport {
 public:
  void Reset(std::span<const uint8_t> bytes) { bytes_ = bytes, at_ = 0; }
  Status Send(std::span<const iovec>, int) override { return Status::Unsupported("read-only"); }
  Status Recv(void* buf, size_t len, int) override {
    if (bytes_.size() - at_ < len) return Status::Closed("end of stream");
    memcpy(buf, bytes_.data() + at_, len);
    at_ += len;
    return Status::Ok();
  }
  Status WaitReadable(int) override { return Status::Ok(); }
  void Shutdown() override {}
  const char* engine_name() const override { return "memory"; }

 private:
  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
};

// The epoch that turns `from` into `to` (every page of the set), as the primary would send it.
std::vector<uint8_t> EncodeEpochStream(const replicator::PageCodecOptions& codec, const std::vector<uint8_t>& from,
                                       const std::vector<uint8_t>& to) {
  replicator::Epoch epoch;
  FillEpoch(to.data(), to.size(), &epoch);
  replicator::EpochEncoder encoder(codec);
  replicator::BufferSink sink;
  const auto base = ImageOf(from.data(), from.size());
  if (!encoder.EncodeEpoch(epoch, 1, codec.xor_delta ? base.get() : nullptr, &sink).ok()) std::abort();
  return sink.bytes;
}

Status DecodeAndApply(replicator::RecordReader& reader, replicator::EpochDecoder& decoder,
                      replicator::RamImage* replica) {
  replicator::RecordView record;
  TANDEM_RETURN_IF_ERROR(reader.Next(-1, -1, &record));
  replicator::EpochBeginMessage begin;
  TANDEM_RETURN_IF_ERROR(replicator::ParseEpochBegin(record.payload, &begin));
  decoder.Begin(begin, record, replica);
  for (;;) {
    TANDEM_RETURN_IF_ERROR(reader.Next(-1, -1, &record));
    if (record.type == uint32_t(replicator::RecordType::kEpochEnd)) break;
    TANDEM_RETURN_IF_ERROR(decoder.Add(record));
  }
  TANDEM_RETURN_IF_ERROR(decoder.End(record));
  Status st = replica->Apply(decoder.staged(), 1);
  decoder.Discard();
  return st;
}

void BM_DecodeVerifyApply(benchmark::State& state) {
  const PageSet& s = Set();
  const Tiles& t = Cold();
  const replicator::PageCodecOptions codec = Codec(state);
  const std::vector<uint8_t> forward = EncodeEpochStream(codec, s.old_pages, s.new_pages);
  const std::vector<uint8_t> backward = EncodeEpochStream(codec, s.new_pages, s.old_pages);
  std::vector<std::unique_ptr<replicator::RamImage>> replicas;
  for (size_t i = 0; i < t.count; ++i) replicas.push_back(ImageOf(s.old_pages.data(), s.old_pages.size()));
  std::vector<bool> holds_new(t.count, false);
  SpanTransport transport;
  replicator::RecordReader reader(&transport);
  replicator::EpochDecoder decoder;
  size_t tile = 0;
  for (auto _ : state) {
    transport.Reset(holds_new[tile] ? backward : forward);
    if (Status st = DecodeAndApply(reader, decoder, replicas[tile].get()); !st.ok()) {
      state.SkipWithError(st.ToString().c_str());
      return;
    }
    holds_new[tile] = !holds_new[tile];
    tile = (tile + 1) % t.count;
  }
  SetBytes(state);
  state.counters["wire_ratio"] = double(forward.size()) / double(s.new_pages.size());
}

BENCHMARK(BM_MemcpyHot);
BENCHMARK(BM_Memcpy);
BENCHMARK(BM_Checksum);
// The rungs of CompressionGovernor's ladder (compression = auto), each with delta: zstd, then LZ4 with each
// acceleration.
void Ladder(benchmark::internal::Benchmark* b) {
  b->Args({int(Compression::kZstd), 1, 1});
  for (int acceleration : {1, 4, 16, 64, 256, 512}) b->Args({int(Compression::kLz4), 1, acceleration});
}

BENCHMARK(BM_Encode)
    ->ArgNames({"codec", "delta", "accel"})
    ->Args({int(Compression::kNone), 0, 1})
    ->Args({int(Compression::kLz4), 0, 1})
    ->Apply(Ladder)
    ->UseRealTime();  // one core: scripts/bench pins it; encode_bench shows scaling with threads
BENCHMARK(BM_DecodeVerifyApply)->ArgNames({"codec", "delta", "accel"})->Apply(Ladder);
BENCHMARK(BM_EncodeShip)
    ->ArgNames({"link", "accel"})
    ->ArgsProduct({{0, 1, 2}, {1, 512}})
    ->UseRealTime();
BENCHMARK(BM_Seal)->ArgName("link")->Arg(1)->Arg(2);

}  // namespace
}  // namespace tandem::bench

BENCHMARK_MAIN();
