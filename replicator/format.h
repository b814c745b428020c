// Every constant of tandem's replication wire format, in one place. FORMAT.md beside this file describes the
// format in prose with byte diagrams; the two must change together, and a change that is not backward
// compatible bumps kProtocolVersion.
//
// Everything is little-endian. A stream is a sequence of records:
//
//   +---------------+-----------------+----------------------------+----------------------+
//   | type (u32)    | length (u32)    | checksum (u64)             | payload (length)     |
//   +---------------+-----------------+----------------------------+----------------------+
//   checksum = XXH3-64(type || length || payload), i.e. every byte of the record but the checksum itself.
#pragma once

#include "common/fd.h"  // LoadLe32/64, StoreLe32/64: the wire is little-endian

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tandem::replicator {

static_assert(std::endian::native == std::endian::little, "tandem's wire helpers assume a little-endian host");

// Version 5 is this file. The first u32 of a HELLO payload is the version in every version, so any peer can
// name the version it cannot speak. Version 2 added the live resync (kEpochLive, EPOCH_END settles_after);
// version 3 the guest's disk (HELLO flag kHelloHasDisk, DISK_HASHES after the standby's HELLO, DISK_WRITES
// inside epochs); version 4 the authenticated link: over a connection, an opening HELLO and AUTH records prove
// both ends hold the pre-shared key, and every record after them carries a tag (link_security.h). An older
// stream is a newer one that never sets the newer features, so stream files (no link) of versions 1 to 4 all
// read; a connection, though, takes only version 4 and up (an unauthenticated peer is refused). Version 5 added
// the RAM resync by page hashes (HELLO flag kHelloPageHashes, PAGE_HASHES after the standby's HELLO, EPOCH_BEGIN
// flag kEpochKeeps); a version 5 standby answers a version 4 primary in version 4 (no page hashes).
inline constexpr uint32_t kProtocolVersion = 5;
inline constexpr uint32_t kMinProtocolVersion = 1;
inline constexpr uint32_t kMinLinkProtocolVersion = 4;  // over a connection

// Record types spell four ASCII characters in a hex dump: a stream read at the wrong offset shows up at once.
constexpr uint32_t FourCc(char a, char b, char c, char d) {
  return uint32_t(uint8_t(a)) | uint32_t(uint8_t(b)) << 8 | uint32_t(uint8_t(c)) << 16 | uint32_t(uint8_t(d)) << 24;
}
enum class RecordType : uint32_t {
  kHello = FourCc('T', 'H', 'L', 'O'),        // both directions, once, first
  kEpochBegin = FourCc('T', 'E', 'B', 'G'),   // primary -> standby
  kPages = FourCc('T', 'P', 'G', 'S'),        // primary -> standby, inside an epoch
  kDeviceState = FourCc('T', 'D', 'E', 'V'),  // primary -> standby, inside an epoch
  kDiskWrites = FourCc('T', 'D', 'S', 'K'),   // primary -> standby, inside an epoch (version 3)
  kDiskHashes = FourCc('T', 'D', 'H', 'S'),   // standby -> primary, right after its HELLO (version 3)
  kEpochEnd = FourCc('T', 'E', 'N', 'D'),     // primary -> standby, closes an epoch
  kAck = FourCc('T', 'A', 'C', 'K'),          // standby -> primary
  kAuth = FourCc('T', 'A', 'U', 'T'),         // version 4: both directions, the link handshake only
  kPageHashes = FourCc('T', 'P', 'H', 'S'),   // version 5: standby -> primary, after its HELLO (and DISK_HASHES)
};
const char* RecordTypeName(uint32_t type);

inline constexpr size_t kRecordHeaderSize = 16;  // type, length, checksum
inline constexpr size_t kRecordChecksumOffset = 8;
// Larger lengths are refused before anything is read or allocated (BadLength).
inline constexpr uint32_t kMaxRecordPayload = 2u << 20;

// HELLO. Fixed part, then length-prefixed (u32) strings and the RAM block table.
inline constexpr size_t kHelloFixedSize = 48;
enum class PeerRole : uint32_t { kPrimary = 1, kStandby = 2 };
inline constexpr uint32_t kHelloHasResumePoint = 1u << 0;  // standby: last_applied is meaningful
// Version 3: the sender replicates the guest's disk (primary) / holds a copy of it (standby: a DISK_HASHES
// record follows its HELLO). Both ends must agree.
inline constexpr uint32_t kHelloHasDisk = 1u << 1;
// Version 5, standby: PAGE_HASHES records of its replica follow its HELLO (and DISK_HASHES): the primary's full
// resync may then keep the pages whose hash matches (kEpochKeeps).
inline constexpr uint32_t kHelloPageHashes = 1u << 2;
inline constexpr uint32_t kMaxRamBlocks = 1024;
inline constexpr uint32_t kMaxNameLength = 256;

// Version 4 link handshake (FORMAT.md, "Link"). The opening HELLO: u32 version, u32 role (primary), u32 suite
// (LinkEncryption), u32 reserved, the primary's nonce. AUTH: u32 version, u32 suite, a nonce, a proof.
inline constexpr size_t kLinkNonceSize = 32;
inline constexpr size_t kLinkProofSize = 32;
inline constexpr size_t kOpeningHelloSize = 16 + kLinkNonceSize;
inline constexpr size_t kAuthSize = 8 + kLinkNonceSize + kLinkProofSize;
// After the handshake every record is followed by this tag (HMAC-SHA256 truncated, or AES-256-GCM's), which its
// length field does not count.
inline constexpr size_t kRecordTagSize = 16;

// EPOCH_BEGIN.
inline constexpr size_t kEpochBeginSize = 24;
inline constexpr uint32_t kEpochFull = 1u << 0;  // carries every page of every block, in order
// Version 2: a full or catch-up epoch read from the running guest's RAM: exact only together with the epochs
// after it up to the one its EPOCH_END's settles_after names.
inline constexpr uint32_t kEpochLive = 1u << 1;
// Version 5, with kEpochFull: a full epoch that lists only the pages whose hash differs from the standby's
// PAGE_HASHES of this connection (in order, each once); the standby keeps every other page as it is.
inline constexpr uint32_t kEpochKeeps = 1u << 2;

// PAGES: u32 count, u32 reserved, then `count` entries of a fixed header followed by the encoded bytes.
inline constexpr size_t kPagesHeaderSize = 8;
inline constexpr size_t kPageEntryHeaderSize = 28;
inline constexpr uint32_t kMaxPagesPerRecord = 256;
// Largest PAGES payload the encoder produces; must fit kMaxRecordPayload.
inline constexpr size_t kMaxPagesPayload = kPagesHeaderSize + kMaxPagesPerRecord * (kPageEntryHeaderSize + 4096);
static_assert(kMaxPagesPayload <= kMaxRecordPayload);

// DEVICE_STATE: u64 total size, u64 offset of this chunk, then the chunk.
inline constexpr size_t kDeviceStateHeaderSize = 16;
inline constexpr size_t kDeviceStateChunk = 1u << 20;
inline constexpr uint64_t kMaxDeviceState = 1ull << 30;

// DISK_WRITES (version 3): u64 total size, u64 offset of this chunk, then the chunk. The chunks of an epoch
// reassemble into one DISK_WRITES payload (disk/README.md: its own header, per-write and whole-payload XXH3).
inline constexpr size_t kDiskWritesRecordHeaderSize = 16;
inline constexpr size_t kDiskWritesChunk = 1u << 20;
inline constexpr uint64_t kMaxDiskWrites = 64ull << 30;
// DISK_HASHES (version 3): the standby's block hash list (disk/block_hash.h, EncodeBlockHashes), one record.

// PAGE_HASHES (version 5): u32 block, u32 page size, u64 first page, u32 count, u32 reserved, u64 pages in the
// block, then `count` u64 XXH3-64 hashes of pages first..first+count-1 of the block. The records of a connection
// cover every page of every block, in order.
inline constexpr size_t kPageHashesHeaderSize = 32;
inline constexpr uint32_t kMaxPageHashesPerRecord = 131072;  // 1 MiB of hashes
static_assert(kPageHashesHeaderSize + size_t{kMaxPageHashesPerRecord} * 8 <= kMaxRecordPayload);

// EPOCH_END.
inline constexpr size_t kEpochEndSize = 56;

// ACK: u64 epoch, u32 status, u32 reason length, reason (UTF-8, not terminated).
inline constexpr size_t kAckFixedSize = 16;
inline constexpr uint32_t kMaxAckReason = 4096;
enum class AckStatus : uint32_t {
  kOk = 0,
  kCorruption = 1,   // bad checksum, length, order, page hash, totals
  kUnsupported = 2,  // protocol version, record type, page size
  kReplay = 3,       // epoch number already applied, or not the next one
  kOldTerm = 4,      // the sender's term is older than one the standby has seen
  kMismatch = 5,     // wrong VM name, a RAM layout the replica cannot take, a disk on one side only
  kInternal = 6,     // the standby failed on its own side (I/O on the replica, its disk full)
  kUnauthenticated = 7,  // version 4: the primary did not prove it holds the link's key (sent in the clear)
};
const char* AckStatusName(uint32_t status);


}  // namespace tandem::replicator
