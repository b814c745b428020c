// The guest's disk as the roles run it (disk/README.md): the primary serves its image to QEMU over NBD and cuts
// the write log at every checkpoint; the standby keeps its copy behind the journal and serves that same image to
// its warm QEMU, which does no I/O on it before a failover.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "disk/block_device.h"
#include "disk/nbd_server.h"
#include "disk/replica.h"
#include "disk/write_log.h"
#include "roles/options.h"

namespace tandem::roles {

// <state_dir>/disk.sock: QEMU's NBD client connects there (qemu::VmConfig::disk_socket).
std::string DiskSocketIn(const std::string& state_dir);

class PrimaryDisk {
 public:
  // Opens the image and serves it on `socket` (before QEMU starts: its -blockdev connects at startup).
  // `on_full` runs on the NBD thread when a write finds the open epoch full (ask QEMU for an early checkpoint).
  static Result<std::unique_ptr<PrimaryDisk>> Start(const DiskOptions& options, const std::string& socket,
                                                    const std::string& export_name, std::function<void()> on_full);
  ~PrimaryDisk();  // fails held writes, stops serving

  // QEMU announced a checkpoint: held writes go through (the vm_stop's drain waits for them).
  void CheckpointRequested() { log_.CheckpointRequested(); }
  // The barrier, VM stopped and drained: epoch `epoch`'s writes into *payload (its old buffer is reused).
  Status CloseEpoch(uint64_t epoch, std::vector<uint8_t>* payload);
  // What resyncs read (the image itself, as the guest wrote it).
  disk::BlockDevice* image() { return image_.get(); }
  nlohmann::json StatusJson() const;

 private:
  PrimaryDisk(std::unique_ptr<disk::ImageDevice> image, const DiskOptions& options, std::function<void()> on_full);
  std::unique_ptr<disk::ImageDevice> image_;
  disk::EpochWriteLog log_;
  disk::ReplicatedDisk replicated_;
  std::unique_ptr<disk::NbdServer> server_;
};

class StandbyDisk {
 public:
  // Opens the journaled copy (finishing what a crash interrupted) and serves the same image on `socket` for the
  // warm standby QEMU.
  static Result<std::unique_ptr<StandbyDisk>> Open(const DiskOptions& options, const std::string& socket,
                                                   const std::string& export_name);
  ~StandbyDisk();
  disk::DiskReplica* replica() { return replica_.get(); }

 private:
  std::unique_ptr<disk::DiskReplica> replica_;
  std::unique_ptr<disk::ImageDevice> serve_;
  std::unique_ptr<disk::NbdServer> server_;
};

}  // namespace tandem::roles
