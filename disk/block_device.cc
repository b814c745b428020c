#include "disk/block_device.h"

namespace tandem::disk {

Result<std::unique_ptr<ImageDevice>> ImageDevice::Open(const std::string& path, FileSystem* fs) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<File> file, fs->Open(path, FileSystem::Mode::kReadWrite));
  TANDEM_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  if (size == 0) return Status::InvalidArgument("disk image " + path + " is empty");
  return std::make_unique<ImageDevice>(std::move(file), size);
}

Status ImageDevice::Read(uint64_t offset, std::span<uint8_t> out) {
  return file_->PRead(offset, out);
}

Status ImageDevice::Write(uint64_t offset, std::span<const uint8_t> data, bool fua) {
  std::lock_guard lock(mu_);
  TANDEM_RETURN_IF_ERROR(file_->PWrite(offset, data));
  return fua ? file_->Sync() : Status::Ok();
}

Status ImageDevice::WriteZeroes(uint64_t offset, uint64_t length, bool fua) {
  std::lock_guard lock(mu_);
  TANDEM_RETURN_IF_ERROR(file_->ZeroRange(offset, length, /*deallocate=*/false));
  return fua ? file_->Sync() : Status::Ok();
}

Status ImageDevice::Trim(uint64_t offset, uint64_t length, bool fua) {
  std::lock_guard lock(mu_);
  TANDEM_RETURN_IF_ERROR(file_->ZeroRange(offset, length, /*deallocate=*/true));
  return fua ? file_->Sync() : Status::Ok();
}

Status ImageDevice::Flush() {
  std::lock_guard lock(mu_);
  return file_->Sync();
}

}  // namespace tandem::disk
