// The part the NIC and the serial console share: guest output read from a socket QEMU writes to, held per epoch
// (HoldQueue) and written to its destination once the standby has acknowledged the epoch. See README.md for
// why that is safe and where the checkpoint loop must mark the epoch boundary.
//
// Thread-safe: one loop (Start, or PollOnce from a test) moves bytes; the checkpoint loop calls OnEpochBoundary,
// the shipper's ack path ReleaseThrough, the role DropUnreleased / SetPassThrough, from their own threads.
#pragma once

#include <poll.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "common/env.h"
#include "common/fd.h"
#include "common/status.h"
#include "output-commit/hold_queue.h"

namespace tandem::output_commit {

struct OutputStats {
  HoldCounters hold;
  uint64_t acked_epoch = 0;          // the highest ReleaseThrough
  bool pass_through = false;
  bool backpressured = false;        // the queue is full: the guest's socket is not read
  uint64_t backpressure_events = 0;
  uint64_t backpressure_ns = 0;      // total time spent backpressured (the current spell included)
  uint64_t sink_errors = 0;          // records the destination refused for good (the wire lost them; logged)
  uint64_t oversize_dropped = 0;     // datagrams longer than max_record_bytes (no NIC sends them; logged)
  uint64_t foreign_dropped = 0;      // datagrams from a sender other than QEMU's socket
  uint64_t inbound_frames = 0;       // NIC: outside -> guest, passed at once
  uint64_t inbound_dropped = 0;      // NIC: QEMU's socket full or gone (a full switch port drops the same way)
  bool source_connected = false;     // console: QEMU's chardev is connected
};

class HeldOutput {
 public:
  virtual ~HeldOutput();
  HeldOutput(const HeldOutput&) = delete;
  HeldOutput& operator=(const HeldOutput&) = delete;

  // Ends the open epoch: everything QEMU wrote to the socket so far is read (non-blocking) and belongs to
  // `epoch`; what comes after belongs to the next one. Call it with the VM stopped for checkpoint `epoch`:
  // after VMSTATE_SEND arrived (ColoEndpoint::ReceiveCheckpoint returned) and before VMSTATE_LOADED is sent
  // (ColoEndpoint::ResumeVm). Epochs must increase. While the queue is full the drain stops early: the rest
  // is read later and counted in a later epoch (safe).
  Status OnEpochBoundary(uint64_t epoch);
  // The standby holds epoch `acked`: everything of epochs <= acked leaves, in order. Lower acks are ignored.
  void ReleaseThrough(uint64_t acked);
  // Forgets everything not released yet (a superseded primary; see README.md). Returns the records dropped.
  uint64_t DropUnreleased();
  // On: everything held and everything read from now on leaves at once (a VM with no standby that could ever
  // resume it from an older epoch: the new primary after a failover). Off: hold again from the open epoch.
  void SetPassThrough(bool on);
  OutputStats stats() const;

  // Runs PollOnce in a thread until Stop() (or the destructor).
  void Start();
  void Stop();
  // One round of the loop: waits up to timeout_ms for the sockets, then moves what is ready.
  Status PollOnce(int timeout_ms);

 protected:
  HeldOutput(const HoldLimits& limits, Clock* clock, const char* name);
  enum class WriteResult { kDone, kWouldBlock, kFailed };

  // mu_ held. Reads what the source has now into the queue; stops at EAGAIN or when the queue is full
  // (NoteFullLocked).
  virtual Status DrainSourceLocked() = 0;
  // mu_ held. One record to the destination.
  virtual WriteResult WriteSinkLocked(std::span<const uint8_t> record) = 0;
  // mu_ held. Adds the module's fds to `fds` (after the wake fd) and, after poll, handles them.
  virtual void AddPollFdsLocked(std::vector<pollfd>* fds) = 0;
  virtual Status HandlePollLocked(const std::vector<pollfd>& fds) = 0;
  virtual void FillStatsLocked(OutputStats*) const {}

  // The next record (needing `len` bytes of room) does not fit: stop reading until it would.
  void NoteFullLocked(size_t len);
  bool backpressured_locked() const { return backpressured_; }
  // Writes what may leave, until the destination would block (then sink_blocked_: poll for POLLOUT).
  void ReleaseLocked();
  void Wake();

  mutable std::mutex mu_;
  HoldQueue queue_;
  Clock* clock_;
  const char* name_;
  bool sink_blocked_ = false;
  std::vector<uint8_t> scratch_;  // one record read from the source (max_record_bytes)
  OutputStats counters_;          // the module's own counters; hold/backpressure are filled in by stats()

 private:
  void NoteRoomLocked();
  UniqueFd wake_fd_;  // eventfd: ReleaseThrough / Stop interrupt the loop's poll
  uint64_t acked_ = 0;
  bool have_ack_ = false;
  bool pass_through_ = false;
  bool backpressured_ = false;
  size_t blocked_len_ = 0;
  int64_t backpressure_since_ns_ = 0;
  uint64_t backpressure_ns_ = 0, backpressure_events_ = 0;
  std::vector<pollfd> fds_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tandem::output_commit
