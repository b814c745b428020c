// EpochShipper's resyncs: a full one (the whole RAM, or by the standby's page hashes only what differs), a
// catch-up (what changed since the epoch the standby holds), and the disk's blocks that differ.
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <system_error>
#include <utility>

#include "common/log.h"
#include "disk/block_device.h"
#include "disk/disk_writes.h"
#include "replicator/epoch_codec.h"
#include "replicator/messages.h"
#include "replicator/shipper.h"
#include "replicator/shipper_connection.h"

namespace tandem::replicator {
namespace {

// Counts a resync's pages as its PAGES records go out (the records reach the sink in order, from one thread).
class ProgressSink final : public EpochSink {
 public:
  ProgressSink(EpochSink* inner, std::function<void(uint32_t pages)> on_pages)
      : inner_(inner), on_pages_(std::move(on_pages)) {}
  Status WriteRecord(std::span<const uint8_t> record) override {
    TANDEM_RETURN_IF_ERROR(inner_->WriteRecord(record));
    if (record.size() >= kRecordHeaderSize + kPagesHeaderSize &&
        LoadLe32(record.data()) == uint32_t(RecordType::kPages)) {
      on_pages_(LoadLe32(record.data() + kRecordHeaderSize));
    }
    return Status::Ok();
  }
  Status Flush() override { return inner_->Flush(); }

 private:
  EpochSink* inner_;
  std::function<void(uint32_t)> on_pages_;
};

constexpr int64_t kProgressLogNs = 2'000'000'000;

}  // namespace

ResyncSource EpochShipper::ResyncOf(uint64_t epoch, uint64_t* settles_at) {
  *settles_at = epoch;
  ResyncSource source;
  source.ram = &history_.ram();
  source.fingerprints = fingerprints_.get();
  // Asked once the last page was read. The primary submits an epoch while the VM is still paused for it, so every
  // guest write so far lies in an epoch up to last_submitted + 1: once that one is applied after the resync,
  // every page is as of its checkpoint (guest_ram.h).
  // The VM is protected from the ack of that epoch on: set here, before EPOCH_END goes out and so before the
  // standby can acknowledge the resync.
  source.settles_after = [this, epoch, settles_at]() -> uint32_t {
    std::lock_guard<std::mutex> lock(mu_);
    *settles_at = stats_.last_submitted + 1;
    resync_epoch_ = *settles_at;
    return uint32_t(std::min<uint64_t>(*settles_at - epoch, UINT32_MAX));
  };
  return source;
}

Status EpochShipper::SendFull(Connection& conn) {
  const uint64_t full = history_.epoch();
  {
    std::lock_guard<std::mutex> lock(mu_);
    resync_epoch_ = full;  // a live epoch raises it once its pages are read (ResyncOf)
    StartResyncLocked();
  }
  const bool keeping = conn.standby_pages.has_value();
  TLOG_INFO("shipper", "full resync%s: sending epoch %" PRIu64 " (%" PRIu64 " MiB of RAM, %zu bytes of device state)",
            keeping ? " by page hashes (only the pages that differ on the standby)" : "", full,
            history_.ram_bytes() >> 20, history_.device_state().size());
  // The standby's copies become what this resync reads: nothing cached is its copy any more.
  delta_base_->Clear();
  uint64_t settles_at = full;
  TANDEM_ASSIGN_OR_RETURN(const std::vector<uint8_t> disk_blocks, DiskResync(conn, full));
  ResyncSource source = ResyncOf(full, &settles_at);
  source.disk_writes = disk_blocks;
  const int64_t start = clock_->NowNanos();
  const uint64_t sent_before = conn.sink->bytes_sent();
  uint64_t kept_bytes = 0;
  Status st = RunResync(conn, history_.ram_bytes(), [&](EpochEncoder& encoder, EpochSink* sink) -> Status {
    if (!keeping) return encoder.EncodeFull(full, options_.term, source, history_.device_state(), sink);
    // Read before settles_after is asked (EncodeKeeping's end): a page written after it was compared lies in an
    // epoch the resync settles with, like a page written after it was read (guest_ram.h).
    const int64_t compare_start = clock_->NowNanos();
    std::vector<PageRef> differing;
    TANDEM_RETURN_IF_ERROR(
        DifferingPages(history_.ram(), *conn.standby_pages, fingerprints_.get(), encoder.threads(), &differing));
    kept_bytes = history_.ram_bytes() - differing.size() * kPageSize;
    TLOG_INFO("shipper", "page hashes compared in %.1f ms: %zu pages (%.1f MiB) differ on the standby, %.1f MiB kept",
              (clock_->NowNanos() - compare_start) / 1e6, differing.size(),
              differing.size() * double(kPageSize) / 1048576.0, kept_bytes / 1048576.0);
    SetResyncTotal(differing.size() * kPageSize);
    return encoder.EncodeKeeping(full, options_.term, source, differing, history_.device_state(), sink);
  });
  if (!st.ok()) return st.WithContext("send full epoch " + std::to_string(full));
  TLOG_INFO("shipper", "full epoch %" PRIu64 " sent: %.1f MiB on the wire in %.1f ms%s", full,
            (conn.sink->bytes_sent() - sent_before) / 1048576.0, (clock_->NowNanos() - start) / 1e6,
            settles_at > full ? (", read live: exact once epoch " + std::to_string(settles_at) + " is applied").c_str()
                              : "");
  std::lock_guard<std::mutex> lock(mu_);
  stats_.resyncs++;
  if (keeping) {
    stats_.hash_resyncs++;
    stats_.hash_resync_kept_bytes += kept_bytes;
  }
  NoteSentLocked(conn, full, stats_.resync_total_bytes + history_.device_state().size(),
                 conn.sink->bytes_sent() - sent_before, kFullEpochAckFactor);
  return Status::Ok();
}

void EpochShipper::SetResyncTotal(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_.resync_total_bytes = bytes;
}

Status EpochShipper::RunResync(Connection& conn, uint64_t total_bytes,
                               const std::function<Status(EpochEncoder& encoder, EpochSink* sink)>& encode) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.resync_total_bytes = total_bytes;
    stats_.resync_sent_bytes = 0;
  }
  const int64_t start = RealNowNs();
  int64_t last_log = start;
  uint64_t sent = 0;
  ProgressSink sink(conn.sink.get(), [&](uint32_t pages) {
    sent += uint64_t{pages} * kPageSize;
    uint64_t total;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stats_.resync_sent_bytes = sent;
      total = stats_.resync_total_bytes;
    }
    const int64_t now = RealNowNs();
    if (now - last_log < kProgressLogNs || total == 0) return;
    last_log = now;
    const double seconds = double(now - start) / 1e9;
    const double rate = double(sent) / seconds;  // RAM bytes per second
    TLOG_INFO("shipper", "resync: %.0f%% (%.0f of %.0f MiB) at %.0f MiB/s, ETA %.1f s",
              100.0 * double(sent) / double(total), sent / 1048576.0, total / 1048576.0, rate / 1048576.0,
              rate > 0 && total > sent ? double(total - sent) / rate : 0.0);
  });
  Status result;
  auto run = [&](bool lower_priority) {
    if (lower_priority) {
      // Nice values are per thread on Linux; the encoder's helper threads, started from this one, inherit it.
      if (setpriority(PRIO_PROCESS, id_t(syscall(SYS_gettid)), options_.resync_nice) != 0) {
        TLOG_WARN("shipper", "resync runs at the sender's priority: setpriority failed (errno %d)", errno);
      }
    }
    EpochEncoder encoder(governor_.current(), encoder_->threads());
    result = encode(encoder, &sink);
  };
  if (options_.resync_nice > 0) {
    try {
      std::thread resync(run, true);
      resync.join();
    } catch (const std::system_error&) {
      TLOG_WARN("shipper", "no thread for the resync: it runs on the sender thread at its priority");
      run(false);
    }
  } else {
    run(false);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (result.ok()) stats_.resync_sent_bytes = stats_.resync_total_bytes;
  return result;
}

Status EpochShipper::SendCatchUp(Connection& conn, std::span<const PageRef> changed) {
  const uint64_t held = conn.standby_epoch, now = history_.epoch();
  std::unique_lock<std::mutex> lock(mu_);
  resync_epoch_ = now;
  if (held == now) {
    // It missed nothing (the connection broke between epochs): protected again without sending a byte.
    stats_.catch_ups++;
    MarkProtectedLocked(now);
    return Status::Ok();
  }
  StartResyncLocked();
  lock.unlock();  // resync_epoch_: a live catch-up raises it once its pages are read (ResyncOf)
  // The standby's copies of these pages become what the catch-up reads.
  delta_base_->Invalidate(changed);
  uint64_t settles_at = now;
  TANDEM_ASSIGN_OR_RETURN(const std::vector<uint8_t> disk_blocks, DiskResync(conn, now));
  ResyncSource source = ResyncOf(now, &settles_at);
  source.disk_writes = disk_blocks;
  const int64_t start = clock_->NowNanos();
  const uint64_t sent_before = conn.sink->bytes_sent();
  Status st = RunResync(conn, changed.size() * kPageSize, [&](EpochEncoder& encoder, EpochSink* sink) {
    return encoder.EncodeCatchUp(now, uint32_t(now - held - 1), options_.term, source, changed,
                                 history_.device_state(), sink);
  });
  if (!st.ok()) return st.WithContext("send catch-up epoch " + std::to_string(now));
  TLOG_INFO("shipper", "catch-up resync: standby holds epoch %" PRIu64 ", sent epochs %" PRIu64 "..%" PRIu64
            " as one: %zu changed pages, %.1f MiB on the wire in %.1f ms (not the whole RAM)", held, held + 1, now,
            changed.size(), (conn.sink->bytes_sent() - sent_before) / 1048576.0, (clock_->NowNanos() - start) / 1e6);
  lock.lock();
  stats_.catch_ups++;
  NoteSentLocked(conn, now, changed.size() * kPageSize + history_.device_state().size(),
                 conn.sink->bytes_sent() - sent_before, kFullEpochAckFactor);
  return Status::Ok();
}

Result<std::vector<uint8_t>> EpochShipper::DiskResync(const Connection& conn, uint64_t epoch) {
  if (options_.disk == nullptr) return std::vector<uint8_t>();
  // Read while the guest runs: a block written after its hash was taken is in an epoch after `epoch` (every
  // write of `epoch` and before reached the image before its checkpoint), which follows this resync and
  // rewrites it; the resync settles with the RAM's (ResyncOf), whose pages are read after this.
  const int64_t start = clock_->NowNanos();
  TANDEM_ASSIGN_OR_RETURN(disk::BlockHashes mine, disk::HashBlocks(*options_.disk, conn.standby_disk.block_size));
  const std::vector<uint64_t> blocks = disk::BlocksToSend(mine, conn.standby_disk);
  disk::DiskWritesEncoder encoder(options_.disk->size());
  TANDEM_RETURN_IF_ERROR(disk::AppendBlocks(*options_.disk, mine.block_size, blocks, &encoder));
  std::vector<uint8_t> payload = encoder.Finish(epoch);
  TLOG_INFO("shipper", "disk resync for epoch %" PRIu64 ": %zu of %zu blocks of %" PRIu64
            " KiB differ on the standby (%.1f MiB), compared in %.1f ms",
            epoch, blocks.size(), mine.hashes.size(), mine.block_size >> 10, payload.size() / 1048576.0,
            (clock_->NowNanos() - start) / 1e6);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.disk_resync_blocks += blocks.size();
  stats_.disk_resync_bytes += payload.size();
  return payload;
}

}  // namespace tandem::replicator
