#include "bench/pageset.h"

#include <zstd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "replicator/epoch.h"

namespace tandem::bench {
namespace {

constexpr char kMagic[8] = {'T', 'P', 'G', 'S', 'E', 'T', '0', '1'};
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + 4 + 4;
constexpr size_t kPage = replicator::kPageSize;

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(v));
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

Status SavePageSet(const PageSet& set, const std::string& path) {
  std::string raw(kMagic, sizeof(kMagic));
  Put<uint32_t>(raw, kPage);
  Put<uint32_t>(raw, uint32_t(set.count()));
  Put<uint64_t>(raw, set.guest_ram_bytes);
  Put<uint32_t>(raw, set.interval_ms);
  Put<uint32_t>(raw, set.snapshot_pairs);
  for (size_t i = 0; i < set.count(); ++i) {
    Put<uint64_t>(raw, set.offsets[i]);
    raw.append(reinterpret_cast<const char*>(&set.old_pages[i * kPage]), kPage);
    raw.append(reinterpret_cast<const char*>(&set.new_pages[i * kPage]), kPage);
  }
  std::string packed(ZSTD_compressBound(raw.size()), '\0');
  size_t n = ZSTD_compress(packed.data(), packed.size(), raw.data(), raw.size(), 19);
  if (ZSTD_isError(n)) return Status::IoError(std::string("zstd: ") + ZSTD_getErrorName(n));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(packed.data(), std::streamsize(n));
  return out ? Status::Ok() : Status::IoError("write " + path);
}

Result<PageSet> LoadPageSet(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::NotFound(path);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string packed = buf.str();
  unsigned long long size = ZSTD_getFrameContentSize(packed.data(), packed.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size < kHeaderSize ||
      size > (1ull << 32)) {
    return Status::Corruption(path + ": not a page set");
  }
  std::vector<uint8_t> raw(size);
  size_t n = ZSTD_decompress(raw.data(), raw.size(), packed.data(), packed.size());
  if (ZSTD_isError(n) || n != size) return Status::Corruption(path + ": bad zstd frame");
  if (memcmp(raw.data(), kMagic, sizeof(kMagic)) != 0) return Status::Corruption(path + ": bad magic");
  const uint8_t* p = raw.data() + sizeof(kMagic);
  if (Get<uint32_t>(p) != kPage) return Status::Unsupported(path + ": page size");
  const uint32_t count = Get<uint32_t>(p + 4);
  if (raw.size() != kHeaderSize + size_t(count) * (8 + 2 * kPage)) return Status::Corruption(path + ": bad length");
  PageSet set;
  set.guest_ram_bytes = Get<uint64_t>(p + 8);
  set.interval_ms = Get<uint32_t>(p + 16);
  set.snapshot_pairs = Get<uint32_t>(p + 20);
  set.offsets.resize(count);
  set.old_pages.resize(size_t(count) * kPage);
  set.new_pages.resize(size_t(count) * kPage);
  p = raw.data() + kHeaderSize;
  for (uint32_t i = 0; i < count; ++i, p += 8 + 2 * kPage) {
    set.offsets[i] = Get<uint64_t>(p);
    memcpy(&set.old_pages[size_t(i) * kPage], p + 8, kPage);
    memcpy(&set.new_pages[size_t(i) * kPage], p + 8 + kPage, kPage);
  }
  return set;
}

const PageSet& BenchPageSet(const char* default_path) {
  static const PageSet set = [default_path] {
    const char* env = std::getenv("TANDEM_PAGESET");
    const std::string paths = env ? env : default_path;
    PageSet all;
    for (size_t at = 0; at <= paths.size();) {
      const size_t end = std::min(paths.find(':', at), paths.size());
      auto loaded = LoadPageSet(paths.substr(at, end - at));
      if (!loaded.ok()) {
        fprintf(stderr, "cannot load page set: %s (make one with scripts/capture-pageset)\n",
                loaded.status().ToString().c_str());
        std::exit(1);
      }
      const PageSet& one = loaded.value();
      if (all.count() == 0) all.guest_ram_bytes = one.guest_ram_bytes, all.interval_ms = one.interval_ms;
      all.snapshot_pairs += one.snapshot_pairs;
      all.offsets.insert(all.offsets.end(), one.offsets.begin(), one.offsets.end());
      all.old_pages.insert(all.old_pages.end(), one.old_pages.begin(), one.old_pages.end());
      all.new_pages.insert(all.new_pages.end(), one.new_pages.begin(), one.new_pages.end());
      at = end + 1;
    }
    return all;
  }();
  return set;
}

}  // namespace tandem::bench
