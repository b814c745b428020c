// The primary's side of replication: takes each checkpoint's epoch, ships it to the standby behind the VM's
// back, and keeps no copy of the guest's RAM: every dirty page is XOR-encoded against the bounded delta base
// (DeltaBase: the last shipped version of recently rewritten pages), or sent as its changed chunks when
// PageFingerprints knows the standby's copy, else standalone; resyncs read the guest's RAM itself (GuestRam)
// while the VM runs, as live epochs the standby can resume from once the epochs after them are applied.
//
// A sender thread connects to the standby (retrying every reconnect_interval_ms), exchanges HELLOs, resyncs it,
// then sends every submitted epoch in order. The resync is a catch-up epoch (the pages changed since the epoch
// the standby's HELLO says it holds, when it holds one of ours and missed under a quarter of RAM: a broken
// connection, or a rejected epoch, of which nothing was applied) or else a full epoch (the whole RAM and the
// current device state: first sync, a restarted standby, or a standby that offers no epoch because a page
// rebuilt from its replica failed its hash). Acks come back on the same socket and are read by a second
// thread. While no standby holds a full copy the VM runs UNPROTECTED (logged once per transition): Submit does
// not wait, and the epochs are folded into the history for the next resync (or, while a resync is being sent
// and the queue is full, merged into the newest queued epoch). Once protected, Submit blocks
// while max_in_flight epochs are unacknowledged, which keeps the VM paused: the backpressure that stops a slow
// standby from falling further behind. A standby that stops acknowledging for io_timeout_ms is dropped.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "common/env.h"
#include "common/status.h"
#include "replicator/compression_governor.h"
#include "replicator/epoch.h"
#include "replicator/epoch_codec.h"
#include "replicator/epoch_queue.h"
#include "replicator/page_codec.h"
#include "replicator/delta_base.h"
#include "replicator/guest_ram.h"
#include "replicator/link_security.h"
#include "replicator/page_fingerprints.h"
#include "replicator/page_hashes.h"
#include "replicator/shipper_history.h"
#include "replicator/transport.h"

namespace tandem::disk {
class BlockDevice;
struct BlockHashes;
}

namespace tandem::replicator {

struct ShipperOptions {
  std::string standby_address;  // "host:port", "[v6]:port" or "unix:/path" (common/net_address.h)
  // The pre-shared key both ends prove they hold, and whether records are encrypted (link_security.h). Required.
  LinkSecurity security;
  int max_in_flight = 2;
  int reconnect_interval_ms = 200;
  int io_timeout_ms = 2000;
  uint64_t term = 1;
  uint64_t debug_die_mid_epoch = 0;  // raise(SIGKILL) after sending half of that epoch's records
  uint64_t debug_corrupt_epoch = 0;  // flip one bit of a page payload of that epoch (caught by its page hash)
  PageCodecOptions codec;
  // replication.compression = auto: CompressionGovernor picks the effort per epoch (codec.compression is then
  // only the starting point); otherwise every epoch is encoded with `codec`.
  bool adaptive_compression = false;
  // Threads that encode large epochs (EpochEncoder::kParallelMinPages pages or more, and full resyncs), capped
  // at the CPUs the process may run on. 1: the sender thread alone.
  int encode_threads = 4;
  IoEngine io_engine = IoEngine::kAuto;
  // The delta base's budget (replication.delta_base_mib); 0: DefaultDeltaBaseBudget of the guest's RAM.
  uint64_t delta_base_bytes = 0;
  // The guest's disk as the primary serves it (disk/), or null when the VM has no replicated disk. Resyncs read
  // it (only the blocks whose hash differs on the standby); the epochs' DISK_WRITES come with the epochs.
  disk::BlockDevice* disk = nullptr;
  // Resyncs (full, by page hashes, catch-up) are read and encoded on threads of this nice value (0: the sender
  // thread's own priority): they compete with the running VM for the CPU, and the VM's checkpoints come first.
  int resync_nice = 10;
};

struct ShipperStats {
  bool standby_connected = false;  // connected AND holding a full copy: the VM is protected
  bool standby_link_up = false;    // connected (HELLOs exchanged), whether or not its resync is done
  uint64_t last_submitted = 0;
  uint64_t last_sent = 0;
  uint64_t last_acked = 0;
  uint64_t epochs_sent = 0;
  uint64_t bytes_sent = 0;
  uint64_t resyncs = 0;  // full epochs sent
  uint64_t catch_ups = 0;  // reconnected standbys sent only what they missed (EpochEncoder::EncodeCatchUp)
  uint64_t epochs_merged = 0;  // submitted while unprotected with a full queue: merged into the newest queued one
  std::string compression;     // what epochs are encoded with now (CompressionGovernor::Describe)
  uint64_t compression_changes = 0;
  // The delta base (DeltaBaseCounters) and what it and the fingerprints hold.
  uint64_t delta_base_hits = 0;
  uint64_t delta_base_misses = 0;
  uint64_t delta_base_evictions = 0;
  uint64_t delta_base_mib = 0;
  uint64_t fingerprints_mib = 0;
  uint64_t disk_resync_blocks = 0;  // disk blocks sent by resyncs (those whose hash differed on the standby)
  uint64_t disk_resync_bytes = 0;
  // For metrics (metrics/, roles/role_metrics.h). Raw: the guest bytes the epochs sent stand for (pages x 4096
  // plus device state; a resync's pages included), against bytes_sent on the wire.
  uint64_t raw_bytes_sent = 0;
  // The link's drain rate the last epoch measured (LinkMeter); 0 when it never saw the link busy.
  uint64_t link_bytes_per_s = 0;
  // How long the oldest epoch not yet acknowledged has waited since it was submitted (0 when none waits):
  // the recovery point's age, were the primary lost now.
  double ack_lag_ms = 0;
  // A resync is being sent or awaits the ack that settles it.
  bool resync_active = false;
  // The resync being sent, or the last one: RAM bytes it ships (the whole RAM for a full one, the pages that differ
  // for one by page hashes, the changed pages for a catch-up) and how many of them were encoded and handed to the
  // link so far. Equal once it is sent; both 0 before the first resync.
  uint64_t resync_total_bytes = 0;
  uint64_t resync_sent_bytes = 0;
  uint64_t hash_resyncs = 0;        // full resyncs that kept the standby's pages whose hash matched (page_hashes.h)
  uint64_t hash_resync_kept_bytes = 0;  // RAM bytes those kept instead of sending, in total
  std::string last_error;
  // Why the last connection's link handshake failed (kAuthenticationFailed: the standby did not prove it holds
  // the key, or refused ours); kNone once a handshake succeeds.
  DecodeError last_link_error = DecodeError::kNone;
};

class EpochShipper {
 public:
  EpochShipper(ShipperOptions options, Clock* clock);
  ~EpochShipper();  // Stop()s
  EpochShipper(const EpochShipper&) = delete;
  EpochShipper& operator=(const EpochShipper&) = delete;

  // `ram` reads the VM's RAM (its copied blocks hold epoch `first_epoch`, the precopy) and `device_state` is its
  // device state. Submitted epochs must be numbered first_epoch + 1, + 2, ...
  Status Start(const VmDescriptor& descriptor, std::unique_ptr<GuestRam> ram, std::vector<uint8_t> device_state,
               uint64_t first_epoch);
  // An epoch to fill (recycled: no allocation in steady state). The caller Reset()s it.
  std::unique_ptr<Epoch> Borrow();
  // Queues an epoch for shipping. Blocks while the VM is protected and max_in_flight epochs are unacked.
  void Submit(std::unique_ptr<Epoch> epoch);
  ShipperStats stats() const;
  // Joins the threads and closes the connection; epochs not yet sent are dropped. Idempotent.
  void Stop();

 private:
  struct Connection;
  void SenderLoop();
  Status Connect(std::unique_ptr<Connection>* out);
  Status Serve(Connection& conn);
  // A standby that (re)connects either holds an epoch of ours and gets what changed since (SendCatchUp), or
  // gets the whole RAM (SendFull). The catch-up is chosen when ShipperHistory::ChangedSince finds few enough
  // pages changed (a standby that cannot vouch for its replica offers no epoch: Replica::HandleHello).
  Status SendFull(Connection& conn);
  Status SendCatchUp(Connection& conn, std::span<const PageRef> changed);
  // Runs `encode` (a resync's reading and encoding) on a thread of options_.resync_nice with an encoder of its
  // own, whose helper threads inherit that priority, and counts its progress (stats_.resync_*, a log line at most
  // every 2 s) over `total_bytes` of RAM.
  Status RunResync(Connection& conn, uint64_t total_bytes,
                   const std::function<Status(EpochEncoder& encoder, EpochSink* sink)>& encode);
  void SetResyncTotal(uint64_t bytes);  // the resync being run turns out to ship `bytes` of RAM
  // The resync's disk part for epoch `epoch`: the blocks of options_.disk whose hash differs from the standby's
  // (its DISK_HASHES), as one DISK_WRITES payload; empty without a disk.
  Result<std::vector<uint8_t>> DiskResync(const Connection& conn, uint64_t epoch);
  // mu_ held: epoch `epoch` is out (raw_bytes of guest memory as wire_bytes) and awaits its ack within
  // io_timeout_ms x the factor (or applies the ack that came first).
  void NoteSentLocked(Connection& conn, uint64_t epoch, uint64_t raw_bytes, uint64_t wire_bytes,
                      int ack_timeout_factor);
  void StartResyncLocked();  // mu_ held: a resync starts (resync_active until the ack that settles it)
  void ApplyAckLocked(uint64_t epoch);  // mu_ held: the standby holds every epoch up to `epoch`
  void AckLoop(Connection* conn);
  void FailConnection(Connection* conn, const Status& why);
  // Folds queued epochs into the history without sending them (no standby to send them to).
  void FoldQueued();
  void Recycle(std::unique_ptr<Epoch> epoch);
  void RecycleLocked(std::unique_ptr<Epoch> epoch);  // mu_ held
  void MarkUnprotected(const Status& why);
  void MarkProtectedLocked(uint64_t standby_epoch);  // mu_ held: the standby holds everything up to resync_epoch_
  std::unique_ptr<Epoch> PopQueued();
  bool MergeIntoNewestQueued(const Epoch& epoch);
  // After epoch `number` was shipped: feeds the governor and applies its choice to the encoder. True when the
  // compression changed.
  bool SteerCompression(uint64_t number, const ShipSample& sample);

  const ShipperOptions options_;
  Clock* clock_;
  uint64_t generation_ = 0;

  // Sender thread only.
  VmDescriptor descriptor_;
  ShipperHistory history_;
  std::unique_ptr<PageFingerprints> fingerprints_;
  std::unique_ptr<DeltaBase> delta_base_;
  // A resync: how it reads the RAM, and the epoch after which a live one is exact (ResyncSource::settles_after).
  ResyncSource ResyncOf(uint64_t epoch, uint64_t* settles_at);
  void CopyDeltaBaseStatsLocked();  // mu_ held
  std::unique_ptr<EpochEncoder> encoder_;
  CompressionGovernor governor_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool started_ = false;
  bool stop_ = false;
  EpochQueue queue_;  // submitted, unsent epochs
  std::vector<std::unique_ptr<Epoch>> pool_;
  AckWindow in_flight_;  // sent, unacknowledged epochs
  size_t sending_ = 0;  // popped from the queue, being encoded and sent
  bool protected_ = false;
  bool unprotected_logged_ = false;
  bool merge_logged_ = false;  // once per unprotected spell
  uint64_t merge_refused_epoch_ = 0;
  // The epoch whose ack makes the VM protected: the full or catch-up epoch, or for a live one the epoch it
  // settles at.
  uint64_t resync_epoch_ = 0;
  Connection* current_ = nullptr;
  ShipperStats stats_;
  // When each recent epoch was submitted (slot number % size), for stats().ack_lag_ms; an epoch whose slot was
  // reused since is aged from the last ack instead.
  std::array<std::pair<uint64_t, int64_t>, 256> submitted_at_{};
  int64_t last_ack_ns_ = 0;
  std::thread sender_;
};

}  // namespace tandem::replicator
