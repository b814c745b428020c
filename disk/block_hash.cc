#include "disk/block_hash.h"

#include <xxhash.h>

#include <algorithm>
#include <bit>
#include <string>

#include "common/fd.h"

namespace tandem::disk {

namespace {
constexpr uint32_t kHashesMagic = 0x48424454;  // "TDBH" read as little-endian
constexpr uint32_t kHashesVersion = 1;
constexpr size_t kHashesHeaderSize = 32;  // magic, version, block size, disk size, count
}  // namespace

Result<BlockHashes> HashBlocks(uint64_t disk_size, uint64_t block_size,
                               const std::function<Status(uint64_t, std::span<uint8_t>)>& read) {
  if (block_size < 4096 || !std::has_single_bit(block_size) || block_size > (64u << 20)) {
    return Status::InvalidArgument("hash block size " + std::to_string(block_size) +
                                   " is not a power of two in [4 KiB, 64 MiB]");
  }
  BlockHashes out;
  out.block_size = block_size;
  out.disk_size = disk_size;
  out.hashes.reserve(size_t((disk_size + block_size - 1) / block_size));
  std::vector<uint8_t> block(block_size);
  for (uint64_t offset = 0; offset < disk_size; offset += block_size) {
    auto piece = std::span(block).first(size_t(std::min(block_size, disk_size - offset)));
    TANDEM_RETURN_IF_ERROR(read(offset, piece));
    out.hashes.push_back(XXH3_64bits(piece.data(), piece.size()));
  }
  return out;
}

Result<BlockHashes> HashBlocks(File& image, uint64_t block_size) {
  TANDEM_ASSIGN_OR_RETURN(uint64_t size, image.Size());
  return HashBlocks(size, block_size, [&](uint64_t offset, std::span<uint8_t> out) { return image.PRead(offset, out); });
}

Result<BlockHashes> HashBlocks(BlockDevice& device, uint64_t block_size) {
  return HashBlocks(device.size(), block_size,
                    [&](uint64_t offset, std::span<uint8_t> out) { return device.Read(offset, out); });
}

uint64_t HashBlockSizeFor(uint64_t disk_size) {
  uint64_t block = kDefaultHashBlockSize;
  while (block < (64u << 20) && (disk_size + block - 1) / block > kMaxHashBlocks) block *= 2;
  return block;
}

std::vector<uint64_t> BlocksToSend(const BlockHashes& primary, const BlockHashes& standby) {
  const bool comparable = primary.block_size == standby.block_size && primary.disk_size == standby.disk_size &&
                          primary.hashes.size() == standby.hashes.size();
  std::vector<uint64_t> out;
  for (uint64_t i = 0; i < primary.hashes.size(); ++i) {
    if (!comparable || primary.hashes[i] != standby.hashes[i]) out.push_back(i);
  }
  return out;
}

Status AppendBlocks(BlockDevice& device, uint64_t block_size, std::span<const uint64_t> blocks,
                    DiskWritesEncoder* out) {
  std::vector<uint8_t> block(block_size);
  for (uint64_t index : blocks) {
    const uint64_t offset = index * block_size;
    if (block_size == 0 || index >= (device.size() + block_size - 1) / block_size) {
      return Status::InvalidArgument("block " + std::to_string(index) + " is beyond the disk");
    }
    auto piece = std::span(block).first(size_t(std::min(block_size, device.size() - offset)));
    TANDEM_RETURN_IF_ERROR(device.Read(offset, piece));
    out->AddData(offset, piece);
  }
  return Status::Ok();
}

std::vector<uint8_t> EncodeBlockHashes(const BlockHashes& hashes) {
  std::vector<uint8_t> out(kHashesHeaderSize + 8 * hashes.hashes.size() + 8);
  StoreLe32(out.data(), kHashesMagic);
  StoreLe32(out.data() + 4, kHashesVersion);
  StoreLe64(out.data() + 8, hashes.block_size);
  StoreLe64(out.data() + 16, hashes.disk_size);
  StoreLe64(out.data() + 24, hashes.hashes.size());
  for (size_t i = 0; i < hashes.hashes.size(); ++i) StoreLe64(out.data() + kHashesHeaderSize + 8 * i, hashes.hashes[i]);
  StoreLe64(out.data() + out.size() - 8, XXH3_64bits(out.data(), out.size() - 8));
  return out;
}

Result<BlockHashes> DecodeBlockHashes(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHashesHeaderSize + 8) return Status::Corruption("block hashes: truncated");
  if (LoadLe32(bytes.data()) != kHashesMagic) return Status::Corruption("block hashes: bad magic");
  if (LoadLe32(bytes.data() + 4) != kHashesVersion) return Status::Unsupported("block hashes: unknown version");
  if (LoadLe64(bytes.data() + bytes.size() - 8) != XXH3_64bits(bytes.data(), bytes.size() - 8)) {
    return Status::Corruption("block hashes: checksum mismatch");
  }
  BlockHashes out;
  out.block_size = LoadLe64(bytes.data() + 8);
  out.disk_size = LoadLe64(bytes.data() + 16);
  const uint64_t count = LoadLe64(bytes.data() + 24);
  if (count != (bytes.size() - kHashesHeaderSize - 8) / 8 || (bytes.size() - kHashesHeaderSize - 8) % 8 != 0) {
    return Status::Corruption("block hashes: count does not match the length");
  }
  if (out.block_size == 0 || count != (out.disk_size + out.block_size - 1) / out.block_size) {
    return Status::Corruption("block hashes: count does not match the disk and block sizes");
  }
  out.hashes.resize(count);
  for (uint64_t i = 0; i < count; ++i) out.hashes[i] = LoadLe64(bytes.data() + kHashesHeaderSize + 8 * i);
  return out;
}

}  // namespace tandem::disk
