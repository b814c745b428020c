#include "replicator/messages.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>
// XXH3 with the widest vectors the CPU has (AVX2/AVX-512 picked at run time; plain XXH3_64bits is built for SSE2
// and hashes a page 2.7x slower here): every page is hashed once on each side.
#include <xxh_x86dispatch.h>

#include <array>
#include <cstdio>

namespace tandem::replicator {
namespace {

// Bounds-checked cursor over a payload: every Read* fails (returns false) instead of reading past the end.
class Cursor {
 public:
  explicit Cursor(std::span<const uint8_t> data) : data_(data) {}
  bool U32(uint32_t* v) {
    if (left() < 4) return false;
    *v = LoadLe32(data_.data() + pos_);
    pos_ += 4;
    return true;
  }
  bool U64(uint64_t* v) {
    if (left() < 8) return false;
    *v = LoadLe64(data_.data() + pos_);
    pos_ += 8;
    return true;
  }
  bool String(std::string* s, uint64_t max) {
    uint32_t n;
    if (!U32(&n) || n > max || left() < n) return false;
    s->assign(reinterpret_cast<const char*>(data_.data() + pos_), n);
    pos_ += n;
    return true;
  }
  size_t left() const { return data_.size() - pos_; }

 private:
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
};

void PutU32(std::vector<uint8_t>* out, uint32_t v) {
  size_t at = out->size();
  out->resize(at + 4);
  StoreLe32(out->data() + at, v);
}
void PutU64(std::vector<uint8_t>* out, uint64_t v) {
  size_t at = out->size();
  out->resize(at + 8);
  StoreLe64(out->data() + at, v);
}
void PutString(std::vector<uint8_t>* out, const std::string& s) {
  PutU32(out, uint32_t(s.size()));
  out->insert(out->end(), s.begin(), s.end());
}

}  // namespace

const char* RecordTypeName(uint32_t type) {
  switch (static_cast<RecordType>(type)) {
    case RecordType::kHello: return "HELLO";
    case RecordType::kEpochBegin: return "EPOCH_BEGIN";
    case RecordType::kPages: return "PAGES";
    case RecordType::kDeviceState: return "DEVICE_STATE";
    case RecordType::kDiskWrites: return "DISK_WRITES";
    case RecordType::kDiskHashes: return "DISK_HASHES";
    case RecordType::kEpochEnd: return "EPOCH_END";
    case RecordType::kAck: return "ACK";
    case RecordType::kAuth: return "AUTH";
    case RecordType::kPageHashes: return "PAGE_HASHES";
  }
  return "unknown";
}

const char* AckStatusName(uint32_t status) {
  switch (static_cast<AckStatus>(status)) {
    case AckStatus::kOk: return "ok";
    case AckStatus::kCorruption: return "corruption";
    case AckStatus::kUnsupported: return "unsupported";
    case AckStatus::kReplay: return "replay";
    case AckStatus::kOldTerm: return "old-term";
    case AckStatus::kMismatch: return "mismatch";
    case AckStatus::kInternal: return "internal";
    case AckStatus::kUnauthenticated: return "unauthenticated";
  }
  return "unknown";
}

uint64_t RecordChecksum(const uint8_t* header8, std::span<const uint8_t> payload) {
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, header8, 8);
  XXH3_64bits_update(&state, payload.data(), payload.size());
  return XXH3_64bits_digest(&state);
}

uint64_t FinishRecord(RecordType type, uint8_t* record, uint32_t payload_length) {
  StoreLe32(record, static_cast<uint32_t>(type));
  StoreLe32(record + 4, payload_length);
  uint64_t sum = RecordChecksum(record, {record + kRecordHeaderSize, payload_length});
  StoreLe64(record + kRecordChecksumOffset, sum);
  return sum;
}

void AppendRecord(RecordType type, std::span<const uint8_t> payload, std::vector<uint8_t>* out) {
  size_t at = out->size();
  out->resize(at + kRecordHeaderSize + payload.size());
  if (!payload.empty()) memcpy(out->data() + at + kRecordHeaderSize, payload.data(), payload.size());
  FinishRecord(type, out->data() + at, uint32_t(payload.size()));
}

void SerializeHello(const HelloMessage& hello, std::vector<uint8_t>* payload) {
  payload->clear();
  const VmDescriptor& d = hello.descriptor;
  PutU32(payload, hello.version);
  PutU32(payload, static_cast<uint32_t>(hello.role));
  PutU64(payload, hello.term);
  PutU64(payload, hello.generation);
  PutU64(payload, hello.last_applied);
  PutU32(payload, (hello.has_resume_point ? kHelloHasResumePoint : 0) | (hello.has_disk ? kHelloHasDisk : 0) |
                      (hello.page_hashes ? kHelloPageHashes : 0));
  PutU32(payload, d.page_size);
  PutU32(payload, uint32_t(d.ram_blocks.size()));
  PutU32(payload, 0);  // reserved
  PutString(payload, d.vm_name);
  for (const RamBlockInfo& b : d.ram_blocks) {
    PutString(payload, b.name);
    PutU64(payload, b.size_bytes);
  }
  PutString(payload, d.qemu_configuration);
  PutString(payload, d.qemu_vmdesc_json);
}

DecodeStatus ParseHello(std::span<const uint8_t> payload, HelloMessage* hello) {
  Cursor c(payload);
  uint32_t version = 0;
  if (!c.U32(&version)) return DecodeStatus::Corrupt(DecodeError::kTruncated, "HELLO shorter than its version field");
  if (version < kMinProtocolVersion || version > kProtocolVersion) {
    return DecodeStatus(DecodeError::kUnknownVersion,
                        Status::Unsupported("peer speaks replication protocol version " + std::to_string(version) +
                                            ", this build speaks versions " + std::to_string(kMinProtocolVersion) +
                                            " to " + std::to_string(kProtocolVersion)));
  }
  if (payload.size() < kHelloFixedSize) {
    return DecodeStatus::Corrupt(DecodeError::kTruncated, "HELLO shorter than its fixed part");
  }
  uint32_t role = 0, flags = 0, page_size = 0, blocks = 0, reserved = 0;
  HelloMessage h;
  h.version = version;
  (void)(c.U32(&role) && c.U64(&h.term) && c.U64(&h.generation) && c.U64(&h.last_applied) && c.U32(&flags) &&
         c.U32(&page_size) && c.U32(&blocks) && c.U32(&reserved));
  if (role != uint32_t(PeerRole::kPrimary) && role != uint32_t(PeerRole::kStandby)) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, "HELLO with unknown sender role " + std::to_string(role));
  }
  const uint32_t known_flags =
      kHelloHasResumePoint | (version >= 3 ? kHelloHasDisk : 0) | (version >= 5 ? kHelloPageHashes : 0);
  if ((flags & ~known_flags) != 0 || reserved != 0) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, "HELLO with unknown flags or reserved bits set");
  }
  if (blocks > kMaxRamBlocks) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, "HELLO with " + std::to_string(blocks) + " RAM blocks");
  }
  h.role = static_cast<PeerRole>(role);
  h.has_resume_point = (flags & kHelloHasResumePoint) != 0;
  h.has_disk = (flags & kHelloHasDisk) != 0;
  h.page_hashes = (flags & kHelloPageHashes) != 0;
  h.descriptor.page_size = page_size;
  if (!c.String(&h.descriptor.vm_name, kMaxNameLength)) {
    return DecodeStatus::Corrupt(DecodeError::kTruncated, "HELLO: bad VM name");
  }
  for (uint32_t i = 0; i < blocks; ++i) {
    RamBlockInfo b;
    if (!c.String(&b.name, kMaxNameLength) || !c.U64(&b.size_bytes)) {
      return DecodeStatus::Corrupt(DecodeError::kTruncated, "HELLO: bad RAM block table entry " + std::to_string(i));
    }
    h.descriptor.ram_blocks.push_back(std::move(b));
  }
  if (!c.String(&h.descriptor.qemu_configuration, kMaxRecordPayload) ||
      !c.String(&h.descriptor.qemu_vmdesc_json, kMaxRecordPayload)) {
    return DecodeStatus::Corrupt(DecodeError::kTruncated, "HELLO: bad QEMU configuration or vmdesc length");
  }
  if (c.left() != 0) {
    return DecodeStatus::Corrupt(DecodeError::kBadLength, "HELLO with " + std::to_string(c.left()) + " trailing bytes");
  }
  *hello = std::move(h);
  return DecodeStatus::Ok();
}

void SerializeEpochBegin(const EpochBeginMessage& m, uint8_t out[kEpochBeginSize]) {
  StoreLe64(out, m.epoch);
  StoreLe64(out + 8, m.term);
  StoreLe32(out + 16, (m.full ? kEpochFull : 0) | (m.live ? kEpochLive : 0) | (m.keeps ? kEpochKeeps : 0));
  StoreLe32(out + 20, m.merged);
}

DecodeStatus ParseEpochBegin(std::span<const uint8_t> payload, EpochBeginMessage* m) {
  if (payload.size() != kEpochBeginSize) {
    return DecodeStatus::Corrupt(DecodeError::kBadLength,
                                 "EPOCH_BEGIN of " + std::to_string(payload.size()) + " bytes");
  }
  const uint32_t flags = LoadLe32(payload.data() + 16);
  if ((flags & ~(kEpochFull | kEpochLive | kEpochKeeps)) != 0) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, "EPOCH_BEGIN with unknown flags");
  }
  if ((flags & kEpochKeeps) != 0 && (flags & kEpochFull) == 0) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, "EPOCH_BEGIN keeps pages but is not full");
  }
  m->epoch = LoadLe64(payload.data());
  m->term = LoadLe64(payload.data() + 8);
  m->full = (flags & kEpochFull) != 0;
  m->live = (flags & kEpochLive) != 0;
  m->keeps = (flags & kEpochKeeps) != 0;
  m->merged = LoadLe32(payload.data() + 20);
  if (m->merged != 0 && (m->full || m->merged >= m->epoch)) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, "EPOCH_BEGIN of epoch " + std::to_string(m->epoch) +
                                                            (m->full ? " (full)" : "") + " claims to merge " +
                                                            std::to_string(m->merged) + " earlier checkpoints");
  }
  return DecodeStatus::Ok();
}

void SerializeEpochEnd(const EpochEndMessage& m, uint8_t out[kEpochEndSize]) {
  StoreLe64(out, m.epoch);
  StoreLe64(out + 8, m.page_count);
  StoreLe64(out + 16, m.payload_bytes);
  StoreLe64(out + 24, m.device_state_bytes);
  StoreLe64(out + 32, m.device_state_hash);
  StoreLe32(out + 40, m.record_count);
  StoreLe32(out + 44, m.settles_after);
  StoreLe64(out + 48, m.records_hash);
}

DecodeStatus ParseEpochEnd(std::span<const uint8_t> payload, EpochEndMessage* m) {
  if (payload.size() != kEpochEndSize) {
    return DecodeStatus::Corrupt(DecodeError::kBadLength, "EPOCH_END of " + std::to_string(payload.size()) + " bytes");
  }
  m->epoch = LoadLe64(payload.data());
  m->page_count = LoadLe64(payload.data() + 8);
  m->payload_bytes = LoadLe64(payload.data() + 16);
  m->device_state_bytes = LoadLe64(payload.data() + 24);
  m->device_state_hash = LoadLe64(payload.data() + 32);
  m->record_count = LoadLe32(payload.data() + 40);
  m->records_hash = LoadLe64(payload.data() + 48);
  m->settles_after = LoadLe32(payload.data() + 44);  // checked against EPOCH_BEGIN's live flag (EpochDecoder::End)
  return DecodeStatus::Ok();
}

void SerializeAck(const AckMessage& m, std::vector<uint8_t>* payload) {
  payload->clear();
  PutU64(payload, m.epoch);
  PutU32(payload, static_cast<uint32_t>(m.status));
  std::string reason = m.reason.substr(0, kMaxAckReason);
  PutString(payload, reason);
}

DecodeStatus ParseAck(std::span<const uint8_t> payload, AckMessage* m) {
  Cursor c(payload);
  uint32_t status = 0;
  if (!c.U64(&m->epoch) || !c.U32(&status) || !c.String(&m->reason, kMaxAckReason) || c.left() != 0) {
    return DecodeStatus::Corrupt(DecodeError::kBadLength,
                                 "malformed ACK of " + std::to_string(payload.size()) + " bytes");
  }
  if (status > static_cast<uint32_t>(AckStatus::kUnauthenticated)) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, "ACK with unknown status " + std::to_string(status));
  }
  m->status = static_cast<AckStatus>(status);
  return DecodeStatus::Ok();
}

AckStatus AckStatusFor(const Status& st) {
  switch (st.code()) {
    case Status::Code::kOk: return AckStatus::kOk;
    case Status::Code::kCorruption: return AckStatus::kCorruption;
    case Status::Code::kUnsupported: return AckStatus::kUnsupported;
    case Status::Code::kInvalidArgument: return AckStatus::kMismatch;
    default: return AckStatus::kInternal;
  }
}

uint64_t PageHash(const uint8_t* page) { return XXH3_64bits(page, kPageSize); }

uint64_t FilledPageHash(uint8_t fill) {
  // Built once (thread-safe static init): 256 hashes of 4 KiB, a few tens of microseconds.
  static const std::array<uint64_t, 256> kTable = [] {
    std::array<uint64_t, 256> t{};
    uint8_t page[kPageSize];
    for (int v = 0; v < 256; ++v) {
      memset(page, v, kPageSize);
      t[size_t(v)] = XXH3_64bits(page, kPageSize);
    }
    return t;
  }();
  return kTable[fill];
}

}  // namespace tandem::replicator
