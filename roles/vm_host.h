// The host-facing parts of the roles behind small interfaces, so the roles run in unit tests without KVM or QEMU
// (tests/roles/fakes.h). qemu_host.h implements them over qemu-integration/.
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "qemu-integration/colo_endpoint.h"
#include "qemu-integration/qemu_args.h"
#include "replicator/epoch.h"
#include "roles/options.h"
#include "roles/outputs.h"

namespace tandem::roles {

// One QEMU of this host: the process and its QMP monitor. Destroying it kills the process.
class Vm {
 public:
  virtual ~Vm() = default;
  virtual pid_t pid() const = 0;
  virtual bool Running() = 0;
  virtual void Kill(int sig) = 0;
  // QMP; safe to call from several threads.
  virtual Result<nlohmann::json> Execute(const std::string& command, const nlohmann::json& arguments = nullptr,
                                         int timeout_ms = 5000) = 0;
  virtual Result<std::vector<nlohmann::json>> TakeEvents() = 0;
  // Primary: start COLO checkpointing to unix:<unix_socket> (where a CheckpointSource listens).
  virtual Status StartColoMigration(const std::string& unix_socket, int checkpoint_ms) = 0;
  // Standby: load `stream` (qemu::BuildResumeStream) through unix:<incoming_socket> and run.
  virtual Status Resume(const std::string& stream, const std::string& incoming_socket, int timeout_ms) = 0;
};

// The primary QEMU's checkpoints (qemu::ColoEndpoint). The VM stays paused from ReceiveCheckpoint to ResumeVm.
class CheckpointSource {
 public:
  virtual ~CheckpointSource() = default;
  virtual Status Accept(int timeout_ms) = 0;
  // Into a GuestRam (Precopy::ram) over `shared_files` (RAM block name -> QEMU's file for it).
  virtual Result<qemu::Precopy> ReceivePrecopy(const std::map<std::string, std::string>& shared_files) = 0;
  virtual Status SendCheckpointReady() = 0;
  virtual Status ReceiveCheckpoint(replicator::Epoch* epoch, int timeout_ms, qemu::CheckpointTiming* timing) = 0;
  virtual Status ResumeVm() = 0;
  // `hook` runs when QEMU's CHECKPOINT_REQUEST is read, before the reply (the disk's write log: disk.h).
  virtual void OnCheckpointRequest(std::function<void()> hook) { (void)hook; }
};

class VmHost {
 public:
  virtual ~VmHost() = default;
  // Spawns QEMU (log in <state_dir>/qemu.log) and connects to its QMP socket.
  virtual Result<std::unique_ptr<Vm>> Launch(const qemu::VmConfig& vm, qemu::QemuRole role,
                                             const std::string& state_dir) = 0;
  virtual Result<std::unique_ptr<CheckpointSource>> ListenForCheckpoints(const std::string& unix_socket) = 0;
  // The guest's console, started: listens on <state_dir>/console.sock (before QEMU starts: its chardev connects
  // once, at startup) and appends released bytes to `log`.
  virtual Result<std::unique_ptr<OutputChannel>> OpenConsole(const std::string& state_dir,
                                                             const std::string& log) = 0;
  // The guest's NIC, started: opens and brings up the TAP, binds <state_dir>/nic.sock.
  virtual Result<std::unique_ptr<OutputChannel>> OpenNic(const NicOptions& nic, const std::string& state_dir) = 0;
};

}  // namespace tandem::roles
