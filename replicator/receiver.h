// The standby's side of replication: listens for the primary, applies only complete, verified epochs to the
// replica RAM (a file the warm standby QEMU maps) and acknowledges each one. Any bad input rejects the
// connection with an ACK that tells the primary why; nothing of a rejected or incomplete epoch is ever applied.
// The primary then reconnects and resyncs: with a catch-up epoch when this standby's HELLO offers the epoch it
// holds, in full when it offers none (Replica::HandleHello withholds it after a page rebuilt from the replica
// failed its hash). The protocol rules live in Replica (replica.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "common/env.h"
#include "common/fd.h"
#include "common/waker.h"
#include "common/status.h"
#include "replicator/link_security.h"
#include "replicator/replica.h"
#include "replicator/transport.h"

namespace tandem::replicator {

struct ReceiverOptions {
  std::string listen_address;  // "host:port", "[v6]:port" or "unix:/path"; port 0 picks a free one (see port())
  // RAM block name -> replica file. The file is kept across connections; a full epoch rewrites all of it.
  std::map<std::string, std::string> file_backed_blocks;
  std::string expected_vm_name;
  // The pre-shared key a primary must prove it holds, and the encryption it must ask for (link_security.h).
  LinkSecurity security;
  int io_timeout_ms = 2000;  // a record that stalls this long mid-way drops the connection
  IoEngine io_engine = IoEngine::kAuto;
  int apply_threads = 4;         // large epochs (a full resync) are applied on this many; capped at usable CPUs
  int debug_apply_delay_ms = 0;  // tests: a slow standby
  disk::DiskReplica* disk = nullptr;  // the standby's copy of the guest's disk (ReplicaOptions::disk)
  bool page_hashes = true;            // ReplicaOptions::page_hashes
};

struct ReceiverStats {
  bool primary_connected = false;
  uint64_t last_applied = 0;
  uint64_t epochs_applied = 0;
  uint64_t epochs_rejected = 0;
  uint64_t bytes_received = 0;
  double last_apply_ms = 0;
  std::string last_error;
  DecodeError last_rejection = DecodeError::kNone;  // what was wrong with the last epoch or connection rejected
  uint64_t disk_writes_applied = 0;
  uint64_t disk_bytes_applied = 0;
  bool disk_needs_recovery = false;
  bool has_resume_point = false;  // resume_point() would return one
  // Connections refused in the link handshake (nothing of them reached the replica), and why the last one was
  // (kAuthenticationFailed: no proof of the key, or a replayed one).
  uint64_t connections_refused = 0;
  DecodeError last_refusal = DecodeError::kNone;
};

class EpochReceiver {
 public:
  EpochReceiver(ReceiverOptions options, Clock* clock);
  ~EpochReceiver();  // Stop()s
  EpochReceiver(const EpochReceiver&) = delete;
  EpochReceiver& operator=(const EpochReceiver&) = delete;

  Status Start();
  int port() const { return port_; }
  // After return nothing is being applied and nothing more will be; the listening socket is closed.
  void Stop();
  // The last fully applied epoch: replica RAM + its device state. nullopt before the first one.
  std::optional<ResumePoint> resume_point() const { return replica_.resume_point(); }
  // After Stop(): finishes a disk epoch that was journaled but not written (Replica::RecoverDisk).
  Status RecoverDisk() { return replica_.RecoverDisk(); }
  ReceiverStats stats() const;

 private:
  void Loop();
  // Serves one primary connection until it ends, fails, is replaced by a newer one, or Stop().
  void Serve(std::unique_ptr<Transport> transport);
  // The link handshake; false (logged, counted, the refusal sent) when the connection is refused.
  bool Authenticate(Transport* transport, SecureLink* link);
  // After a rejection: reads and drops what the primary still sends until it closes (so our close does not turn
  // into a reset that could destroy the ACK in flight), for a bounded time.
  void Linger(Transport* transport);
  bool NewConnectionPending();

  const ReceiverOptions options_;
  Clock* clock_;
  Replica replica_;
  UniqueFd listen_fd_;
  Waker wake_;  // Stop() wakes the accept wait
  int port_ = 0;
  std::atomic<bool> stop_{false};
  bool stopped_ = false;
  std::thread thread_;

  mutable std::mutex mu_;
  Transport* current_ = nullptr;  // guarded by mu_, for Stop() to shut it down
  bool connected_ = false;
  uint64_t bytes_received_ = 0;
  uint64_t connections_refused_ = 0;
  DecodeError last_refusal_ = DecodeError::kNone;
  std::string last_error_;
};

}  // namespace tandem::replicator
