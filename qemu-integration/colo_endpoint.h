// tandem as the migration target of a COLO primary QEMU: receives the precopy and every checkpoint from the
// unix socket QEMU migrates to, and answers COLO's control messages.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/fd.h"
#include "common/status.h"
#include "qemu-integration/colo_stream.h"
#include "qemu-integration/qmp.h"
#include "replicator/epoch.h"
#include "replicator/guest_ram.h"

namespace tandem::qemu {

// Monotonic timestamps (the endpoint's Env clock) of one checkpoint. The guest is paused from REPLY until tandem sends
// VMSTATE_LOADED (ResumeVm).
struct CheckpointTiming {
  int64_t request_ns = 0;       // CHECKPOINT_REQUEST read from the socket
  int64_t reply_ns = 0;         // CHECKPOINT_REPLY sent: QEMU stops the VM now
  int64_t loaded_ready_ns = 0;  // the epoch is whole in memory: tandem may send VMSTATE_LOADED
};

// Sets the primary's x-colo capability and x-checkpoint-delay, then starts migrating to unix:<unix_socket>
// (where a ColoEndpoint listens).
Status StartColoMigration(QmpClient& qmp, const std::string& unix_socket, int checkpoint_ms);

// The precopy, received into a fresh in-memory RamImage (the primary's mirror that seeds every standby).
struct Precopy {
  replicator::VmDescriptor descriptor;
  std::vector<uint8_t> device_state;
  std::unique_ptr<replicator::RamImage> image;  // ReceivePrecopyImage: a copy of all RAM
  std::unique_ptr<replicator::GuestRam> ram;    // ReceivePrecopyGuestRam: no copy of the shared blocks
};

class ColoEndpoint {
 public:
  // Listens on `unix_path` (replacing a stale socket file); sockets and the clock come from `env`, which must
  // outlive the endpoint.
  static Result<std::unique_ptr<ColoEndpoint>> Listen(const std::string& unix_path, Env* env = Env::Default());
  ~ColoEndpoint();
  ColoEndpoint(const ColoEndpoint&) = delete;
  ColoEndpoint& operator=(const ColoEndpoint&) = delete;

  // Waits for QEMU to connect, then stops listening (and removes the socket file).
  Status Accept(int timeout_ms);
  // Tees every byte received from QEMU to `fd` (not owned), for scripts/record-colo-stream.
  void SetRecordFd(int fd) { source_.record_fd = fd; }

  // The initial full copy; see ColoStreamParser::ParsePrecopy. Fails with Timeout if QEMU goes quiet for
  // `idle_timeout_ms` mid-precopy.
  Status ReceivePrecopy(const LayoutCallback& on_layout, replicator::VmDescriptor* descriptor,
                        std::vector<uint8_t>* device_state, int idle_timeout_ms = 30000);
  // ReceivePrecopy into a RamImage created for the layout QEMU announces.
  Result<Precopy> ReceivePrecopyImage(int idle_timeout_ms = 30000);
  // ReceivePrecopy into a GuestRam (replicator/guest_ram.h) over `shared_files` (RAM block name -> the file QEMU
  // keeps it in, share=on): the pages of those blocks are already in the file and are dropped, the small blocks
  // are copied. What the primary's shipper reads instead of a mirror.
  Result<Precopy> ReceivePrecopyGuestRam(const std::map<std::string, std::string>& shared_files,
                                         int idle_timeout_ms = 30000);
  // Tells QEMU the standby side is ready for checkpoints (once, after the precopy).
  Status SendCheckpointReady();
  // Waits up to timeout_ms for CHECKPOINT_REQUEST, replies, and reads the checkpoint: dirty pages into *epoch
  // (pages are appended; the caller Reset()s it) and the device state into epoch->device_state(). The VM stays
  // paused until ResumeVm().
  Status ReceiveCheckpoint(replicator::Epoch* epoch, int timeout_ms, CheckpointTiming* timing);
  // Called as soon as CHECKPOINT_REQUEST is read, before the reply: the disk's write log lets held writes
  // through then, so that the drain of the vm_stop that follows can finish (disk/README.md, backpressure).
  void OnCheckpointRequest(std::function<void()> hook) { on_request_ = std::move(hook); }
  // VMSTATE_RECEIVED + VMSTATE_LOADED: QEMU resumes the guest.
  Status ResumeVm();

  // Page counts of the last checkpoint (PAGE vs ZERO records).
  const RamSectionStats& last_checkpoint() const { return parser_.last_checkpoint(); }
  const RamSectionStats& precopy() const { return parser_.precopy(); }

 private:
  struct SocketSource final : ByteSource {
    int fd = -1;
    int record_fd = -1;
    int timeout_ms = 30000;  // per read: how long QEMU may stay silent
    Result<size_t> ReadSome(uint8_t* dst, size_t cap) override;
  };
  ColoEndpoint(std::string path, UniqueFd listener, Env* env);
  Status Send(ColoMessage message);
  Status SendRaw(const uint8_t* data, size_t len);

  std::string path_;
  Env* const env_;
  UniqueFd listener_, conn_;
  SocketSource source_;
  StreamReader reader_;
  ColoStreamParser parser_;
  bool precopy_done_ = false;
  std::function<void()> on_request_;
};

}  // namespace tandem::qemu
