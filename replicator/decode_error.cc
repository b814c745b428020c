#include "replicator/decode_error.h"

namespace tandem::replicator {

const char* DecodeErrorName(DecodeError error) {
  switch (error) {
    case DecodeError::kNone: return "none";
    case DecodeError::kBadLength: return "bad-length";
    case DecodeError::kChecksumMismatch: return "checksum-mismatch";
    case DecodeError::kTruncated: return "truncated";
    case DecodeError::kUnknownVersion: return "unknown-version";
    case DecodeError::kUnknownRecord: return "unknown-record";
    case DecodeError::kUnsupportedRecord: return "unsupported-record";
    case DecodeError::kUnexpectedRecord: return "unexpected-record";
    case DecodeError::kBadField: return "bad-field";
    case DecodeError::kUnknownEncoding: return "unknown-encoding";
    case DecodeError::kPageOutsideLayout: return "page-outside-layout";
    case DecodeError::kPageOrder: return "page-order";
    case DecodeError::kDecompressFailed: return "decompress-failed";
    case DecodeError::kPageHashMismatch: return "page-hash-mismatch";
    case DecodeError::kDeviceStateOrder: return "device-state-order";
    case DecodeError::kDeviceStateHashMismatch: return "device-state-hash-mismatch";
    case DecodeError::kTotalsMismatch: return "totals-mismatch";
    case DecodeError::kRecordChainMismatch: return "record-chain-mismatch";
    case DecodeError::kTermMismatch: return "term-mismatch";
    case DecodeError::kOldTerm: return "old-term";
    case DecodeError::kReplayedEpoch: return "replayed-epoch";
    case DecodeError::kOutOfOrderEpoch: return "out-of-order-epoch";
    case DecodeError::kUnsupported: return "unsupported";
    case DecodeError::kWrongPeer: return "wrong-peer";
    case DecodeError::kDiskWritesOrder: return "disk-writes-order";
    case DecodeError::kDiskWritesCorrupt: return "disk-writes-corrupt";
    case DecodeError::kAuthenticationFailed: return "authentication-failed";
    case DecodeError::kTagMismatch: return "tag-mismatch";
  }
  return "?";
}

}  // namespace tandem::replicator
