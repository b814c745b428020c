// A DISK_WRITES payload comes from the primary, a block hash list from the standby: both decoders must survive
// any bytes, and whatever they accept must re-encode to the same bytes (no field dropped or normalised: the
// encoding is canonical, so the checksums prove the writes are the ones that were sent).
#include <cstdint>
#include <cstring>
#include <span>

#include "disk/block_hash.h"
#include "disk/disk_writes.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::disk;
  const std::span<const uint8_t> bytes(data, size);
  if (auto writes = DecodeDiskWrites(bytes); writes.ok()) {
    DiskWritesEncoder again(writes->disk_size);
    for (const DiskWrite& w : writes->writes) {
      if (w.offset + w.length > writes->disk_size) __builtin_trap();  // bounds were checked
      if (w.kind == WriteKind::kData) {
        again.AddData(w.offset, w.data);
      } else {
        again.Add(w.kind, w.offset, w.length);
      }
    }
    std::vector<uint8_t> encoded = again.Finish(writes->epoch);
    if (encoded.size() != size || memcmp(encoded.data(), data, size) != 0) __builtin_trap();
  }
  if (auto hashes = DecodeBlockHashes(bytes); hashes.ok()) {
    std::vector<uint8_t> encoded = EncodeBlockHashes(*hashes);
    if (encoded.size() != size || memcmp(encoded.data(), data, size) != 0) __builtin_trap();
  }
  return 0;
}
