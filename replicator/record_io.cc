// Framed records over a Transport: TransportSink writes them, RecordReader reads and checks them.
#include <chrono>

#include "replicator/format.h"
#include "replicator/messages.h"
#include "replicator/transport.h"

namespace tandem::replicator {
namespace {

constexpr size_t kCoalesceBytes = 256 * 1024;

}  // namespace

TransportSink::TransportSink(Transport* transport, int timeout_ms) : transport_(transport), timeout_ms_(timeout_ms) {
  buffer_.reserve(kCoalesceBytes);
}

Status TransportSink::WriteRecord(std::span<const uint8_t> record) {
  if (buffer_.size() + record.size() <= kCoalesceBytes) {
    buffer_.insert(buffer_.end(), record.begin(), record.end());
    return Status::Ok();
  }
  // Too big to coalesce: the buffered records and this one leave in a single gather send.
  iovec iov[2] = {{buffer_.data(), buffer_.size()}, {const_cast<uint8_t*>(record.data()), record.size()}};
  TANDEM_RETURN_IF_ERROR(Send({iov, 2}));
  bytes_sent_ += buffer_.size() + record.size();
  buffer_.clear();
  return Status::Ok();
}

Status TransportSink::Flush() {
  if (buffer_.empty()) return Status::Ok();
  iovec iov{buffer_.data(), buffer_.size()};
  TANDEM_RETURN_IF_ERROR(Send({&iov, 1}));
  bytes_sent_ += buffer_.size();
  buffer_.clear();
  return Status::Ok();
}

Status TransportSink::Send(std::span<const iovec> iov) {
  const auto start = std::chrono::steady_clock::now();
  Status st = transport_->Send(iov, timeout_ms_);
  send_ns_ += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
                           .count());
  return st;
}

DecodeStatus RecordReader::Next(int idle_timeout_ms, int io_timeout_ms, RecordView* record) {
  uint8_t header[kRecordHeaderSize];
  if (Status st = transport_->WaitReadable(idle_timeout_ms); !st.ok()) return DecodeStatus(st);
  if (Status st = transport_->Recv(header, sizeof(header), io_timeout_ms); !st.ok()) {
    // Transport::Recv's contract: a stream that ended part way is this Closed.
    const bool truncated = st.IsClosed() && st.message() == "stream truncated mid-read";
    return truncated ? DecodeStatus(DecodeError::kTruncated, st) : DecodeStatus(st);
  }
  const uint32_t type = LoadLe32(header);
  const uint32_t length = LoadLe32(header + 4);
  if (length > kMaxRecordPayload) {
    return DecodeStatus::Corrupt(DecodeError::kBadLength, "record " + std::string(RecordTypeName(type)) +
                                                              " claims a length of " + std::to_string(length) +
                                                              " bytes (limit " + std::to_string(kMaxRecordPayload) +
                                                              ")");
  }
  if (payload_.size() < length) payload_.resize(length);
  if (length > 0) {
    Status st = transport_->Recv(payload_.data(), length, io_timeout_ms);
    if (st.IsClosed()) {
      return DecodeStatus(DecodeError::kTruncated, Status::Closed("truncated record: stream ended inside a " +
                                                                  std::string(RecordTypeName(type))));
    }
    if (!st.ok()) return DecodeStatus(st);
  }
  bytes_read_ += kRecordHeaderSize + length;
  const uint64_t expected = LoadLe64(header + kRecordChecksumOffset);
  const uint64_t actual = RecordChecksum(header, {payload_.data(), length});
  if (expected != actual) {
    return DecodeStatus::Corrupt(DecodeError::kChecksumMismatch, "checksum mismatch in a record of type " +
                                                                      std::string(RecordTypeName(type)) +
                                                                      " and length " + std::to_string(length));
  }
  record->type = type;
  record->checksum = actual;
  record->payload = {payload_.data(), length};
  return DecodeStatus::Ok();
}

}  // namespace tandem::replicator
