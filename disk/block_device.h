// What the NBD server serves: a fixed-size array of bytes. ImageDevice is a raw image file; ReplicatedDisk
// (write_log.h) wraps one and logs every change for the standby.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "common/status.h"
#include "disk/file.h"

namespace tandem::disk {

// Callers check bounds (offset + length <= size()); implementations may assume them.
class BlockDevice {
 public:
  virtual ~BlockDevice() = default;
  virtual uint64_t size() const = 0;
  virtual Status Read(uint64_t offset, std::span<uint8_t> out) = 0;
  // fua: durable before it returns (NBD_CMD_FLAG_FUA).
  virtual Status Write(uint64_t offset, std::span<const uint8_t> data, bool fua) = 0;
  virtual Status WriteZeroes(uint64_t offset, uint64_t length, bool fua) = 0;
  // The range reads as zeros afterwards on both hosts (NBD allows anything; zeros keep the two images equal).
  virtual Status Trim(uint64_t offset, uint64_t length, bool fua) = 0;
  virtual Status Flush() = 0;
};

// A raw image file (qcow2 is not served: convert it with `qemu-img convert -O raw`). Thread-safe.
class ImageDevice : public BlockDevice {
 public:
  static Result<std::unique_ptr<ImageDevice>> Open(const std::string& path, FileSystem* fs = DefaultFileSystem());
  explicit ImageDevice(std::unique_ptr<File> file, uint64_t size) : file_(std::move(file)), size_(size) {}

  uint64_t size() const override { return size_; }
  Status Read(uint64_t offset, std::span<uint8_t> out) override;
  Status Write(uint64_t offset, std::span<const uint8_t> data, bool fua) override;
  Status WriteZeroes(uint64_t offset, uint64_t length, bool fua) override;
  Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  Status Flush() override;

 private:
  std::mutex mu_;  // File calls are positional; the lock only keeps FUA's sync ordered after its write
  std::unique_ptr<File> file_;
  uint64_t size_;
};

}  // namespace tandem::disk
