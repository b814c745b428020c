#include "roles/disk.h"

#include <cinttypes>

#include "common/log.h"

namespace tandem::roles {

std::string DiskSocketIn(const std::string& state_dir) { return state_dir + "/disk.sock"; }

namespace {

disk::WriteLogOptions LogOptions(const DiskOptions& options, std::function<void()> on_full) {
  disk::WriteLogOptions log;
  log.byte_limit = options.max_epoch_bytes;
  log.on_full = std::move(on_full);
  return log;
}

}  // namespace

PrimaryDisk::PrimaryDisk(std::unique_ptr<disk::ImageDevice> image, const DiskOptions& options,
                         std::function<void()> on_full)
    : image_(std::move(image)),
      log_(image_->size(), LogOptions(options, std::move(on_full))),
      replicated_(image_.get(), &log_) {}

Result<std::unique_ptr<PrimaryDisk>> PrimaryDisk::Start(const DiskOptions& options, const std::string& socket,
                                                        const std::string& export_name,
                                                        std::function<void()> on_full) {
  auto image = disk::ImageDevice::Open(options.image_path);
  if (!image.ok()) return image.status().WithContext("disk image " + options.image_path);
  std::unique_ptr<PrimaryDisk> disk(new PrimaryDisk(std::move(image).value(), options, std::move(on_full)));
  TANDEM_ASSIGN_OR_RETURN(disk->server_, disk::NbdServer::Start({socket, export_name, "tandem " + export_name},
                                                               &disk->replicated_));
  TLOG_INFO("disk", "serving disk %s (%" PRIu64 " MiB) to QEMU on %s: every write is logged with its epoch",
            options.image_path.c_str(), disk->image_->size() >> 20, socket.c_str());
  return disk;
}

PrimaryDisk::~PrimaryDisk() {
  log_.Shutdown();
  if (server_) server_->Stop();
}

Status PrimaryDisk::CloseEpoch(uint64_t epoch, std::vector<uint8_t>* payload) {
  if (payload->capacity() > 0) log_.Recycle(std::move(*payload));  // cleared by Epoch::Reset, capacity kept
  TANDEM_ASSIGN_OR_RETURN(*payload, log_.CloseEpoch(epoch));
  return Status::Ok();
}

nlohmann::json PrimaryDisk::StatusJson() const {
  const disk::WriteLogStats log = log_.stats();
  const disk::NbdServerStats nbd = server_->stats();
  return {{"open_epoch_bytes", log.open_bytes},
          {"held_writes", log.held_writes},
          {"held_ms", log.held_nanos / 1e6},
          {"nbd_requests", nbd.requests},
          {"nbd_errors", nbd.error_replies}};
}

Result<std::unique_ptr<StandbyDisk>> StandbyDisk::Open(const DiskOptions& options, const std::string& socket,
                                                       const std::string& export_name) {
  std::unique_ptr<StandbyDisk> disk(new StandbyDisk());
  disk::DiskReplicaOptions replica;
  replica.image_path = options.image_path;
  auto opened = disk::DiskReplica::Open(replica);
  if (!opened.ok()) return opened.status().WithContext("standby disk " + options.image_path);
  disk->replica_ = std::move(opened).value();
  const disk::DiskRecovery& recovery = disk->replica_->recovery();
  if (recovery.discarded_incomplete || recovery.replayed) {
    TLOG_WARN("disk", "standby disk %s: %s%s", options.image_path.c_str(),
              recovery.discarded_incomplete ? "an unfinished journal entry (never acknowledged) discarded " : "",
              recovery.replayed ? "a journaled epoch applied again" : "");
  }
  TANDEM_ASSIGN_OR_RETURN(disk->serve_, disk::ImageDevice::Open(options.image_path));
  TANDEM_ASSIGN_OR_RETURN(disk->server_,
                          disk::NbdServer::Start({socket, export_name, "tandem " + export_name}, disk->serve_.get()));
  return disk;
}

StandbyDisk::~StandbyDisk() {
  if (server_) server_->Stop();
}

}  // namespace tandem::roles
