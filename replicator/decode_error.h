// What was wrong with bytes a peer sent, as a code callers and tests can switch on; the Status beside it keeps the
// prose for logs and the ACK's reason. Decoders of peer bytes (RecordReader, the Parse* functions of messages.h,
// EpochDecoder, Replica) return a DecodeStatus. The code never goes on the wire: an ACK carries an AckStatus.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/status.h"

namespace tandem::replicator {

enum class DecodeError : uint8_t {
  kNone = 0,                 // ok, or a failure that is not about the bytes (I/O, timeout, the stream closed)
  kBadLength,                // a record longer than kMaxRecordPayload, a fixed-size payload of another size
  kChecksumMismatch,         // a record's checksum
  kTruncated,                // the stream ended inside a record, or a payload inside one of its fields or entries
  kUnknownVersion,           // a HELLO of a protocol version this build does not speak
  kUnknownRecord,            // a record type the protocol does not have
  kUnsupportedRecord,        // a record type this connection does not take (DISK_WRITES when no disk was announced)
  kUnexpectedRecord,         // a known record where it may not be (before HELLO, outside an epoch, out of order)
  kBadField,                 // a field out of range: unknown flags, role or status, reserved bits set, bad counts
  kUnknownEncoding,          // a page entry with an encoding this build does not know
  kPageOutsideLayout,        // a page that is not in the RAM layout
  kPageOrder,                // a full epoch that skips, repeats or XOR-deltas pages, or ends early
  kDecompressFailed,         // a page's encoded bytes do not decode
  kPageHashMismatch,         // a decoded page is not the page its hash names
  kDeviceStateOrder,         // a DEVICE_STATE chunk that does not continue the ones received, or a bad total
  kDeviceStateHashMismatch,  // the reassembled device state is not what EPOCH_END's hash names
  kTotalsMismatch,           // EPOCH_END's epoch, page, record or byte counts differ from what was received
  kRecordChainMismatch,      // the chain of record checksums: records lost, repeated or reordered
  kTermMismatch,             // an EPOCH_BEGIN of another term than the connection's HELLO
  kOldTerm,                  // a primary of a term older than one already seen
  kReplayedEpoch,            // an epoch already applied, or a full epoch older than it
  kOutOfOrderEpoch,          // a delta epoch that does not continue the one held (or there is none to continue)
  kUnsupported,              // a feature this standby lacks (page size)
  kWrongPeer,                // a HELLO from the wrong role, or for another VM
  kDiskWritesOrder,          // a DISK_WRITES chunk that does not continue the ones received, a bad total, or an
                             // epoch of a disk-replicating primary without its DISK_WRITES
  kDiskWritesCorrupt,        // the reassembled DISK_WRITES payload fails its own checks (disk_writes.h)
  kAuthenticationFailed,     // the link handshake: the peer did not prove it holds the key (wrong key, replay)
  kTagMismatch,              // a record of an authenticated link failed its tag (altered, or not from the peer)
};
const char* DecodeErrorName(DecodeError error);

// A Status with the DecodeError that caused it. Converts to a plain Status for callers that only pass it on.
class [[nodiscard]] DecodeStatus {
 public:
  DecodeStatus() = default;
  DecodeStatus(DecodeError error, Status status) : error_(error), status_(std::move(status)) {}
  // A failure that is not about the bytes (kNone). Explicit, so a code is never dropped by accident.
  explicit DecodeStatus(Status status) : status_(std::move(status)) {}
  static DecodeStatus Ok() { return DecodeStatus(); }
  // Status::Corruption with `error`: the usual failure of peer bytes.
  static DecodeStatus Corrupt(DecodeError error, std::string_view message) {
    return DecodeStatus(error, Status::Corruption(message));
  }

  bool ok() const { return status_.ok(); }
  DecodeError error() const { return error_; }
  const Status& status() const { return status_; }
  operator const Status&() const { return status_; }  // NOLINT: implicit by design
  std::string ToString() const { return status_.ToString(); }
  DecodeStatus WithContext(std::string_view context) const { return {error_, status_.WithContext(context)}; }

 private:
  DecodeError error_ = DecodeError::kNone;
  Status status_;
};

}  // namespace tandem::replicator

// TANDEM_RETURN_IF_ERROR for functions that return a DecodeStatus: the code travels with the status.
#define TANDEM_RETURN_IF_DECODE_ERROR(expr)                  \
  do {                                                       \
    ::tandem::replicator::DecodeStatus _dst = (expr);        \
    if (!_dst.ok()) return _dst;                             \
  } while (0)
