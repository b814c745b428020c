// Framed records over a Transport: TransportSink writes them, RecordReader reads and checks them.
#include <chrono>

#include <cstring>

#include "replicator/format.h"
#include "replicator/link_security.h"
#include "replicator/messages.h"
#include "replicator/transport.h"

namespace tandem::replicator {
namespace {

constexpr size_t kCoalesceBytes = 256 * 1024;

}  // namespace

TransportSink::TransportSink(Transport* transport, int timeout_ms, RecordCipher* cipher)
    : transport_(transport), timeout_ms_(timeout_ms), cipher_(cipher) {
  // Encrypting: room for the coalesced records and the largest sealed record behind them.
  capacity_ = kCoalesceBytes;
  if (cipher_ != nullptr && cipher_->encrypts()) capacity_ += kRecordHeaderSize + kMaxRecordPayload + kRecordTagSize;
  buffer_.reset(new uint8_t[capacity_]);
}

void TransportSink::Append(std::span<const uint8_t> bytes) {
  memcpy(buffer_.get() + buffered_, bytes.data(), bytes.size());
  buffered_ += bytes.size();
}

Status TransportSink::WriteRecord(std::span<const uint8_t> record) {
  if (cipher_ != nullptr && cipher_->encrypts()) return WriteEncrypted(record);
  uint8_t tag[kRecordTagSize];
  const size_t tag_size = cipher_ != nullptr ? kRecordTagSize : 0;
  if (cipher_ != nullptr) TANDEM_RETURN_IF_ERROR(cipher_->Seal(record, nullptr, tag));
  if (buffered_ + record.size() + tag_size <= kCoalesceBytes) {
    Append(record);
    Append({tag, tag_size});
    return Status::Ok();
  }
  // Too big to coalesce: the buffered records and this one (and its tag) leave in a single gather send.
  iovec iov[3] = {{buffer_.get(), buffered_}, {const_cast<uint8_t*>(record.data()), record.size()}, {tag, tag_size}};
  TANDEM_RETURN_IF_ERROR(Send({iov, tag_size != 0 ? 3u : 2u}));
  bytes_sent_ += buffered_ + record.size() + tag_size;
  buffered_ = 0;
  return Status::Ok();
}

Status TransportSink::WriteEncrypted(std::span<const uint8_t> record) {
  // The ciphertext has to be written somewhere: into the buffer, behind the records coalesced so far.
  const size_t sealed = record.size() + kRecordTagSize;
  if (buffered_ + sealed > capacity_) TANDEM_RETURN_IF_ERROR(Flush());
  uint8_t* out = buffer_.get() + buffered_;
  TANDEM_RETURN_IF_ERROR(cipher_->Seal(record, out, out + record.size()));
  buffered_ += sealed;
  return buffered_ >= kCoalesceBytes ? Flush() : Status::Ok();
}

Status TransportSink::Flush() {
  if (buffered_ == 0) return Status::Ok();
  iovec iov{buffer_.get(), buffered_};
  TANDEM_RETURN_IF_ERROR(Send({&iov, 1}));
  bytes_sent_ += buffered_;
  buffered_ = 0;
  return Status::Ok();
}

Status WriteRecords(std::span<const uint8_t> records, EpochSink* sink) {
  while (records.size() >= kRecordHeaderSize) {
    const size_t size = kRecordHeaderSize + LoadLe32(records.data() + 4);
    if (size > records.size()) return Status::InvalidArgument("WriteRecords: a record runs past the buffer");
    TANDEM_RETURN_IF_ERROR(sink->WriteRecord(records.first(size)));
    records = records.subspan(size);
  }
  if (!records.empty()) return Status::InvalidArgument("WriteRecords: bytes after the last record");
  return sink->Flush();
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
  // The tag of a sealed record comes right after its payload: read in the same call.
  const size_t tag_size = cipher_ != nullptr ? kRecordTagSize : 0;
  if (payload_.size() < length + tag_size) payload_.resize(length + tag_size);
  if (length + tag_size > 0) {
    Status st = transport_->Recv(payload_.data(), length + tag_size, io_timeout_ms);
    if (st.IsClosed()) {
      return DecodeStatus(DecodeError::kTruncated, Status::Closed("truncated record: stream ended inside a " +
                                                                  std::string(RecordTypeName(type))));
    }
    if (!st.ok()) return DecodeStatus(st);
  }
  bytes_read_ += kRecordHeaderSize + length + tag_size;
  if (cipher_ != nullptr) {
    TANDEM_RETURN_IF_DECODE_ERROR(cipher_->Open(header, {payload_.data(), length}, payload_.data() + length));
  }
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
