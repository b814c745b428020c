// The byte-source side of colo_stream.h: MemorySource and the buffered StreamReader.
#include <algorithm>
#include <cassert>
#include <cstring>
#include <string>

#include "common/fd.h"
#include "qemu-integration/colo_stream.h"

namespace tandem::qemu {

using replicator::kPageSize;

const char* StreamErrorName(StreamError error) {
  switch (error) {
    case StreamError::kNone: return "none";
    case StreamError::kTruncated: return "truncated";
    case StreamError::kSource: return "source failed";
    case StreamError::kBadMagic: return "bad magic";
    case StreamError::kUnknownVersion: return "unknown version";
    case StreamError::kUnsupportedFeature: return "unsupported feature";
    case StreamError::kUnexpectedMessage: return "unexpected COLO message";
    case StreamError::kBadConfiguration: return "bad configuration section";
    case StreamError::kBadCommand: return "bad command";
    case StreamError::kUnknownSectionType: return "unknown section type";
    case StreamError::kBadSectionOrder: return "section out of order";
    case StreamError::kBadFooter: return "bad section footer";
    case StreamError::kBadBlockTable: return "bad RAM block table";
    case StreamError::kBadRamRecord: return "bad RAM record";
    case StreamError::kPageRefused: return "page refused";
    case StreamError::kBadDeviceState: return "bad device state";
  }
  return "?";
}

Result<size_t> MemorySource::ReadSome(uint8_t* dst, size_t cap) {
  const size_t n = std::min({cap, max_chunk_, data_.size() - pos_});
  if (n > 0) std::memcpy(dst, data_.data() + pos_, n);
  pos_ += n;
  return n;
}

StreamReader::StreamReader(ByteSource* source, size_t buffer_bytes)
    : source_(source), buf_(std::max<size_t>(buffer_bytes, 2 * kPageSize)) {}

Status StreamReader::Fill(size_t need) {
  if (end_ - pos_ >= need) return Status::Ok();
  if (buf_.size() - pos_ < need) {  // compact: keep the unread bytes at the front
    std::memmove(buf_.data(), buf_.data() + pos_, end_ - pos_);
    consumed_base_ += pos_;
    end_ -= pos_;
    pos_ = 0;
    last_take_ = 0;
  }
  while (end_ - pos_ < need) {
    auto got = source_->ReadSome(buf_.data() + end_, buf_.size() - end_);
    if (!got.ok()) {
      error_ = StreamError::kSource;
      return got.status();
    }
    const size_t n = *got;
    if (n == 0) {
      error_ = StreamError::kTruncated;
      return Status::Corruption("stream truncated at byte " + std::to_string(consumed_base_ + end_) + " (needed " +
                                std::to_string(need - (end_ - pos_)) + " more bytes)");
    }
    end_ += n;
  }
  return Status::Ok();
}

Status StreamReader::Read(void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  while (len > 0) {
    if (pos_ == end_) TANDEM_RETURN_IF_ERROR(Fill(1));
    const size_t n = std::min(len, end_ - pos_);
    std::memcpy(out, buf_.data() + pos_, n);
    pos_ += n, out += n, len -= n;
  }
  return Status::Ok();
}

Status StreamReader::ReadU8(uint8_t* v) {
  TANDEM_RETURN_IF_ERROR(Fill(1));
  *v = buf_[pos_++];
  return Status::Ok();
}

Status StreamReader::ReadBe16(uint16_t* v) {
  TANDEM_RETURN_IF_ERROR(Fill(2));
  *v = LoadBe16(buf_.data() + pos_);
  pos_ += 2;
  return Status::Ok();
}

Status StreamReader::ReadBe32(uint32_t* v) {
  TANDEM_RETURN_IF_ERROR(Fill(4));
  *v = LoadBe32(buf_.data() + pos_);
  pos_ += 4;
  return Status::Ok();
}

Status StreamReader::ReadBe64(uint64_t* v) {
  TANDEM_RETURN_IF_ERROR(Fill(8));
  *v = LoadBe64(buf_.data() + pos_);
  pos_ += 8;
  return Status::Ok();
}

Result<std::span<const uint8_t>> StreamReader::TakeAvailable(size_t max) {
  if (pos_ == end_) {
    consumed_base_ += pos_;
    pos_ = end_ = 0;
    TANDEM_RETURN_IF_ERROR(Fill(1));
  }
  const size_t n = std::min(max, end_ - pos_);
  std::span<const uint8_t> out(buf_.data() + pos_, n);
  pos_ += n;
  last_take_ = n;
  return out;
}

void StreamReader::Unread(size_t n) {
  // Only the most recent take is guaranteed to still be in the buffer.
  assert(n <= last_take_);
  n = std::min(n, last_take_);
  pos_ -= n;
  last_take_ -= n;
}

}  // namespace tandem::qemu
