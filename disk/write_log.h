// The primary's epoch write log: every change the guest makes to its disk, cut at the checkpoint barrier.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "common/status.h"
#include "disk/block_device.h"
#include "disk/disk_writes.h"

namespace tandem::disk {

struct WriteLogOptions {
  // Encoded bytes the open epoch may hold. Past it the next write waits (its NBD reply is held, so the guest's
  // I/O stalls) until the epoch is closed or a checkpoint is announced. Must exceed one request (32 MiB).
  uint64_t byte_limit = 256ull << 20;
  // Called (on the NBD thread, without the log's lock) when a write starts waiting for room, once per epoch:
  // the owner may ask QEMU for an early checkpoint instead of letting the guest stall until the next one.
  std::function<void()> on_full;
};

struct WriteLogStats {
  uint64_t open_bytes = 0;      // encoded bytes of the open epoch
  uint32_t open_writes = 0;     // entries in the open epoch
  uint64_t held_writes = 0;     // writes that had to wait for room, since start
  uint64_t held_nanos = 0;      // total time they waited
  uint64_t closed_epochs = 0;
};

// Thread-safe: the NBD thread appends, the checkpoint loop closes epochs.
class EpochWriteLog {
 public:
  EpochWriteLog(uint64_t disk_size, WriteLogOptions options = {});

  // Waits while the open epoch is over the byte limit and no checkpoint is announced. Aborted after Shutdown.
  Status WaitForRoom();
  void AppendData(uint64_t offset, std::span<const uint8_t> data);
  void Append(WriteKind kind, uint64_t offset, uint64_t length);  // kZero / kTrim

  // QEMU sent CHECKPOINT_REQUEST: held writes go through until CloseEpoch. They must: the vm_stop that follows
  // drains every in-flight request, and the epoch is only closed after that drain.
  void CheckpointRequested();
  // The barrier: the checkpoint's VMSTATE_SEND arrived (the VM is stopped and drained). Returns the epoch's
  // writes as one DISK_WRITES payload and opens the next epoch. Epoch numbers must increase.
  Result<std::vector<uint8_t>> CloseEpoch(uint64_t epoch);
  // Hands a shipped payload's buffer back so the next epoch reuses its capacity instead of growing a new one.
  void Recycle(std::vector<uint8_t> buffer);
  // Releases and fails every waiting write (shutdown, failover); later waits fail at once.
  void Shutdown();

  WriteLogStats stats() const;

 private:
  const WriteLogOptions options_;
  mutable std::mutex mu_;
  std::condition_variable room_;
  DiskWritesEncoder encoder_;
  std::vector<uint8_t> spare_;
  uint64_t last_closed_ = 0;
  bool any_closed_ = false;
  bool checkpoint_requested_ = false;
  bool full_reported_ = false;
  bool shutdown_ = false;
  WriteLogStats stats_;
};

// The device the primary serves: every change goes to the local image first (the guest reads its own writes),
// then into the log; only then does the NBD server reply. A change that failed locally is not logged.
class ReplicatedDisk : public BlockDevice {
 public:
  ReplicatedDisk(BlockDevice* image, EpochWriteLog* log) : image_(image), log_(log) {}

  uint64_t size() const override { return image_->size(); }
  Status Read(uint64_t offset, std::span<uint8_t> out) override { return image_->Read(offset, out); }
  Status Write(uint64_t offset, std::span<const uint8_t> data, bool fua) override;
  Status WriteZeroes(uint64_t offset, uint64_t length, bool fua) override;
  Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  Status Flush() override { return image_->Flush(); }

 private:
  // WriteZeroes and Trim: the same path with another kind of change.
  Status ChangeRange(WriteKind kind, uint64_t offset, uint64_t length, bool fua);
  Status LogWhatTheImageHolds(uint64_t offset, uint64_t length, Status failure);

  BlockDevice* image_;
  EpochWriteLog* log_;
};

}  // namespace tandem::disk
