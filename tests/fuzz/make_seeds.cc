// Writes each fuzzer's seed corpus from the project's own encoders and its recordings of a real QEMU:
//   tandem-fuzz-seeds <out_dir> <source_dir>
// <out_dir>/heartbeat_message/  valid datagrams (each role), <out_dir>/colo_stream/  the recorded COLO sessions
// (tests/qemu/data/*.bin.zst, decompressed and cut to a bounded size), <out_dir>/disk_writes/  DISK_WRITES
// payloads and a block hash list.
#include <sys/stat.h>
#include <zstd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "disk/block_hash.h"
#include "disk/disk_writes.h"
#include "heartbeat/message.h"
#include "replicator/epoch_codec.h"
#include "replicator/guest_ram.h"
#include "replicator/transport.h"

namespace {

namespace fs = std::filesystem;
using namespace tandem;

bool WriteFile(const fs::path& path, const void* data, size_t size) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), std::streamsize(size));
  return bool(out);
}

int HeartbeatSeeds(const fs::path& dir) {
  fs::create_directories(dir);
  auto key = heartbeat::MacKey::Create("fuzz-key-0123456789abcdef");
  if (!key.ok()) return 1;
  const heartbeat::Role roles[] = {heartbeat::Role::kPrimary, heartbeat::Role::kStandby, heartbeat::Role::kWitness};
  int n = 0;
  for (heartbeat::Role role : roles) {
    heartbeat::Message m;
    m.role = role;
    m.link_index = uint8_t(n % 2);
    (void)m.sender.Set("vm0/primary");
    (void)m.receiver.Set("vm0/standby");
    m.incarnation = 0x1234567 + uint64_t(n);
    m.sequence = uint64_t(n) + 1;
    m.send_ns = 1'000'000'000LL * (n + 1);
    m.echo_ns = n ? 999'000'000LL : 0;
    m.hold_ns = n ? 1000 : 0;
    m.term = 1 + uint64_t(n);
    m.last_epoch = 42;
    uint8_t datagram[heartbeat::kMessageSize];
    if (!heartbeat::EncodeMessage(m, *key, datagram).ok()) return 1;
    if (!WriteFile(dir / ("valid-" + std::to_string(n++)), datagram, sizeof datagram)) return 1;
  }
  return 0;
}

int ColoSeeds(const fs::path& dir, const fs::path& recordings) {
  fs::create_directories(dir);
  constexpr size_t kMaxSeed = 4 << 20;  // a 16 MiB guest's whole session is ~1.5 MiB
  for (const auto& entry : fs::directory_iterator(recordings)) {
    if (entry.path().extension() != ".zst") continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<char> packed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const unsigned long long raw = ZSTD_getFrameContentSize(packed.data(), packed.size());
    if (raw == ZSTD_CONTENTSIZE_ERROR || raw == ZSTD_CONTENTSIZE_UNKNOWN) return 1;
    std::vector<char> bytes(raw);
    if (ZSTD_isError(ZSTD_decompress(bytes.data(), bytes.size(), packed.data(), packed.size()))) return 1;
    if (!WriteFile(dir / entry.path().stem().stem(), bytes.data(), std::min<size_t>(bytes.size(), kMaxSeed))) {
      return 1;
    }
  }
  return 0;
}

// A real replication conversation from the primary's encoder: HELLO, a full epoch, then delta epochs whose pages
// use every encoding (sparse, XOR+LZ4, filled, unchanged, raw) and a device state.
int EpochStreamSeeds(const fs::path& dir) {
  using namespace tandem::replicator;
  fs::create_directories(dir);
  VmDescriptor vm;
  vm.vm_name = "fuzz";
  vm.ram_blocks = {{"mem", 16 * kPageSize}, {"rom", 2 * kPageSize}};
  vm.qemu_configuration = "pc-q35-7.2";
  vm.qemu_vmdesc_json = R"({"devices":[]})";
  auto mirror = RamImage::Create(vm, {});
  if (!mirror.ok()) return 1;
  for (uint32_t b = 0; b < 2; ++b) {
    auto block = (*mirror)->Block(b);
    for (size_t i = 0; i < block.size(); ++i) block[i] = uint8_t((i / 7) ^ b);
  }
  EpochEncoder encoder(PageCodecOptions{});
  BufferSink sink;
  HelloMessage hello;
  hello.term = 1;
  hello.generation = 0x5eed;
  hello.descriptor = vm;
  std::vector<uint8_t> device(300, 0xd5);
  if (!encoder.EncodeHello(hello, &sink).ok() || !encoder.EncodeFull(0, 1, **mirror, device, &sink).ok()) return 1;
  if (!WriteFile(dir / "hello-full", sink.bytes.data(), sink.bytes.size())) return 1;
  Epoch epoch;
  for (uint64_t n = 1; n <= 3; ++n) {
    epoch.Reset(n, false);
    auto block0 = (*mirror)->Block(0);
    uint8_t* sparse = epoch.PageBuffer(0, n * kPageSize);
    memcpy(sparse, block0.data() + n * kPageSize, kPageSize);
    sparse[n * 8] ^= 0x5a;
    uint8_t* rewritten = epoch.PageBuffer(0, (n + 5) * kPageSize);
    for (size_t i = 0; i < kPageSize; ++i) rewritten[i] = uint8_t((i / 5) ^ n);
    epoch.FilledPage(0, (n + 9) * kPageSize, 0);
    uint8_t* noise = epoch.PageBuffer(1, kPageSize);
    for (size_t i = 0; i < kPageSize; ++i) noise[i] = uint8_t(i * 2654435761u >> (n + 3));
    epoch.device_state().assign(200 + n, uint8_t(n));
    if (!encoder.EncodeEpoch(epoch, 1, mirror->get(), &sink).ok() || !(*mirror)->Apply(epoch).ok()) return 1;
  }
  if (!WriteFile(dir / "hello-full-3-deltas", sink.bytes.data(), sink.bytes.size())) return 1;
  // Version 5: a full epoch that keeps the standby's pages (its PAGE_HASHES, sent after the HELLO, say its fresh
  // replica is all zero pages) and lists only those that differ.
  auto ram = GuestRam::Open(vm, {});
  if (!ram.ok()) return 1;
  std::vector<PageRef> differing;
  for (uint32_t b = 0; b < 2; ++b) {
    for (uint64_t off = 0; off < vm.ram_blocks[b].size_bytes; off += kPageSize) {
      memcpy((*ram)->PageBuffer(b, off), (*mirror)->Page(b, off), kPageSize);
      if ((off / kPageSize) % 3 == 0) differing.push_back({b, off});
    }
  }
  BufferSink keeps;
  ResyncSource source;
  source.ram = ram->get();
  if (!encoder.EncodeHello(hello, &keeps).ok() ||
      !encoder.EncodeKeeping(0, 1, source, differing, device, &keeps).ok()) {
    return 1;
  }
  if (!WriteFile(dir / "hello-keeps", keeps.bytes.data(), keeps.bytes.size())) return 1;
  return 0;
}

// One epoch's writes of each kind, an empty epoch, and a block hash list.
int DiskWritesSeeds(const fs::path& dir) {
  fs::create_directories(dir);
  disk::DiskWritesEncoder enc(1 << 20);
  std::vector<uint8_t> data(3000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(i * 7);
  enc.AddData(4096, data);
  enc.Add(disk::WriteKind::kZero, 65536, 8192);
  enc.Add(disk::WriteKind::kTrim, (1 << 20) - 4096, 4096);
  std::vector<uint8_t> writes = enc.Finish(7), empty = enc.Finish(8);
  disk::BlockHashes hashes{.block_size = 65536, .disk_size = 3 * 65536 + 100, .hashes = {1, 2, 3, 4}};
  std::vector<uint8_t> hash_list = disk::EncodeBlockHashes(hashes);
  if (!WriteFile(dir / "three-writes", writes.data(), writes.size())) return 1;
  if (!WriteFile(dir / "empty-epoch", empty.data(), empty.size())) return 1;
  if (!WriteFile(dir / "hash-list", hash_list.data(), hash_list.size())) return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s OUT_DIR SOURCE_DIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1], source = argv[2];
  if (HeartbeatSeeds(out / "heartbeat_message") != 0) return 1;
  if (ColoSeeds(out / "colo_stream", source / "tests/qemu/data") != 0) return 1;
  if (EpochStreamSeeds(out / "epoch_stream") != 0) return 1;
  if (DiskWritesSeeds(out / "disk_writes") != 0) return 1;
  return 0;
}
