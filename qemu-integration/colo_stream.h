// The QEMU 7.2 migration stream as a COLO primary sends it, parsed from any byte source (a socket, or bytes
// recorded from one by scripts/record-colo-stream). Wire facts: qemu-integration/COLO_STREAM.md.
//
// Only RAM is parsed: QEMU's device sections have no length and are kept as opaque bytes. Pages are copied
// straight from the read buffer into the PageSink's buffers: nothing is allocated per page.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "replicator/epoch.h"

namespace tandem::qemu {

// Why parsing failed, beside the Status (whose message, with the stream offset, is for people).
enum class StreamError : uint8_t {
  kNone = 0,
  kTruncated,           // the bytes ended mid-stream
  kSource,              // the byte source failed (QEMU closed the socket, went silent, an I/O error)
  kBadMagic,            // not a QEMU migration stream (QEVM)
  kUnknownVersion,      // another migration stream version (Unsupported)
  kUnsupportedFeature,  // valid QEMU, but not what tandem takes: page size, section, subsection, command, RAM
                        // record flag, a stream without COLO (Unsupported)
  kUnexpectedMessage,   // a COLO control message other than the one expected
  kBadConfiguration,    // configuration section: bad field, missing, or out of place
  kBadCommand,          // a migration command with a malformed payload
  kUnknownSectionType,
  kBadSectionOrder,     // a section where none may be (a second RAM start, device sections inside RAM, ...)
  kBadFooter,           // a section footer missing or naming another section
  kBadBlockTable,       // RAM block table: bad or repeated block, sizes not adding up, missing, misplaced
  kBadRamRecord,        // RAM record: unknown flags, unknown block, offset beyond its block
  kPageRefused,         // the page sink refused a page
  kBadDeviceState,      // device state: size, shape, or sections that do not match the vmdesc
};
const char* StreamErrorName(StreamError error);

// Where stream bytes come from.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Reads 1..cap bytes into dst; 0 means the bytes end here (the reader reports what was cut short as
  // Corruption). A source that knows better (peer closed, timeout) returns that status instead.
  virtual Result<size_t> ReadSome(uint8_t* dst, size_t cap) = 0;
};

// Bytes in memory, handed out at most `max_chunk` at a time (tests use small chunks to hit every boundary).
class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::span<const uint8_t> data, size_t max_chunk = SIZE_MAX)
      : data_(data), max_chunk_(max_chunk) {}
  Result<size_t> ReadSome(uint8_t* dst, size_t cap) override;
  size_t remaining() const { return data_.size() - pos_; }

 private:
  std::span<const uint8_t> data_;
  size_t max_chunk_;
  size_t pos_ = 0;
};

// Buffered big-endian reads over a ByteSource: one read(2) per buffer fill, not per field.
class StreamReader {
 public:
  explicit StreamReader(ByteSource* source, size_t buffer_bytes = 1 << 20);

  Status ReadU8(uint8_t* v);
  Status ReadBe16(uint16_t* v);
  Status ReadBe32(uint32_t* v);
  Status ReadBe64(uint64_t* v);
  Status Read(void* dst, size_t len);
  // Whatever is buffered (refilling once from the source if nothing is), at most `max` bytes, consumed.
  Result<std::span<const uint8_t>> TakeAvailable(size_t max);
  // Gives back the last `n` bytes of the most recent TakeAvailable.
  void Unread(size_t n);
  // Bytes consumed so far: error messages name the stream offset.
  uint64_t offset() const { return consumed_base_ + pos_; }
  size_t buffered() const { return end_ - pos_; }
  ByteSource* source() const { return source_; }
  // kTruncated or kSource once a read has failed for that reason (kNone until then).
  StreamError error() const { return error_; }

 private:
  Status Fill(size_t need);  // at least `need` (<= capacity) bytes buffered
  ByteSource* source_;
  std::vector<uint8_t> buf_;
  size_t pos_ = 0, end_ = 0;
  uint64_t consumed_base_ = 0;  // stream offset of buf_[0]
  size_t last_take_ = 0;
  StreamError error_ = StreamError::kNone;
};

// COLO's control messages: a be32 on the migration socket, both directions.
enum class ColoMessage : uint32_t {
  kCheckpointReady = 0,
  kCheckpointRequest = 1,
  kCheckpointReply = 2,
  kVmstateSend = 3,
  kVmstateSize = 4,
  kVmstateReceived = 5,
  kVmstateLoaded = 6,
};
const char* ColoMessageName(uint32_t message);

struct RamSectionStats {
  uint64_t pages = 0;         // PAGE records (4096 bytes of data each)
  uint64_t filled_pages = 0;  // ZERO records (one fill byte)
};

// Called once the RAM block table is known; returns where precopy pages go.
using LayoutCallback = std::function<Result<replicator::PageSink*>(const replicator::VmDescriptor&)>;

// Stateful: the RAM section id, the block table and the "previous block" of CONTINUE records carry over from
// the precopy into every checkpoint, as they do in QEMU.
class ColoStreamParser {
 public:
  explicit ColoStreamParser(StreamReader* reader) : reader_(reader) {}

  // The whole precopy: QEVM header, CONFIGURATION (raw section bytes, type byte included, into
  // descriptor->qemu_configuration), ENABLE_COLO, the RAM sections (block table into descriptor->ram_blocks,
  // pages into the sink on_layout returns), the device sections up to EOF (into *device_state, in the same form
  // as a checkpoint's device blob: FULL sections then 0x00) and the VMDESCRIPTION JSON
  // (descriptor->qemu_vmdesc_json). Consumes exactly the precopy: nothing after the JSON.
  Status ParsePrecopy(const LayoutCallback& on_layout, replicator::VmDescriptor* descriptor,
                      std::vector<uint8_t>* device_state);

  // Reads one COLO message; Corruption unless it is `expected`.
  Status ExpectMessage(ColoMessage expected);

  // What follows VMSTATE_SEND: the RAM END section (this checkpoint's dirty pages, into `sink`), EOF, then
  // VMSTATE_SIZE and the device-state blob (into *device_state; its capacity is reused).
  Status ParseCheckpointState(replicator::PageSink* sink, std::vector<uint8_t>* device_state);

  const RamSectionStats& last_checkpoint() const { return last_checkpoint_; }
  const RamSectionStats& precopy() const { return precopy_; }
  const std::vector<replicator::RamBlockInfo>& blocks() const { return blocks_; }
  // Why the last ParsePrecopy / ExpectMessage / ParseCheckpointState failed: kNone after a success, and after a
  // failure that is the caller's (InvalidArgument, an error from the layout callback).
  StreamError error() const { return error_; }

 private:
  Status ParsePrecopyBody(const LayoutCallback& on_layout, replicator::VmDescriptor* descriptor,
                          std::vector<uint8_t>* device_state);
  Status ExpectMessageBody(ColoMessage expected);
  Status ParseCheckpointBody(replicator::PageSink* sink, std::vector<uint8_t>* device_state);
  // Records why `st` failed (what Fail set, else the reader's kTruncated/kSource) and returns it.
  Status Track(Status st);
  Status ParseConfiguration(std::string* raw);
  Status ParseRamSectionHeader(uint8_t type, bool* is_start);
  Status ParseRamRecords(replicator::PageSink* sink, bool allow_block_table, RamSectionStats* stats);
  Status ParseBlockTable(uint64_t total_bytes);
  Status ParseFooter();
  Status ParseDeviceTail(std::vector<uint8_t>* device_state, std::string* vmdesc);
  // Sets error() and returns `what` at the stream offset: Unsupported for kUnknownVersion and
  // kUnsupportedFeature, Corruption otherwise.
  Status Fail(StreamError error, const std::string& what);

  StreamReader* reader_;
  bool have_ram_section_ = false;
  uint32_t ram_section_id_ = 0;
  std::vector<replicator::RamBlockInfo> blocks_;
  int last_block_ = -1;  // for CONTINUE records
  RamSectionStats precopy_, last_checkpoint_;
  StreamError error_ = StreamError::kNone;
};

// The FULL sections of a device blob (or of the precopy's tail) walked by their footers against the vmdesc's
// device list: OK only if the blob is exactly those sections, in that order, then 0x00 (else Corruption and
// *error, when given, kBadDeviceState).
Status CheckDeviceSections(std::span<const uint8_t> blob, const std::string& vmdesc_json,
                           StreamError* error = nullptr);

}  // namespace tandem::qemu
