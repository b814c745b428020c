// The standby's copy of the guest's disk: verified epochs' DISK_WRITES applied through a redo journal, so a crash
// at any point leaves the image holding whole epochs only (the safety argument is in disk/README.md).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/status.h"
#include "disk/disk_writes.h"
#include "disk/file.h"

namespace tandem::disk {

struct DiskReplicaOptions {
  std::string image_path;    // raw image, the same size as the primary's
  std::string journal_path;  // default: image_path + ".journal"; `journal_path + ".tmp"` is the entry being written
  // Allocate every block of the image at open, so applying an epoch never needs space (ENOSPC can then only hit
  // the journal, before the image is touched). Off only for file systems that cannot (copy-on-write).
  bool preallocate = true;
};

// What Open found and did.
struct DiskRecovery {
  bool discarded_incomplete = false;  // a journal entry that was never completed (its epoch was never acked)
  bool replayed = false;              // a complete entry not marked applied: applied again
  bool has_epoch = false;             // a journal entry has ever been applied
  uint64_t epoch = 0;                 // then: the image holds every write up to this epoch
};

class DiskReplica {
 public:
  // Opens the image and finishes what a crash interrupted (see DiskRecovery). A damaged journal is an error:
  // the image cannot be trusted and must be resynced by hashes (block_hash.h).
  static Result<std::unique_ptr<DiskReplica>> Open(const DiskReplicaOptions& options,
                                                   FileSystem* fs = DefaultFileSystem());

  // Applies one verified epoch's DISK_WRITES payload. The payload is decoded and checked completely first (a
  // bad one is refused with nothing written); then journaled and synced; then applied to the image and synced;
  // then the journal entry is marked applied. Returns only when the writes are durable: the epoch may be
  // acknowledged after that. On an error before the journal is complete (ENOSPC: IsNoSpace) the image is as it
  // was; after it, the image may hold part of the epoch and the replica refuses further epochs until Recover()
  // (or the next Open) applies the whole journaled epoch again.
  Status Apply(std::span<const uint8_t> payload);
  // Applies the journaled epoch again after a failed Apply (idempotent: every entry is an absolute write).
  Status Recover();

  // A full resync starts a new sequence of epochs (a new primary numbers from its own start): the next Apply may
  // carry any epoch number. The journal itself is unaffected.
  void RestartEpochs() { has_epoch_ = false; }

  bool needs_recovery() const { return needs_recovery_; }
  const DiskRecovery& recovery() const { return recovery_; }
  // The last epoch applied (journaled or empty); meaningful once has_epoch().
  uint64_t applied_epoch() const { return applied_epoch_; }
  bool has_epoch() const { return has_epoch_; }
  uint64_t size() const { return size_; }
  File& image() { return *image_; }

 private:
  DiskReplica(const DiskReplicaOptions& options, FileSystem* fs, std::unique_ptr<File> image, uint64_t size);
  Status WriteJournal(uint64_t epoch, std::span<const uint8_t> payload);
  Status ApplyToImage(const DiskWrites& writes);
  Status MarkApplied();
  Status ReplayJournal();

  DiskReplicaOptions options_;
  FileSystem* fs_;
  std::unique_ptr<File> image_;
  std::unique_ptr<File> journal_;  // the committed entry, open to mark it applied
  uint64_t size_;
  bool needs_recovery_ = false;
  bool has_epoch_ = false;
  uint64_t applied_epoch_ = 0;
  DiskRecovery recovery_;
};

}  // namespace tandem::disk
