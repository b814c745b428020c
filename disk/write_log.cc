#include "disk/write_log.h"

#include <algorithm>
#include <chrono>
#include <string>

namespace tandem::disk {

EpochWriteLog::EpochWriteLog(uint64_t disk_size, WriteLogOptions options)
    : options_(std::move(options)), encoder_(disk_size) {}

Status EpochWriteLog::WaitForRoom() {
  std::unique_lock lock(mu_);
  auto has_room = [&] { return shutdown_ || checkpoint_requested_ || encoder_.bytes() < options_.byte_limit; };
  if (has_room()) return shutdown_ ? Status::Aborted("disk write log shut down") : Status::Ok();

  bool report = !full_reported_;
  full_reported_ = true;
  auto start = std::chrono::steady_clock::now();
  if (report && options_.on_full) {
    lock.unlock();
    options_.on_full();
    lock.lock();
  }
  room_.wait(lock, has_room);
  ++stats_.held_writes;
  stats_.held_nanos += uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::steady_clock::now() - start).count());
  return shutdown_ ? Status::Aborted("disk write log shut down") : Status::Ok();
}

void EpochWriteLog::AppendData(uint64_t offset, std::span<const uint8_t> data) {
  std::lock_guard lock(mu_);
  encoder_.AddData(offset, data);
}

void EpochWriteLog::Append(WriteKind kind, uint64_t offset, uint64_t length) {
  std::lock_guard lock(mu_);
  encoder_.Add(kind, offset, length);
}

void EpochWriteLog::CheckpointRequested() {
  {
    std::lock_guard lock(mu_);
    checkpoint_requested_ = true;
  }
  room_.notify_all();
}

Result<std::vector<uint8_t>> EpochWriteLog::CloseEpoch(uint64_t epoch) {
  std::vector<uint8_t> payload;
  {
    std::lock_guard lock(mu_);
    if (any_closed_ && epoch <= last_closed_) {
      return Status::InvalidArgument("disk write log: epoch " + std::to_string(epoch) + " after epoch " +
                                     std::to_string(last_closed_));
    }
    payload = encoder_.Finish(epoch, std::move(spare_));
    spare_ = {};
    last_closed_ = epoch;
    any_closed_ = true;
    checkpoint_requested_ = false;
    full_reported_ = false;
    ++stats_.closed_epochs;
  }
  room_.notify_all();
  return payload;
}

void EpochWriteLog::Recycle(std::vector<uint8_t> buffer) {
  std::lock_guard lock(mu_);
  if (buffer.capacity() > spare_.capacity()) spare_ = std::move(buffer);
}

void EpochWriteLog::Shutdown() {
  {
    std::lock_guard lock(mu_);
    shutdown_ = true;
  }
  room_.notify_all();
}

WriteLogStats EpochWriteLog::stats() const {
  std::lock_guard lock(mu_);
  WriteLogStats s = stats_;
  s.open_bytes = encoder_.bytes();
  s.open_writes = encoder_.count();
  return s;
}

Status ReplicatedDisk::Write(uint64_t offset, std::span<const uint8_t> data, bool fua) {
  TANDEM_RETURN_IF_ERROR(log_->WaitForRoom());
  Status st = image_->Write(offset, data, fua);
  if (!st.ok()) return LogWhatTheImageHolds(offset, data.size(), st);
  log_->AppendData(offset, data);
  return Status::Ok();
}

Status ReplicatedDisk::WriteZeroes(uint64_t offset, uint64_t length, bool fua) {
  return ChangeRange(WriteKind::kZero, offset, length, fua);
}

Status ReplicatedDisk::Trim(uint64_t offset, uint64_t length, bool fua) {
  return ChangeRange(WriteKind::kTrim, offset, length, fua);
}

Status ReplicatedDisk::ChangeRange(WriteKind kind, uint64_t offset, uint64_t length, bool fua) {
  TANDEM_RETURN_IF_ERROR(log_->WaitForRoom());
  Status st = kind == WriteKind::kZero ? image_->WriteZeroes(offset, length, fua) : image_->Trim(offset, length, fua);
  if (!st.ok()) return LogWhatTheImageHolds(offset, length, st);
  log_->Append(kind, offset, length);
  return Status::Ok();
}

// A change that failed may still have reached part of the range (a short write, then ENOSPC). The guest is told
// it failed and may read anything there, but both hosts must read the same thing: ship what the image holds now.
Status ReplicatedDisk::LogWhatTheImageHolds(uint64_t offset, uint64_t length, Status failure) {
  std::vector<uint8_t> chunk(size_t(std::min<uint64_t>(length, 1 << 20)));
  while (length > 0) {
    auto piece = std::span(chunk).first(size_t(std::min<uint64_t>(length, chunk.size())));
    if (!image_->Read(offset, piece).ok()) break;  // the divergence is left to the next resync by hashes
    log_->AppendData(offset, piece);
    offset += piece.size();
    length -= piece.size();
  }
  return failure;
}

}  // namespace tandem::disk
