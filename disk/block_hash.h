// Resync by hashes: which blocks of the standby's image differ from the primary's (first sync, catch-up after
// the standby lost epochs). The standby hashes its image, the primary compares and sends only what differs.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "common/status.h"
#include "disk/block_device.h"
#include "disk/disk_writes.h"
#include "disk/file.h"

namespace tandem::disk {

inline constexpr uint64_t kDefaultHashBlockSize = 64 << 10;
// At most this many blocks, so that the list fits one replication record (2 MiB).
inline constexpr uint64_t kMaxHashBlocks = 200'000;

// The hash block size for a disk: kDefaultHashBlockSize, doubled until the disk has at most kMaxHashBlocks.
uint64_t HashBlockSizeFor(uint64_t disk_size);

struct BlockHashes {
  uint64_t block_size = kDefaultHashBlockSize;
  uint64_t disk_size = 0;
  std::vector<uint64_t> hashes;  // XXH3 of each block; the last one may be short
};

// Hashes an image through `read` (offset, buffer: fills it or fails). block_size: a power of two >= 4096.
Result<BlockHashes> HashBlocks(uint64_t disk_size, uint64_t block_size,
                               const std::function<Status(uint64_t, std::span<uint8_t>)>& read);
Result<BlockHashes> HashBlocks(File& image, uint64_t block_size = kDefaultHashBlockSize);
Result<BlockHashes> HashBlocks(BlockDevice& device, uint64_t block_size = kDefaultHashBlockSize);

// The primary's blocks the standby must receive: those whose hash differs. Different disk or block sizes
// (nothing comparable) yield every block.
std::vector<uint64_t> BlocksToSend(const BlockHashes& primary, const BlockHashes& standby);

// Appends the given blocks of `device`, read now, to a DISK_WRITES payload being built.
Status AppendBlocks(BlockDevice& device, uint64_t block_size, std::span<const uint64_t> blocks,
                    DiskWritesEncoder* out);

// The hash list on the wire: "TDBH", version 1, block size, disk size, count, hashes, XXH3 of all before it.
std::vector<uint8_t> EncodeBlockHashes(const BlockHashes& hashes);
Result<BlockHashes> DecodeBlockHashes(std::span<const uint8_t> bytes);

}  // namespace tandem::disk
