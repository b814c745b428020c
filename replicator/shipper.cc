#include "replicator/shipper.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <utility>

#include "common/log.h"
#include "common/random.h"
#include "disk/block_hash.h"
#include "replicator/epoch_codec.h"
#include "replicator/link_meter.h"
#include "replicator/messages.h"
#include "replicator/shipper_connection.h"

namespace tandem::replicator {
namespace {

constexpr size_t kQueueCapacity = 64;
constexpr size_t kInFlightCapacity = 256;
constexpr size_t kPoolCapacity = 16;
constexpr int kAckPollMs = 100;
// The standby hashes its disk image before it sends DISK_HASHES.
constexpr int kDiskHashesTimeoutMs = 120'000;

// Fault injection for debug_die_mid_epoch: dies like a crashed primary once half the epoch's records are out,
// after making sure they reached the standby (so the standby really sees a torn epoch).
class DieMidEpochSink final : public EpochSink {
 public:
  DieMidEpochSink(EpochSink* inner, Transport* transport, uint64_t epoch, uint64_t die_after)
      : inner_(inner), transport_(transport), epoch_(epoch), die_after_(die_after) {}
  Status WriteRecord(std::span<const uint8_t> record) override {
    TANDEM_RETURN_IF_ERROR(inner_->WriteRecord(record));
    if (++written_ == die_after_) {
      inner_->Flush().ok();
      transport_->WaitSent(1000).ok();
      TLOG_WARN("shipper", "debug: dying mid epoch %" PRIu64 " after %" PRIu64 " of its records", epoch_, written_);
      raise(SIGKILL);
    }
    return Status::Ok();
  }
  Status Flush() override { return inner_->Flush(); }

 private:
  EpochSink* inner_;
  Transport* transport_;
  uint64_t epoch_, die_after_, written_ = 0;
};

}  // namespace

EpochShipper::EpochShipper(ShipperOptions options, Clock* clock)
    : options_(std::move(options)),
      clock_(clock),
      encoder_(new EpochEncoder(options_.codec, std::clamp(UsableCpus(), 1, std::max(1, options_.encode_threads)))),
      governor_(options_.codec, options_.adaptive_compression) {
  encoder_->set_codec(governor_.current());
  stats_.compression = (governor_.adaptive() ? "auto: " : "") + CompressionGovernor::Describe(governor_.current());
}

EpochShipper::~EpochShipper() { Stop(); }

Status EpochShipper::Start(const VmDescriptor& descriptor, std::unique_ptr<GuestRam> ram,
                           std::vector<uint8_t> device_state, uint64_t first_epoch) {
  if (started_) return Status::InvalidArgument("shipper already started");
  if (ram == nullptr) return Status::InvalidArgument("shipper needs the VM's RAM");
  if (options_.max_in_flight < 1) return Status::InvalidArgument("max_in_flight must be at least 1");
  TANDEM_RETURN_IF_ERROR(CheckLinkSecurity(options_.security, "the replication key"));
  TANDEM_RETURN_IF_ERROR(CheckStreamAddress(options_.standby_address).WithContext("standby address"));
  if (ram->image().blocks() != descriptor.ram_blocks) {
    return Status::InvalidArgument("guest RAM layout differs from the VM descriptor");
  }
  TANDEM_ASSIGN_OR_RETURN(fingerprints_, PageFingerprints::Create(descriptor.ram_blocks));
  descriptor_ = descriptor;
  history_.Reset(std::move(ram), std::move(device_state), first_epoch);
  const uint64_t ram_bytes = history_.ram_bytes();
  delta_base_ = std::make_unique<DeltaBase>(options_.delta_base_bytes != 0 ? options_.delta_base_bytes
                                                                           : DefaultDeltaBaseBudget(ram_bytes));
  delta_base_->set_fingerprints(fingerprints_.get());
  TLOG_INFO("shipper",
            "no mirror of the guest's %" PRIu64 " MiB: delta base %" PRIu64 " MiB (%" PRIu64
            " pages), chunk fingerprints %" PRIu64 " MiB, copies of small RAM blocks %" PRIu64 " MiB",
            ram_bytes >> 20, delta_base_->memory_bytes() >> 20, delta_base_->capacity_pages(),
            fingerprints_->memory_bytes() >> 20, history_.ram().copied_bytes() >> 20);
  stats_.delta_base_mib = delta_base_->memory_bytes() >> 20;
  stats_.fingerprints_mib = fingerprints_->memory_bytes() >> 20;
  generation_ = RandomNonZeroId(clock_);
  queue_.Reserve(kQueueCapacity);
  in_flight_.Reserve(kInFlightCapacity);
  pool_.reserve(kPoolCapacity);
  stats_.last_submitted = first_epoch;
  last_ack_ns_ = clock_->NowNanos();
  started_ = true;
  TLOG_INFO("shipper",
            "replicating VM %s to %s: term %" PRIu64 ", generation %016" PRIx64
            ", link authenticated, encryption %s, max %d epochs in flight, %d encoder thread%s for large epochs",
            descriptor_.vm_name.c_str(), options_.standby_address.c_str(), options_.term, generation_,
            LinkEncryptionName(options_.security.encryption),
            options_.max_in_flight, encoder_->threads(), encoder_->threads() == 1 ? "" : "s");
  sender_ = std::thread([this] { SenderLoop(); });
  return Status::Ok();
}

std::unique_ptr<Epoch> EpochShipper::Borrow() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pool_.empty()) {
    std::unique_ptr<Epoch> e = std::move(pool_.back());
    pool_.pop_back();
    return e;
  }
  return std::make_unique<Epoch>();
}

void EpochShipper::Recycle(std::unique_ptr<Epoch> epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  RecycleLocked(std::move(epoch));
}

void EpochShipper::RecycleLocked(std::unique_ptr<Epoch> epoch) {
  if (pool_.size() < kPoolCapacity) pool_.push_back(std::move(epoch));
}

void EpochShipper::Submit(std::unique_ptr<Epoch> epoch) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!started_ || stop_) {
    RecycleLocked(std::move(epoch));
    return;
  }
  submitted_at_[epoch->number() % submitted_at_.size()] = {epoch->number(), clock_->NowNanos()};
  if (epoch->number() != stats_.last_submitted + 1) {
    TLOG_WARN("shipper",
              "epoch %" PRIu64 " submitted after epoch %" PRIu64 ": the standby will refuse the gap and resync",
              epoch->number(), stats_.last_submitted);
  }
  const size_t max_in_flight = size_t(options_.max_in_flight);
  auto may_queue = [&] {
    return !queue_.full() && !(protected_ && queue_.size() + sending_ + in_flight_.size() >= max_in_flight);
  };
  bool merged = false;
  cv_.wait(lock, [&] {
    if (stop_ || may_queue()) return true;
    merged = !protected_ && MergeIntoNewestQueued(*epoch);
    return merged;
  });
  if (stop_) return;
  stats_.last_submitted = epoch->number();
  if (merged) {
    RecycleLocked(std::move(epoch));
    return;
  }
  queue_.Push(std::move(epoch));
  cv_.notify_all();
}

bool EpochShipper::MergeIntoNewestQueued(const Epoch& epoch) {
  // mu_ held by the caller. Unprotected with a full queue (a full resync held up by a slow link, say): no
  // acknowledgement is awaited, so the VM must not wait either. The newest queued epoch absorbs this one; it
  // stays put while the queue is full (the sender takes from the head), and merging keeps memory bounded by
  // the pages dirtied meanwhile, not by the time the link takes.
  if (!queue_.full()) return false;
  if (Status st = queue_.newest().Absorb(epoch); !st.ok()) {
    if (merge_refused_epoch_ != epoch.number()) {  // once, not on every wake-up of the waiting Submit
      TLOG_ERROR("shipper", "cannot merge epoch %" PRIu64 " into the queue (%s): the VM waits for the queue instead",
                 epoch.number(), st.ToString().c_str());
      merge_refused_epoch_ = epoch.number();
    }
    return false;
  }
  stats_.epochs_merged++;
  if (!merge_logged_) {
    TLOG_WARN("shipper", "standby %s not taking epochs while the VM is unprotected: queued epochs are merged (%" PRIu64
              " so far), the VM is not held", options_.standby_address.c_str(), stats_.epochs_merged);
    merge_logged_ = true;
  }
  return true;
}

std::unique_ptr<Epoch> EpochShipper::PopQueued() {
  // mu_ held by the caller.
  std::unique_ptr<Epoch> e = queue_.Pop();
  cv_.notify_all();
  return e;
}

ShipperStats EpochShipper::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ShipperStats out = stats_;
  if (out.last_acked < out.last_submitted) {
    const uint64_t oldest = out.last_acked + 1;
    const auto& [number, at] = submitted_at_[oldest % submitted_at_.size()];
    const int64_t since = number == oldest ? at : last_ack_ns_;
    out.ack_lag_ms = std::max<int64_t>(0, clock_->NowNanos() - since) / 1e6;
  }
  return out;
}

void EpochShipper::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return;
    stop_ = true;
    if (current_ != nullptr) current_->transport->Shutdown();
    cv_.notify_all();
  }
  if (sender_.joinable()) sender_.join();
}

void EpochShipper::FoldQueued() {
  for (;;) {
    std::unique_ptr<Epoch> e;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() == 0) return;
      e = PopQueued();
    }
    // The standby did not get it: the delta base still holds the standby's copies, and the next resync
    // invalidates (catch-up) or clears (full) what changed.
    history_.Fold(*e);
    Recycle(std::move(e));
  }
}

void EpochShipper::MarkUnprotected(const Status& why) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool was = protected_;
  protected_ = false;
  stats_.standby_connected = false;
  stats_.resync_active = false;
  in_flight_.Clear();
  if (!why.ok()) stats_.last_error = why.ToString();
  if (was || !unprotected_logged_) {
    TLOG_WARN("shipper", "%s standby %s (%s): the VM runs UNPROTECTED until a standby holds a full copy again",
              was ? "lost" : "no", options_.standby_address.c_str(), why.ToString().c_str());
    unprotected_logged_ = true;
  }
  cv_.notify_all();
}

void EpochShipper::MarkProtectedLocked(uint64_t standby_epoch) {
  protected_ = true;
  merge_logged_ = false;
  stats_.standby_connected = true;
  unprotected_logged_ = false;
  TLOG_INFO("shipper", "standby %s holds epoch %" PRIu64 ": the VM is PROTECTED", options_.standby_address.c_str(),
            standby_epoch);
  cv_.notify_all();
}

void EpochShipper::FailConnection(Connection* conn, const Status& why) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!conn->failed) {
      conn->failed = true;
      conn->error = why;
    }
    cv_.notify_all();
  }
  conn->transport->Shutdown();
}

void EpochShipper::SenderLoop() {
  std::string last_logged;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    FoldQueued();
    std::unique_ptr<Connection> conn;
    Status st = Connect(&conn);
    if (st.ok()) {
      last_logged.clear();
      st = Serve(*conn);
      conn->transport->Shutdown();
      if (conn->ack_thread.joinable()) conn->ack_thread.join();
      std::lock_guard<std::mutex> lock(mu_);
      current_ = nullptr;
      stats_.standby_link_up = false;
      if (conn->failed) st = conn->error;
    } else if (st.ToString() != last_logged) {
      // Once per distinct reason: a standby that is down for an hour does not fill the log.
      TLOG_WARN("shipper", "cannot replicate to %s: %s", options_.standby_address.c_str(), st.ToString().c_str());
      last_logged = st.ToString();
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) break;
    }
    MarkUnprotected(st);
    const int64_t deadline = RealNowNs() + int64_t(options_.reconnect_interval_ms) * 1'000'000;
    for (;;) {
      std::unique_lock<std::mutex> lock(mu_);
      const int64_t left = deadline - RealNowNs();
      if (stop_ || left <= 0) break;
      cv_.wait_for(lock, std::chrono::nanoseconds(left), [&] { return stop_ || queue_.size() > 0; });
      if (queue_.size() > 0) {
        lock.unlock();
        FoldQueued();
      }
    }
  }
  FoldQueued();
}

Status EpochShipper::Connect(std::unique_ptr<Connection>* out) {
  TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, ConnectStream(options_.standby_address, options_.io_timeout_ms));
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Transport> transport, MakeSocketTransport(std::move(fd), options_.io_engine));
  auto conn = std::make_unique<Connection>();
  conn->transport = std::move(transport);
  // Nothing about the VM goes out before the standby proved it holds the key.
  const DecodeStatus handshake =
      HandshakeAsPrimary(conn->transport.get(), options_.security, options_.io_timeout_ms, &conn->link);
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.last_link_error = handshake.error();
  }
  if (!handshake.ok()) return handshake.status().WithContext("link handshake");
  conn->sink = std::make_unique<TransportSink>(conn->transport.get(), options_.io_timeout_ms, conn->link.send.get());
  HelloMessage hello;
  hello.role = PeerRole::kPrimary;
  hello.term = options_.term;
  hello.generation = generation_;
  hello.descriptor = descriptor_;
  hello.has_disk = options_.disk != nullptr;
  TANDEM_RETURN_IF_ERROR(encoder_->EncodeHello(hello, conn->sink.get()).WithContext("send HELLO"));
  RecordReader reader(conn->transport.get(), conn->link.receive.get());
  RecordView rec;
  TANDEM_RETURN_IF_ERROR(
      reader.Next(options_.io_timeout_ms, options_.io_timeout_ms, &rec).WithContext("await standby HELLO"));
  if (rec.type == uint32_t(RecordType::kAck)) {
    AckMessage ack;
    TANDEM_RETURN_IF_ERROR(ParseAck(rec.payload, &ack));
    return Status::Aborted("standby refused the connection (" + std::string(AckStatusName(uint32_t(ack.status))) +
                           "): " + ack.reason);
  }
  if (rec.type != uint32_t(RecordType::kHello)) {
    return Status::Corruption(std::string("standby answered HELLO with ") + RecordTypeName(rec.type));
  }
  HelloMessage theirs;
  TANDEM_RETURN_IF_ERROR(ParseHello(rec.payload, &theirs).WithContext("standby HELLO"));
  if (theirs.role != PeerRole::kStandby) return Status::Corruption("peer at the standby address is not a standby");
  if (theirs.has_disk != hello.has_disk) {
    return Status::InvalidArgument(hello.has_disk ? "the standby holds no copy of the guest's disk"
                                                  : "the standby has a disk but this primary replicates none");
  }
  if (hello.has_disk) {
    // The standby hashes its whole image first: a large disk takes a while.
    const int hash_timeout_ms = std::max(options_.io_timeout_ms, kDiskHashesTimeoutMs);
    TANDEM_RETURN_IF_ERROR(reader.Next(hash_timeout_ms, options_.io_timeout_ms, &rec).WithContext("await DISK_HASHES"));
    if (rec.type != uint32_t(RecordType::kDiskHashes)) {
      return Status::Corruption(std::string("standby sent ") + RecordTypeName(rec.type) + " instead of DISK_HASHES");
    }
    TANDEM_ASSIGN_OR_RETURN(conn->standby_disk, disk::DecodeBlockHashes(rec.payload));
    if (conn->standby_disk.disk_size != options_.disk->size()) {
      return Status::InvalidArgument("the standby's disk image has " + std::to_string(conn->standby_disk.disk_size) +
                                     " bytes, the primary's " + std::to_string(options_.disk->size()) +
                                     ": both must be the same size");
    }
  }
  if (theirs.page_hashes) {
    // The standby hashes its whole replica first (in parallel: a fraction of a second per GiB).
    const int hash_timeout_ms = std::max(options_.io_timeout_ms, kDiskHashesTimeoutMs);
    PageHashesReader hashes(descriptor_.ram_blocks);
    while (!hashes.complete()) {  // every record covers at least one more page
      TANDEM_RETURN_IF_ERROR(
          reader.Next(hash_timeout_ms, options_.io_timeout_ms, &rec).WithContext("await PAGE_HASHES"));
      if (rec.type != uint32_t(RecordType::kPageHashes)) {
        return Status::Corruption(std::string("standby sent ") + RecordTypeName(rec.type) + " instead of PAGE_HASHES");
      }
      TANDEM_RETURN_IF_ERROR(hashes.Add(rec.payload).WithContext("standby PAGE_HASHES"));
    }
    conn->standby_pages = hashes.Take();
  }
  if (theirs.has_resume_point && theirs.generation == generation_) {
    conn->standby_holds_our_epoch = true;
    conn->standby_epoch = theirs.last_applied;
  }
  if (theirs.has_resume_point) {
    TLOG_INFO("shipper", "connected to standby %s (%s engine): it holds epoch %" PRIu64 " of generation %016" PRIx64
              "%s", options_.standby_address.c_str(), conn->transport->engine_name(), theirs.last_applied,
              theirs.generation, theirs.generation == generation_ ? " (this primary)" : " (an earlier primary)");
  } else {
    TLOG_INFO("shipper", "connected to standby %s (%s engine): it holds no epoch yet", options_.standby_address.c_str(),
              conn->transport->engine_name());
  }
  *out = std::move(conn);
  return Status::Ok();
}

void EpochShipper::NoteSentLocked(Connection& conn, uint64_t epoch, uint64_t raw_bytes, uint64_t wire_bytes,
                                  int ack_timeout_factor) {
  in_flight_.Sent(epoch, RealNowNs() + int64_t(options_.io_timeout_ms) * ack_timeout_factor * 1'000'000);
  stats_.last_sent = epoch;
  stats_.epochs_sent++;
  stats_.raw_bytes_sent += raw_bytes;
  stats_.bytes_sent += wire_bytes;
  conn.noted_up_to = epoch;
  if (conn.early_ack.has_value() && *conn.early_ack <= epoch) ApplyAckLocked(*std::exchange(conn.early_ack, {}));
}

void EpochShipper::StartResyncLocked() { stats_.resync_active = true; }

void EpochShipper::ApplyAckLocked(uint64_t epoch) {
  if (epoch > stats_.last_acked) last_ack_ns_ = clock_->NowNanos();
  stats_.last_acked = std::max(stats_.last_acked, epoch);
  if (stats_.resync_active && epoch >= resync_epoch_) stats_.resync_active = false;
  in_flight_.AckedUpTo(epoch);
  if (!protected_ && epoch >= resync_epoch_) MarkProtectedLocked(epoch);
  cv_.notify_all();
}

void EpochShipper::CopyDeltaBaseStatsLocked() {
  const DeltaBaseCounters& c = delta_base_->counters();
  stats_.delta_base_hits = c.hits;
  stats_.delta_base_misses = c.misses;
  stats_.delta_base_evictions = c.evictions;
}

Status EpochShipper::Serve(Connection& conn) {
  // Everything submitted so far goes into the resync.
  FoldQueued();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) return Status::Aborted("stopping");
    current_ = &conn;
    stats_.standby_link_up = true;
    in_flight_.Clear();
  }
  conn.ack_thread = std::thread([this, c = &conn] { AckLoop(c); });
  std::vector<PageRef> changed;
  const bool catch_up = conn.standby_holds_our_epoch && history_.ChangedSince(conn.standby_epoch, &changed);
  TANDEM_RETURN_IF_ERROR(catch_up ? SendCatchUp(conn, changed) : SendFull(conn));

  for (;;) {
    std::unique_ptr<Epoch> e;
    {
      std::unique_lock<std::mutex> lock(mu_);
      auto ready = [&] { return stop_ || conn.failed || (queue_.size() > 0 && !in_flight_.full()); };
      // A link that idles between epochs is timed while it drains the last one (LinkMeter::PollDrain).
      while (conn.meter.draining() && !ready()) {
        cv_.wait_for(lock, LinkMeter::kDrainPoll);
        conn.meter.PollDrain(conn.transport->QueuedBytes(), RealNowNs());
      }
      cv_.wait(lock, ready);
      if (stop_) return Status::Aborted("stopping");
      if (conn.failed) return conn.error;
      e = PopQueued();
      sending_ = 1;  // neither queued nor in flight while it is encoded: still counts against max_in_flight
    }
    const uint64_t number = e->number();
    const uint64_t device_bytes = e->device_state().size();
    EpochSink* sink = conn.sink.get();
    std::unique_ptr<DieMidEpochSink> die;
    if (number == options_.debug_corrupt_epoch) {
      TLOG_WARN("shipper", "debug: corrupting one bit of a page of epoch %" PRIu64, number);
      encoder_->CorruptNextEpoch();
    }
    if (number == options_.debug_die_mid_epoch) {
      // Let the standby apply everything before this epoch, so that what it holds at our death is known.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(options_.io_timeout_ms),
                   [&] { return in_flight_.size() == 0 || conn.failed || stop_; });
      const uint64_t records =
          EpochEncoder::RecordCount(e->pages().size(), e->device_state().size(), e->disk_writes().size());
      die = std::make_unique<DieMidEpochSink>(sink, conn.transport.get(), number, std::max<uint64_t>(1, records / 2));
      sink = die.get();
    }
    const uint64_t sent_before = conn.sink->bytes_sent();
    const uint64_t send_ns_before = conn.sink->send_ns();
    const uint64_t queued_before = conn.transport->QueuedBytes();
    const int64_t encode_start = RealNowNs();
    Status st = encoder_->EncodeEpoch(*e, options_.term, delta_base_.get(), fingerprints_.get(), history_.layout(), sink);
    const int64_t written = RealNowNs();
    const ShipSample sample = conn.meter.EpochWritten(
        e->pages().size() * kPageSize, conn.sink->bytes_sent() - sent_before, conn.sink->send_ns() - send_ns_before,
        uint64_t(written - encode_start), queued_before, conn.transport->QueuedBytes(), written);
    if (st.code() == Status::Code::kInvalidArgument) {
      // Nothing of it was sent, and it does not fit the RAM: a bug upstream, not the standby's fault.
      TLOG_ERROR("shipper", "dropping epoch %" PRIu64 ": %s", number, st.ToString().c_str());
      Recycle(std::move(e));
      std::lock_guard<std::mutex> lock(mu_);
      sending_ = 0;
      cv_.notify_all();
      continue;
    }
    // Sent or not, its pages are now the standby's copies (a failed send ends the connection, and the resync
    // that follows clears or invalidates them), and it is the VM's history.
    delta_base_->Record(*e);
    history_.Fold(*e);
    Recycle(std::move(e));
    const bool steered = st.ok() && SteerCompression(number, sample);
    std::lock_guard<std::mutex> lock(mu_);
    sending_ = 0;
    cv_.notify_all();
    if (!st.ok()) return st.WithContext("send epoch " + std::to_string(number));
    CopyDeltaBaseStatsLocked();
    if (steered) {
      stats_.compression = "auto: " + CompressionGovernor::Describe(governor_.current());
      stats_.compression_changes++;
    }
    if (sample.link_bytes_per_s != 0) stats_.link_bytes_per_s = sample.link_bytes_per_s;
    NoteSentLocked(conn, number, sample.raw_bytes + device_bytes, sample.wire_bytes, 1);
  }
}

bool EpochShipper::SteerCompression(uint64_t number, const ShipSample& sample) {
  if (!governor_.Observe(sample)) return false;
  encoder_->set_codec(governor_.current());
  TLOG_INFO("shipper",
            "compression from epoch %" PRIu64 ": %s (last epoch, per page byte: encoding %.2f ns, in sends %.2f ns; "
            "link %s)",
            number + 1, CompressionGovernor::Describe(governor_.current()).c_str(),
            double(sample.encode_ns) / double(sample.raw_bytes), double(sample.send_ns) / double(sample.raw_bytes),
            sample.link_bytes_per_s == 0 ? "not saturated"
                                         : (std::to_string(sample.link_bytes_per_s / 1000000) + " MB/s").c_str());
  return true;
}

void EpochShipper::AckLoop(Connection* conn) {
  RecordReader reader(conn->transport.get(), conn->link.receive.get());
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_ || conn->failed) return;
    }
    Status st = conn->transport->WaitReadable(kAckPollMs);
    if (st.IsTimeout()) {
      bool overdue = false;
      uint64_t late = 0;
      {
        std::lock_guard<std::mutex> lock(mu_);
        overdue = in_flight_.Overdue(RealNowNs(), &late);
      }
      if (overdue) {
        return FailConnection(conn, Status::Timeout("standby did not acknowledge epoch " + std::to_string(late) +
                                                    " in time"));
      }
      continue;
    }
    if (!st.ok()) return FailConnection(conn, st);
    RecordView rec;
    st = reader.Next(options_.io_timeout_ms, options_.io_timeout_ms, &rec);
    if (!st.ok()) return FailConnection(conn, st.IsClosed() ? Status::Closed("standby closed the connection") : st);
    AckMessage ack;
    if (rec.type != uint32_t(RecordType::kAck)) {
      return FailConnection(conn, Status::Corruption(std::string("standby sent ") + RecordTypeName(rec.type)));
    }
    if (Status parsed = ParseAck(rec.payload, &ack); !parsed.ok()) return FailConnection(conn, parsed);
    if (ack.status != AckStatus::kOk) {
      // Nothing of the epoch was applied. Whether the standby's replica is still the epoch it holds, and so can
      // catch up, is the standby's to say in its next HELLO: it withholds its resume point when a page rebuilt
      // from the replica failed its hash.
      TLOG_ERROR("shipper", "standby rejected epoch %" PRIu64 " (%s): %s; reconnecting to resync", ack.epoch,
                 AckStatusName(uint32_t(ack.status)), ack.reason.c_str());
      return FailConnection(conn, Status::Aborted("standby rejected epoch " + std::to_string(ack.epoch) + ": " +
                                                  ack.reason));
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (conn->noted_up_to.has_value() && ack.epoch <= *conn->noted_up_to) ApplyAckLocked(ack.epoch);
    else conn->early_ack = std::max(conn->early_ack.value_or(0), ack.epoch);  // applied once the send is noted
  }
}

}  // namespace tandem::replicator
