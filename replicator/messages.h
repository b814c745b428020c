// The records of the replication stream as C++ values, and their (de)serialization. Layouts: format.h and
// FORMAT.md. Parsers never trust a length: every field is bounds-checked against the payload and bad input is a
// DecodeStatus (Corruption, or Unsupported for a version this build does not speak, with its DecodeError).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "replicator/decode_error.h"
#include "replicator/epoch.h"
#include "replicator/format.h"

namespace tandem::replicator {

struct HelloMessage {
  uint32_t version = kProtocolVersion;
  PeerRole role = PeerRole::kPrimary;
  uint64_t term = 0;
  // Random per primary process: epoch numbers are only comparable within one generation.
  uint64_t generation = 0;
  // Standby: the last epoch it applied from `generation` (valid when has_resume_point). Primary: unused (0).
  uint64_t last_applied = 0;
  bool has_resume_point = false;
  bool has_disk = false;    // version 3: replicates the guest's disk (primary) / holds its copy (standby)
  bool page_hashes = false;  // version 5, standby: PAGE_HASHES of its replica follow (page_hashes.h)
  VmDescriptor descriptor;  // primary: the VM; standby: only vm_name (the one it expects)
};

struct EpochBeginMessage {
  uint64_t epoch = 0;
  uint64_t term = 0;
  bool full = false;
  uint32_t merged = 0;  // checkpoints before `epoch` this delta epoch also holds (Epoch::merged)
  bool live = false;    // read from the running guest: a resume point only once it settled (EpochEndMessage)
  // Version 5, full epochs only: lists only the pages whose hash differs from the standby's PAGE_HASHES; the
  // standby keeps the others.
  bool keeps = false;
};

struct EpochEndMessage {
  uint64_t epoch = 0;
  uint64_t page_count = 0;
  uint64_t payload_bytes = 0;  // sum of payload lengths of the epoch's records before EPOCH_END
  uint64_t device_state_bytes = 0;
  uint64_t device_state_hash = 0;  // XXH3-64 of the whole device state
  uint32_t record_count = 0;       // records of the epoch before EPOCH_END, EPOCH_BEGIN included
  uint64_t records_hash = 0;       // XXH3-64 over the u64 LE checksums of those records, in order
  // A live epoch (EpochBeginMessage::live) is a resume point only once epoch `epoch + settles_after` is applied
  // (>= 1); 0 for every other epoch.
  uint32_t settles_after = 0;
};

struct AckMessage {
  uint64_t epoch = 0;
  AckStatus status = AckStatus::kOk;
  std::string reason;
};

// Appends a complete record (header with checksum + payload) to `out`.
void AppendRecord(RecordType type, std::span<const uint8_t> payload, std::vector<uint8_t>* out);
// Fills in the header of a record whose payload was written in place after kRecordHeaderSize reserved bytes;
// returns the checksum.
uint64_t FinishRecord(RecordType type, uint8_t* record, uint32_t payload_length);
// The checksum a record header must carry for this type, length and payload.
uint64_t RecordChecksum(const uint8_t* header8, std::span<const uint8_t> payload);

void SerializeHello(const HelloMessage& hello, std::vector<uint8_t>* payload);
DecodeStatus ParseHello(std::span<const uint8_t> payload, HelloMessage* hello);

void SerializeEpochBegin(const EpochBeginMessage& m, uint8_t out[kEpochBeginSize]);
DecodeStatus ParseEpochBegin(std::span<const uint8_t> payload, EpochBeginMessage* m);

void SerializeEpochEnd(const EpochEndMessage& m, uint8_t out[kEpochEndSize]);
DecodeStatus ParseEpochEnd(std::span<const uint8_t> payload, EpochEndMessage* m);

void SerializeAck(const AckMessage& m, std::vector<uint8_t>* payload);
DecodeStatus ParseAck(std::span<const uint8_t> payload, AckMessage* m);

// The ACK status that reports `st` to the primary.
AckStatus AckStatusFor(const Status& st);

// XXH3-64 of one page, with a table for the 256 filled pages (zero pages are most of a fresh VM).
uint64_t PageHash(const uint8_t* page);
uint64_t FilledPageHash(uint8_t fill);

}  // namespace tandem::replicator
