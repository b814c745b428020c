// What EpochShipper's source files share (shipper.cc: connection and epochs; shipper_resync.cc: resyncs).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <thread>

#include "disk/block_hash.h"
#include "replicator/link_meter.h"
#include "replicator/link_security.h"
#include "replicator/page_hashes.h"
#include "replicator/shipper.h"
#include "replicator/transport.h"

namespace tandem::replicator {

// A full epoch is the whole RAM: the standby stages, verifies and applies all of it before acknowledging.
inline constexpr int kFullEpochAckFactor = 10;

// Timeouts and deadlines run on real time even when a test drives clock_ (which only times what is reported).
inline int64_t RealNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct EpochShipper::Connection {
  std::unique_ptr<Transport> transport;
  SecureLink link;  // seals what the sink sends, opens what the readers read
  std::unique_ptr<TransportSink> sink;
  std::thread ack_thread;
  bool failed = false;  // guarded by mu_
  Status error;         // guarded by mu_
  // From the standby's HELLO: it holds this epoch of this primary's generation (it missed only what followed).
  bool standby_holds_our_epoch = false;
  uint64_t standby_epoch = 0;
  disk::BlockHashes standby_disk;  // its DISK_HASHES, when the VM has a disk
  // Its PAGE_HASHES (version 5), when it sent them: a full resync then keeps the pages whose hash matches.
  std::optional<PageHashList> standby_pages;
  LinkMeter meter;  // sender thread
  // Guarded by mu_. An epoch is noted as sent after its last byte is written, and its ack can come first: it
  // waits here for the note, else stats would show it acked before sent and its stale in-flight entry time out.
  std::optional<uint64_t> noted_up_to;  // the last epoch noted as sent on this connection
  std::optional<uint64_t> early_ack;
};

}  // namespace tandem::replicator
