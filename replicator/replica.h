// The standby's side of the protocol without the network: what the standby holds (replica RAM, the device state
// and number of the last applied epoch) and the rules for changing it. EpochReceiver feeds it records from a TCP
// connection; tests feed it streams from files and memory.
//
// Rules: an epoch is applied only when its EPOCH_END verified every page hash, the device state hash, the totals
// and the chain of record checksums; a delta epoch only when it is exactly the next epoch of the same primary
// generation; a full epoch only when it does not go backwards within its generation; nothing from a term older
// than one already seen. Anything else rejects the connection with an ACK that says why, and nothing of the
// rejected epoch is applied.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/status.h"
#include "replicator/epoch.h"
#include "replicator/epoch_codec.h"
#include "replicator/messages.h"
#include "replicator/transport.h"

namespace tandem::disk {
class DiskReplica;
}

namespace tandem::replicator {

// The last fully applied epoch: the replica RAM holds exactly its memory, `device_state` is its device state.
struct ResumePoint {
  uint64_t epoch = 0;
  VmDescriptor descriptor;
  std::vector<uint8_t> device_state;
};

struct ReplicaOptions {
  // RAM block name -> file the block is mapped from (MAP_SHARED), so the standby QEMU sees what was applied.
  std::map<std::string, std::string> file_backed_blocks;
  std::string expected_vm_name;  // empty: accept any
  int apply_threads = 4;         // large epochs (a full resync) are applied on this many; capped at usable CPUs
  int debug_apply_delay_ms = 0;  // tests: a slow standby
  // The standby's copy of the guest's disk (disk/replica.h), or null when the VM has no replicated disk. Only
  // the receiver thread uses it until Stop(); a primary must announce a disk exactly when this is set.
  disk::DiskReplica* disk = nullptr;
  // Send PAGE_HASHES of the replica to a version 5 primary when offering no resume point of its generation, so
  // that its full resync sends only the pages that differ (page_hashes.h). false: every such resync sends the
  // whole RAM (what version 4 did; bench/resync_bench compares the two).
  bool page_hashes = true;
};

struct ReplicaCounters {
  uint64_t last_applied = 0;
  uint64_t epochs_applied = 0;
  uint64_t epochs_rejected = 0;
  double last_apply_ms = 0;
  std::string last_error;
  DecodeError last_rejection = DecodeError::kNone;  // what was wrong with the bytes of the last rejection
  uint64_t disk_writes_applied = 0;  // entries of DISK_WRITES applied to the standby's disk
  uint64_t disk_bytes_applied = 0;   // their data bytes
  // An epoch is journaled on the standby's disk but not fully applied (an I/O error after the commit): no resume
  // point until DiskReplica::Recover() succeeds (the next HELLO or the failover retries it).
  bool disk_needs_recovery = false;
  bool has_resume_point = false;  // resume_point() would return one (filled by counters(), without the copy)
};

class Replica {
 public:
  Replica(ReplicaOptions options, Clock* clock);
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // A new connection: any half-received epoch of the previous one is dropped (it was never applied).
  void StartSession();
  // One record whose framing (length, checksum) RecordReader verified. On success *reply receives framed
  // records to send back, if any (the standby's HELLO, an epoch's ACK). On error nothing of the current epoch
  // was applied, *reply receives an ACK that says why, and the session is over; the DecodeError says what was
  // wrong (kNone for a failure on the standby's side, e.g. creating the replica).
  DecodeStatus OnRecord(const RecordView& record, std::vector<uint8_t>* reply);
  // The stream failed below the record level. Drops the epoch in progress. A corrupt record is a rejection
  // (counted, ACK in *reply); a stream that just ended or broke is not (the peer is gone, nothing to tell).
  void OnStreamError(const DecodeStatus& error, std::vector<uint8_t>* reply);

  // Finishes an epoch the standby's disk journaled but could not write (ReplicaCounters::disk_needs_recovery);
  // Ok when there is none. Not concurrently with OnRecord: the receiver calls it on its thread (HELLO), the
  // failover after the receiver stopped.
  Status RecoverDisk();
  // The last applied epoch, unless a live resync has not settled yet or the disk needs recovery (then nullopt:
  // nothing to resume from).
  std::optional<ResumePoint> resume_point() const;
  ReplicaCounters counters() const;
  // The replica RAM, nullptr before the first HELLO. For tests; not synchronized with OnRecord.
  const RamImage* image() const { return image_.get(); }

 private:
  DecodeStatus HandleHello(const RecordView& record, std::vector<uint8_t>* reply);
  DecodeStatus HandleEpochBegin(const RecordView& record);
  DecodeStatus HandleEpochEnd(const RecordView& record, std::vector<uint8_t>* reply);
  DecodeStatus Reject(const DecodeStatus& error, AckStatus status, std::vector<uint8_t>* reply);
  // The HELLO's disk handshake: both ends have a disk or neither; the standby's block hashes for the primary.
  DecodeStatus DiskHello(const HelloMessage& hello, std::vector<uint8_t>* reply);
  // The verified epoch's DISK_WRITES onto the standby's disk, before its RAM. On error nothing of the epoch is
  // applied, unless *decided: the disk committed the epoch (its journal) but could not finish writing it, so
  // the RAM must follow (disk and RAM stay one epoch) and the epoch is still not acknowledged.
  DecodeStatus ApplyDisk(const Epoch& staged, bool* decided);

  const ReplicaOptions options_;
  Clock* clock_;
  EpochDecoder decoder_;
  std::unique_ptr<RamImage> image_;
  std::vector<uint8_t> payload_;  // scratch for replies

  // Session (one connection).
  bool have_hello_ = false;
  bool session_failed_ = false;
  uint64_t session_term_ = 0;
  uint64_t session_generation_ = 0;
  VmDescriptor session_descriptor_;
  AckStatus reject_status_ = AckStatus::kOk;  // set by a handler that knows better than AckStatusFor
  uint64_t rejecting_epoch_ = 0;  // the epoch a failing EPOCH_BEGIN/EPOCH_END was about
  bool rejecting_epoch_valid_ = false;

  // Across sessions.
  uint64_t max_term_ = 0;
  mutable std::mutex mu_;  // guards what other threads read: the resume point and counters
  bool has_resume_ = false;
  // A page rebuilt from the replica failed its hash (see Reject): the resume point is kept for a failover but not
  // offered to the primary for a catch-up, until a full epoch has replaced the replica. Receiver thread only.
  bool replica_differs_ = false;
  uint64_t resume_generation_ = 0;
  // A live resync was applied: the replica mixes checkpoints until this epoch is applied (FORMAT.md, live
  // epochs), so it is no resume point (resume_point(), HELLO) meanwhile. 0: settled. Guarded by mu_.
  uint64_t settling_until_ = 0;
  uint32_t session_version_ = 0;
  bool session_disk_ = false;  // this connection's primary replicates a disk (its HELLO said so)
  // This connection's HELLO was followed by PAGE_HASHES of the replica and nothing was applied since: only then
  // may a full epoch keep pages (EpochBeginMessage::keeps).
  bool page_hashes_sent_ = false;
  ResumePoint resume_;
  ReplicaCounters counters_;
};

}  // namespace tandem::replicator
