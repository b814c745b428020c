// Captures a reference page set from a running QEMU whose RAM is a shared memory-backend-file:
// stop the VM, copy its RAM, let it run `interval_ms`, stop it again, copy again, and keep every page that
// changed with its previous version. Repeated `pairs` times, `gap_ms` apart.
//
// usage: tandem-capture-pageset --qmp SOCKET --ram FILE --out FILE.pageset.zst
//                               [--interval-ms 30] [--pairs 8] [--gap-ms 700] [--max-pages 3000]
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "bench/pageset.h"
#include "common/fd.h"
#include "qemu-integration/qmp.h"
#include "replicator/epoch.h"

namespace {

using tandem::Result;
using tandem::Status;
constexpr size_t kPage = tandem::replicator::kPageSize;

Result<std::vector<uint8_t>> ReadRam(const std::string& path) {
  tandem::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path, errno);
  off_t size = lseek(fd.get(), 0, SEEK_END);
  std::vector<uint8_t> ram(static_cast<size_t>(size));
  if (pread(fd.get(), ram.data(), ram.size(), 0) != ssize_t(ram.size())) return Status::IoError("short read " + path);
  return ram;
}

Result<std::vector<uint8_t>> SnapshotWhileStopped(tandem::qemu::QmpClient& qmp, const std::string& ram) {
  TANDEM_RETURN_IF_ERROR(qmp.Execute("stop", nlohmann::json::object(), 5000).status());
  auto snapshot = ReadRam(ram);
  TANDEM_RETURN_IF_ERROR(qmp.Execute("cont", nlohmann::json::object(), 5000).status());
  return snapshot;
}

int Run(int argc, char** argv) {
  std::string qmp_path, ram, out;
  int interval_ms = 30, pairs = 8, gap_ms = 700;
  size_t max_pages = 3000;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--qmp") qmp_path = v;
    else if (k == "--ram") ram = v;
    else if (k == "--out") out = v;
    else if (k == "--interval-ms") interval_ms = std::stoi(v);
    else if (k == "--pairs") pairs = std::stoi(v);
    else if (k == "--gap-ms") gap_ms = std::stoi(v);
    else if (k == "--max-pages") max_pages = std::stoul(v);
    else { fprintf(stderr, "unknown option %s\n", k.c_str()); return 2; }
  }
  if (qmp_path.empty() || ram.empty() || out.empty()) {
    fprintf(stderr, "usage: %s --qmp SOCKET --ram FILE --out FILE [--interval-ms N --pairs N --gap-ms N]\n", argv[0]);
    return 2;
  }
  auto qmp = tandem::qemu::QmpClient::Connect(qmp_path, 5000);
  if (!qmp.ok()) { fprintf(stderr, "%s\n", qmp.status().ToString().c_str()); return 1; }
  tandem::bench::PageSet set;
  set.interval_ms = uint32_t(interval_ms);
  for (int pair = 0; pair < pairs && set.count() < max_pages; ++pair) {
    auto before = SnapshotWhileStopped(**qmp, ram);
    if (!before.ok()) { fprintf(stderr, "%s\n", before.status().ToString().c_str()); return 1; }
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
    auto after = SnapshotWhileStopped(**qmp, ram);
    if (!after.ok()) { fprintf(stderr, "%s\n", after.status().ToString().c_str()); return 1; }
    set.guest_ram_bytes = before->size();
    size_t changed = 0;
    for (size_t off = 0; off + kPage <= before->size() && set.count() < max_pages; off += kPage) {
      if (memcmp(before->data() + off, after->data() + off, kPage) == 0) continue;
      set.offsets.push_back(off);
      set.old_pages.insert(set.old_pages.end(), before->begin() + long(off), before->begin() + long(off + kPage));
      set.new_pages.insert(set.new_pages.end(), after->begin() + long(off), after->begin() + long(off + kPage));
      ++changed;
    }
    ++set.snapshot_pairs;
    fprintf(stderr, "pair %d: %zu pages changed in %d ms\n", pair, changed, interval_ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(gap_ms));
  }
  if (Status st = tandem::bench::SavePageSet(set, out); !st.ok()) {
    fprintf(stderr, "%s\n", st.ToString().c_str());
    return 1;
  }
  fprintf(stderr, "saved %zu pages from %u snapshot pairs to %s\n", set.count(), set.snapshot_pairs, out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return Run(argc, argv); }
