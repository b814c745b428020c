// scripts/bench resync: a standby's resync over loopback TCP with the real EpochShipper and EpochReceiver
// (authenticated link, aes-gcm unless said otherwise), for guests of 1, 2 and 4 GiB whose RAM is mostly zero:
// 1/8 data (half random words, half small counters: LZ4 gets about 2x), 1/8 zero pages the guest wrote (allocated
// in the RAM file), the rest never touched (holes). Per size:
//   full        a standby that sends no page hashes (version 4's resync): every page of the RAM
//   first sync  a fresh sparse replica: its page hashes are the zero page's, so only the data pages travel
//   hash 1%     a restarted standby whose replica differs from the guest in 1% of its pages (spread over all RAM)
//   hash 10%    the same with 10%
// All at resync_nice = 0 (the resync's own speed) but one first sync at the default 10, which yields the CPU to
// anything else that runs (on a shared machine: much slower). Each time is from the shipper's Start to the
// standby having applied the resync epoch; bytes are what went to the
// standby plus the page hash list that came back. memcpy is the data region copied once, cold, in the same run.
// The last line: resync: sizes_gib=1,2,4 full_s=<a,b,c> hash_s=<1% rows> hash_bytes_ratio=<1% / full, largest
// size> data_vs_memcpy=<data bytes / first sync time over memcpy, largest size>.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/env.h"
#include "common/log.h"
#include "replicator/guest_ram.h"
#include "replicator/receiver.h"
#include "replicator/shipper.h"

namespace tandem::replicator {
namespace {

constexpr char kKey[] = "resync-bench-link-key-0123456789";
constexpr uint64_t kRomBytes = 256 << 10;

// CPU seconds this process used so far (both ends run in it): beside the wall time, what a loaded machine hides.
double CpuSeconds() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return double(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + double(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "resync_bench: %s\n", what.c_str());
  exit(1);
}

struct Row {
  std::string name;
  double seconds = 0, cpu = 0;
  uint64_t to_standby = 0, hash_list = 0;
  uint64_t wire() const { return to_standby + hash_list; }
};

class Bench {
 public:
  Bench(const std::string& dir, uint64_t ram_bytes) : dir_(dir), ram_bytes_(ram_bytes) {
    vm_.vm_name = "bench";
    vm_.ram_blocks = {{"mem", ram_bytes}, {"rom", kRomBytes}};
    ram_path_ = dir + "/ram";
    replica_path_ = dir + "/replica";
  }
  ~Bench() {
    unlink(ram_path_.c_str());
    unlink(replica_path_.c_str());
  }

  uint64_t data_bytes() const { return ram_bytes_ / 8; }

  // The guest's RAM file: 1/8 data, 1/8 written zeros, the rest holes.
  void MakeRam() {
    const int fd = open(ram_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || ftruncate(fd, off_t(ram_bytes_)) != 0) Die("create " + ram_path_);
    std::mt19937_64 rng(42);
    std::vector<uint64_t> chunk(1 << 17);  // 1 MiB
    for (uint64_t at = 0; at < data_bytes(); at += chunk.size() * 8) {
      for (size_t i = 0; i < chunk.size(); i += 2) {
        chunk[i] = rng();
        chunk[i + 1] = (at / 8 + i) & 0xffff;
      }
      if (pwrite(fd, chunk.data(), chunk.size() * 8, off_t(at)) != ssize_t(chunk.size() * 8)) Die("write RAM");
    }
    std::fill(chunk.begin(), chunk.end(), 0);
    for (uint64_t at = data_bytes(); at < 2 * data_bytes(); at += chunk.size() * 8) {
      if (pwrite(fd, chunk.data(), chunk.size() * 8, off_t(at)) != ssize_t(chunk.size() * 8)) Die("write RAM");
    }
    close(fd);
  }

  // `fraction` of the guest's pages rewritten (spread over all of RAM): what a replica of an earlier run misses.
  void ChangePages(double fraction, uint64_t seed) {
    const int fd = open(ram_path_.c_str(), O_RDWR);
    if (fd < 0) Die("open " + ram_path_);
    const uint64_t pages = ram_bytes_ / kPageSize;
    const uint64_t step = uint64_t(1.0 / fraction);
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> page(kPageSize);
    for (uint64_t p = rng() % step; p < pages; p += step) {
      for (size_t i = 0; i < kPageSize; i += 8) {
        const uint64_t v = i % 16 == 0 ? rng() : p;
        memcpy(page.data() + i, &v, 8);
      }
      if (pwrite(fd, page.data(), kPageSize, off_t(p * kPageSize)) != ssize_t(kPageSize)) Die("write RAM");
    }
    close(fd);
  }

  Row Resync(const std::string& name, bool page_hashes, LinkEncryption encryption, int nice = 0) {
    ReceiverOptions ro;
    ro.listen_address = "127.0.0.1:0";
    ro.file_backed_blocks = {{"mem", replica_path_}};
    ro.expected_vm_name = vm_.vm_name;
    ro.security = {kKey, encryption};
    ro.io_timeout_ms = 30000;
    ro.page_hashes = page_hashes;
    EpochReceiver receiver(ro, SystemClock());
    if (Status st = receiver.Start(); !st.ok()) Die(st.ToString());

    auto ram = GuestRam::Open(vm_, {{"mem", ram_path_}});
    if (!ram.ok()) Die(ram.status().ToString());
    for (uint64_t off = 0; off < kRomBytes; off += kPageSize) memset((*ram)->PageBuffer(1, off), 0x5a, kPageSize);
    ShipperOptions so;
    so.standby_address = "127.0.0.1:" + std::to_string(receiver.port());
    so.security = {kKey, encryption};
    so.io_timeout_ms = 30000;
    so.resync_nice = nice;  // 0: the speed of the resync itself; the default 10 yields to whatever else runs
    EpochShipper shipper(so, SystemClock());
    const double start = Now(), cpu_start = CpuSeconds();
    if (Status st = shipper.Start(vm_, std::move(ram).value(), std::vector<uint8_t>(64 << 10, 0x11), 0); !st.ok()) {
      Die(st.ToString());
    }
    for (int i = 0; receiver.stats().epochs_applied == 0; ++i) {
      if (i > 600'000) Die(name + ": no resync within 10 minutes");
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    Row row;
    row.name = name;
    row.seconds = Now() - start;
    row.cpu = CpuSeconds() - cpu_start;
    while (shipper.stats().epochs_sent == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const ShipperStats stats = shipper.stats();
    row.to_standby = stats.bytes_sent;
    if (stats.hash_resyncs > 0) {
      const uint64_t pages = (ram_bytes_ + kRomBytes) / kPageSize;
      row.hash_list = pages * 8 + (pages / kMaxPageHashesPerRecord + 2) * (kRecordHeaderSize + kPageHashesHeaderSize);
    }
    shipper.Stop();
    receiver.Stop();
    return row;
  }

  void DropReplica() { unlink(replica_path_.c_str()); }

  // GB/s of memcpy of the data region (cold source, fresh destination pages touched first).
  double MemcpyRate() {
    const int fd = open(ram_path_.c_str(), O_RDONLY);
    void* src = mmap(nullptr, data_bytes(), PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    std::vector<uint8_t> dst(data_bytes(), 1);
    const double start = Now();
    memcpy(dst.data(), src, data_bytes());
    const double seconds = Now() - start;
    munmap(src, data_bytes());
    return double(data_bytes()) / seconds;
  }

 private:
  std::string dir_, ram_path_, replica_path_;
  uint64_t ram_bytes_;
  VmDescriptor vm_;
};

std::string Mib(uint64_t bytes) {
  char buf[32];
  snprintf(buf, sizeof(buf), "%.1f", bytes / 1048576.0);
  return buf;
}

int Main(int argc, char** argv) {
  SetLogLevel(getenv("TANDEM_BENCH_LOG") != nullptr ? LogLevel::kInfo : LogLevel::kWarn);
  std::vector<uint64_t> sizes_gib = {1, 2, 4};
  if (argc > 1) {
    sizes_gib.clear();
    for (char* s = strtok(argv[1], ","); s != nullptr; s = strtok(nullptr, ",")) {
      sizes_gib.push_back(strtoull(s, nullptr, 10));
    }
  }
  const char* base = getenv("TANDEM_BENCH_DIR");
  std::string dir = std::string(base != nullptr ? base : "/dev/shm") + "/tandem-resync-bench-XXXXXX";
  if (mkdtemp(dir.data()) == nullptr) Die("mkdtemp " + dir);
  printf("resync over loopback TCP, real EpochShipper -> EpochReceiver, authenticated link (aes-gcm unless said);\n");
  printf("RAM: 1/8 data (LZ4 ~2x), 1/8 zero pages written, 3/4 never touched; %u CPUs; time = Start to applied\n\n",
         unsigned(std::thread::hardware_concurrency()));
  printf("| guest | resync | time s | CPU s (both ends) | to standby MiB | hash list MiB | wire vs full |"
         " RAM GiB/s |\n");
  printf("|---|---|---|---|---|---|---|---|\n");
  std::string full_s, hash_s;
  double bytes_ratio = 0, data_vs_memcpy = 0;
  for (uint64_t gib : sizes_gib) {
    Bench bench(dir, gib << 30);
    bench.MakeRam();
    const double memcpy_rate = bench.MemcpyRate();
    std::vector<Row> rows;
    rows.push_back(bench.Resync("full (no page hashes)", false, LinkEncryption::kAesGcm));
    bench.DropReplica();
    rows.push_back(bench.Resync("full (no page hashes), encryption=none", false, LinkEncryption::kNone));
    bench.DropReplica();
    rows.push_back(bench.Resync("first sync: fresh sparse replica, page hashes", true, LinkEncryption::kAesGcm));
    bench.DropReplica();
    rows.push_back(bench.Resync("first sync at resync_nice = 10 (the default)", true, LinkEncryption::kAesGcm, 10));
    bench.ChangePages(0.01, gib);
    rows.push_back(bench.Resync("restarted standby, 1% of pages differ", true, LinkEncryption::kAesGcm));
    bench.ChangePages(0.10, gib + 100);
    rows.push_back(bench.Resync("restarted standby, 10% of pages differ", true, LinkEncryption::kAesGcm));
    bench.DropReplica();
    const Row& full = rows[0];
    for (const Row& r : rows) {
      printf("| %" PRIu64 " GiB | %s | %.2f | %.2f | %s | %s | %.3f | %.2f |\n", gib, r.name.c_str(), r.seconds,
             r.cpu, Mib(r.to_standby).c_str(), Mib(r.hash_list).c_str(), double(r.wire()) / double(full.wire()),
             double(gib << 30) / r.seconds / (1 << 30));
    }
    const double data_rate = double(bench.data_bytes()) / rows[2].seconds;
    printf("| %" PRIu64 " GiB | memcpy of the %s MiB of data | %.2f | | | | | %.2f (data: first sync %.2f = %.2fx) |\n",
           gib, Mib(bench.data_bytes()).c_str(), double(bench.data_bytes()) / memcpy_rate, memcpy_rate / (1 << 30),
           data_rate / (1 << 30), data_rate / memcpy_rate);
    fflush(stdout);
    full_s += (full_s.empty() ? "" : ",") + std::to_string(full.seconds).substr(0, 5);
    hash_s += (hash_s.empty() ? "" : ",") + std::to_string(rows[4].seconds).substr(0, 5);
    bytes_ratio = double(rows[4].wire()) / double(full.wire());
    data_vs_memcpy = data_rate / memcpy_rate;
  }
  rmdir(dir.c_str());
  std::string sizes;
  for (uint64_t g : sizes_gib) sizes += (sizes.empty() ? "" : ",") + std::to_string(g);
  printf("\nresync: sizes_gib=%s full_s=%s hash_s=%s hash_bytes_ratio=%.4f data_vs_memcpy=%.2f\n", sizes.c_str(),
         full_s.c_str(), hash_s.c_str(), bytes_ratio, data_vs_memcpy);
  return 0;
}

}  // namespace
}  // namespace tandem::replicator

int main(int argc, char** argv) { return tandem::replicator::Main(argc, argv); }
