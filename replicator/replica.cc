#include "replicator/replica.h"

#include <algorithm>
#include <cinttypes>
#include <thread>

#include "common/log.h"
#include "disk/block_hash.h"
#include "disk/disk_writes.h"
#include "disk/file.h"
#include "disk/replica.h"
#include "replicator/page_hashes.h"

namespace tandem::replicator {
namespace {

void AppendAck(uint64_t epoch, AckStatus status, const std::string& reason, std::vector<uint8_t>* scratch,
               std::vector<uint8_t>* reply) {
  SerializeAck({epoch, status, reason}, scratch);
  AppendRecord(RecordType::kAck, *scratch, reply);
}

bool SameLayout(const std::vector<RamBlockInfo>& a, const std::vector<RamBlockInfo>& b) { return a == b; }

}  // namespace

Replica::Replica(ReplicaOptions options, Clock* clock) : options_(std::move(options)), clock_(clock) {}
Replica::~Replica() = default;

void Replica::StartSession() {
  if (decoder_.in_epoch()) {
    TLOG_WARN("replica", "epoch %" PRIu64 " was incomplete when its connection ended: dropped, nothing applied",
              decoder_.epoch_number());
  }
  decoder_.Discard();
  have_hello_ = false;
  session_failed_ = false;
  session_term_ = 0;
  session_generation_ = 0;
  page_hashes_sent_ = false;
  reject_status_ = AckStatus::kOk;
}

DecodeStatus Replica::OnRecord(const RecordView& record, std::vector<uint8_t>* reply) {
  if (session_failed_) return DecodeStatus(Status::Aborted("session already rejected"));
  reject_status_ = AckStatus::kOk;
  rejecting_epoch_valid_ = false;
  DecodeStatus st;
  switch (static_cast<RecordType>(record.type)) {
    case RecordType::kHello:
      st = HandleHello(record, reply);
      break;
    case RecordType::kEpochBegin:
      st = HandleEpochBegin(record);
      break;
    case RecordType::kEpochEnd:
      st = HandleEpochEnd(record, reply);
      break;
    default:
      if (!have_hello_) {
        st = DecodeStatus::Corrupt(DecodeError::kUnexpectedRecord,
                                   std::string(RecordTypeName(record.type)) + " record before HELLO");
      } else {
        st = decoder_.Add(record);
      }
      break;
  }
  if (!st.ok()) return Reject(st, reject_status_ != AckStatus::kOk ? reject_status_ : AckStatusFor(st.status()), reply);
  return st;
}

void Replica::OnStreamError(const DecodeStatus& error, std::vector<uint8_t>* reply) {
  if (error.status().IsCorruption()) {
    Reject(decoder_.in_epoch() ? error.WithContext("epoch " + std::to_string(decoder_.epoch_number())) : error,
           AckStatus::kCorruption, reply)
        .ok();
    return;
  }
  if (decoder_.in_epoch()) {
    TLOG_WARN("replica", "connection ended inside epoch %" PRIu64 " (%s): epoch dropped, nothing applied",
              decoder_.epoch_number(), error.ToString().c_str());
    decoder_.Discard();
  }
  session_failed_ = true;
}

DecodeStatus Replica::Reject(const DecodeStatus& error, AckStatus status, std::vector<uint8_t>* reply) {
  const bool epoch_level = decoder_.in_epoch() || rejecting_epoch_valid_;
  const uint64_t epoch = decoder_.in_epoch() ? decoder_.epoch_number() : rejecting_epoch_valid_ ? rejecting_epoch_ : 0;
  if (decoder_.replica_differs()) {
    replica_differs_ = true;
    TLOG_WARN("replica", "a page rebuilt from the replica failed its hash: the next connection gets a full epoch");
  }
  decoder_.Discard();
  session_failed_ = true;
  if (epoch_level) {
    TLOG_ERROR("replica", "rejected epoch %" PRIu64 " from the primary (%s), nothing of it applied: %s", epoch,
               AckStatusName(uint32_t(status)), error.ToString().c_str());
  } else {
    TLOG_ERROR("replica", "rejected the primary's connection (%s): %s", AckStatusName(uint32_t(status)),
               error.ToString().c_str());
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (epoch_level) counters_.epochs_rejected++;
    counters_.last_error = error.ToString();
    counters_.last_rejection = error.error();
  }
  AppendAck(epoch, status, error.ToString(), &payload_, reply);
  return error;
}

DecodeStatus Replica::HandleHello(const RecordView& record, std::vector<uint8_t>* reply) {
  if (have_hello_) return DecodeStatus::Corrupt(DecodeError::kUnexpectedRecord, "second HELLO on one connection");
  HelloMessage hello;
  TANDEM_RETURN_IF_DECODE_ERROR(ParseHello(record.payload, &hello));
  if (hello.role != PeerRole::kPrimary) {
    return DecodeStatus::Corrupt(DecodeError::kWrongPeer, "HELLO from a standby: both ends are standbys");
  }
  if (hello.term < max_term_) {
    reject_status_ = AckStatus::kOldTerm;
    return DecodeStatus(DecodeError::kOldTerm,
                        Status::Aborted("primary of term " + std::to_string(hello.term) + " is older than term " +
                                        std::to_string(max_term_) + " already seen: a newer primary exists"));
  }
  const VmDescriptor& d = hello.descriptor;
  if (!options_.expected_vm_name.empty() && d.vm_name != options_.expected_vm_name) {
    return DecodeStatus(DecodeError::kWrongPeer,
                        Status::InvalidArgument("primary replicates VM '" + d.vm_name +
                                                "' but this standby is for VM '" + options_.expected_vm_name + "'"));
  }
  if (d.page_size != kPageSize) {
    return DecodeStatus(DecodeError::kUnsupported,
                        Status::Unsupported("page size " + std::to_string(d.page_size) + " (only 4096 is supported)"));
  }
  if (image_ == nullptr || !SameLayout(image_->blocks(), d.ram_blocks)) {
    if (image_ != nullptr) {
      TLOG_WARN("replica", "primary's RAM layout differs from the replica's: replica recreated%s",
                has_resume_ ? ", resume point dropped" : "");
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      has_resume_ = false;
      settling_until_ = 0;
      image_.reset();
    }
    auto image = RamImage::Create(d, options_.file_backed_blocks);
    if (!image.ok()) {
      reject_status_ = image.status().code() == Status::Code::kIoError ? AckStatus::kInternal : AckStatus::kMismatch;
      return DecodeStatus(image.status().WithContext("create replica"));
    }
    image_ = std::move(image).value();
  }
  std::vector<uint8_t> disk_hashes;
  TANDEM_RETURN_IF_DECODE_ERROR(DiskHello(hello, &disk_hashes));
  max_term_ = hello.term;
  have_hello_ = true;
  session_disk_ = hello.has_disk;
  decoder_.set_accept_disk_writes(hello.has_disk);
  session_term_ = hello.term;
  session_generation_ = hello.generation;
  session_descriptor_ = hello.descriptor;
  session_version_ = hello.version;

  HelloMessage mine;
  mine.version = hello.version;  // a version 1 primary is answered in version 1 (format.h)
  mine.role = PeerRole::kStandby;
  mine.term = max_term_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Offered for a catch-up only if the replica is exactly that epoch (see replica_differs_), not a live resync
    // that has not settled yet.
    const bool offer = has_resume_ && !replica_differs_ && settling_until_ == 0;
    mine.has_resume_point = offer;
    mine.generation = offer ? resume_generation_ : 0;
    mine.last_applied = offer ? resume_.epoch : 0;
    // Without a resume point of this primary's generation the resync is full: the replica's page hashes let it
    // send only the pages that differ (page_hashes.h). A version 4 primary does not take them.
    mine.page_hashes =
        options_.page_hashes && hello.version >= 5 && !(offer && resume_generation_ == hello.generation);
  }
  mine.descriptor.vm_name = options_.expected_vm_name;
  mine.has_disk = session_disk_;
  SerializeHello(mine, &payload_);
  AppendRecord(RecordType::kHello, payload_, reply);
  if (session_disk_) AppendRecord(RecordType::kDiskHashes, disk_hashes, reply);
  if (mine.page_hashes) {
    const int64_t start = clock_->NowNanos();
    PageHashList hashes;
    if (Status st = HashReplicaPages(*image_, options_.file_backed_blocks,
                                     std::clamp(UsableCpus(), 1, std::max(1, options_.apply_threads)), &hashes);
        !st.ok()) {
      reject_status_ = AckStatus::kInternal;
      return DecodeStatus(st.WithContext("hashing the replica"));
    }
    AppendPageHashesRecords(hashes, reply);
    page_hashes_sent_ = true;
    TLOG_INFO("replica", "replica hashed for a resync by page hashes: %zu blocks in %.1f ms", hashes.size(),
              (clock_->NowNanos() - start) / 1e6);
  }
  TLOG_INFO("replica", "primary connected: VM %s, term %" PRIu64 ", generation %016" PRIx64 ", %zu RAM blocks",
            d.vm_name.c_str(), hello.term, hello.generation, d.ram_blocks.size());
  return DecodeStatus::Ok();
}

DecodeStatus Replica::DiskHello(const HelloMessage& hello, std::vector<uint8_t>* hashes) {
  disk::DiskReplica* disk = options_.disk;
  if (hello.has_disk != (disk != nullptr)) {
    reject_status_ = AckStatus::kMismatch;
    return DecodeStatus(DecodeError::kWrongPeer,
                        Status::InvalidArgument(hello.has_disk ? "the primary replicates a disk but this standby has "
                                                                 "none configured ([disk] section)"
                                                               : "this standby has a disk ([disk] section) but the "
                                                                 "primary replicates none"));
  }
  if (disk == nullptr) return DecodeStatus::Ok();
  reject_status_ = AckStatus::kInternal;
  if (Status st = RecoverDisk(); !st.ok()) return DecodeStatus(st);
  // What the primary compares its disk with, to send only the blocks that differ (disk/block_hash.h).
  auto list = disk::HashBlocks(disk->image(), disk::HashBlockSizeFor(disk->size()));
  if (!list.ok()) return DecodeStatus(list.status().WithContext("hashing the standby disk"));
  *hashes = disk::EncodeBlockHashes(*list);
  reject_status_ = AckStatus::kOk;
  return DecodeStatus::Ok();
}

Status Replica::RecoverDisk() {
  if (options_.disk == nullptr || !options_.disk->needs_recovery()) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(options_.disk->Recover().WithContext("standby disk recovery"));
  TLOG_INFO("replica", "standby disk: journaled epoch %" PRIu64 " applied again, disk and RAM agree",
            options_.disk->applied_epoch());
  std::lock_guard<std::mutex> lock(mu_);
  counters_.disk_needs_recovery = false;
  return Status::Ok();
}

DecodeStatus Replica::ApplyDisk(const Epoch& staged, bool* decided) {
  *decided = false;
  disk::DiskReplica* disk = options_.disk;
  const std::vector<uint8_t>& payload = staged.disk_writes();
  const std::string name = "epoch " + std::to_string(staged.number());
  if (!decoder_.has_disk_writes()) {
    return DecodeStatus::Corrupt(DecodeError::kDiskWritesOrder,
                                 name + " has no DISK_WRITES, but its primary replicates a disk");
  }
  // Verified whole before anything is written (DiskReplica::Apply verifies it again: cheap beside the I/O).
  auto writes = disk::DecodeDiskWrites(payload);
  if (!writes.ok()) {
    return DecodeStatus(DecodeError::kDiskWritesCorrupt, writes.status().WithContext(name));
  }
  if (writes->epoch != staged.number()) {
    return DecodeStatus::Corrupt(DecodeError::kDiskWritesCorrupt,
                                 name + " carries the DISK_WRITES of epoch " + std::to_string(writes->epoch));
  }
  if (writes->disk_size != disk->size()) {
    reject_status_ = AckStatus::kMismatch;
    return DecodeStatus(DecodeError::kNone,
                        Status::InvalidArgument(name + ": the primary's disk has " + std::to_string(writes->disk_size) +
                                                " bytes, this standby's image " + std::to_string(disk->size())));
  }
  // A full epoch starts over (a new primary numbers its epochs from its own start; a resync may repeat one).
  if (staged.full()) disk->RestartEpochs();
  Status st = disk->Apply(payload);
  if (!st.ok() && disk->needs_recovery()) {
    TLOG_WARN("replica", "%s: standby disk failed after its journal commit (%s): replaying it", name.c_str(),
              st.ToString().c_str());
    st = disk->Recover();
    if (!st.ok()) {
      *decided = true;
      std::lock_guard<std::mutex> lock(mu_);
      counters_.disk_needs_recovery = true;
    }
  }
  if (!st.ok()) {
    reject_status_ = AckStatus::kInternal;
    if (disk::IsNoSpace(st)) {
      return DecodeStatus(DecodeError::kNone,
                          Status::IoError(name + ": standby disk full, epoch not applied: " + st.ToString()));
    }
    return DecodeStatus(DecodeError::kNone, st.WithContext(name + ": standby disk"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  counters_.disk_writes_applied += writes->writes.size();
  counters_.disk_bytes_applied += writes->data_bytes;
  return DecodeStatus::Ok();
}

DecodeStatus Replica::HandleEpochBegin(const RecordView& record) {
  if (!have_hello_) return DecodeStatus::Corrupt(DecodeError::kUnexpectedRecord, "EPOCH_BEGIN before HELLO");
  if (decoder_.in_epoch()) {
    return DecodeStatus::Corrupt(
        DecodeError::kUnexpectedRecord,
        "EPOCH_BEGIN inside epoch " + std::to_string(decoder_.epoch_number()) + ": records out of order");
  }
  EpochBeginMessage begin;
  TANDEM_RETURN_IF_DECODE_ERROR(ParseEpochBegin(record.payload, &begin));
  rejecting_epoch_ = begin.epoch;
  rejecting_epoch_valid_ = true;
  // Built only on the error paths: steady-state epochs allocate nothing here.
  auto name = [&] { return "epoch " + std::to_string(begin.epoch); };
  if (begin.term != session_term_) {
    return DecodeStatus::Corrupt(DecodeError::kTermMismatch, name() + " has term " + std::to_string(begin.term) +
                                                                 " but the HELLO said term " +
                                                                 std::to_string(session_term_));
  }
  if (begin.keeps && !page_hashes_sent_) {
    // Only the replica this connection hashed may be kept: after anything was applied, or without hashes, the
    // primary cannot know which pages the standby holds.
    return DecodeStatus::Corrupt(DecodeError::kBadField, name() + " keeps pages, but this standby sent no page "
                                                                 "hashes on this connection or applied an epoch since");
  }
  if (begin.live && session_version_ < 2) {
    return DecodeStatus::Corrupt(DecodeError::kBadField, name() + " is live but the HELLO said protocol version " +
                                                             std::to_string(session_version_));
  }
  bool same_generation, has_resume;
  uint64_t last;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A replica that has not settled holds nothing worth keeping if a full epoch breaks off.
    has_resume = has_resume_ && settling_until_ == 0;
    same_generation = has_resume_ && resume_generation_ == session_generation_;
    last = resume_.epoch;
  }
  auto replay = [&](DecodeError error, const std::string& message) {
    reject_status_ = AckStatus::kReplay;
    return DecodeStatus(error, Status::Aborted(message));
  };
  if (begin.full) {
    // A full epoch replaces everything; it may repeat the state already held but not go back in time.
    if (same_generation && begin.epoch < last) {
      return replay(DecodeError::kReplayedEpoch,
                    name() + " (full) is older than epoch " + std::to_string(last) + " already applied: replayed");
    }
  } else {
    if (!same_generation) {
      return replay(DecodeError::kOutOfOrderEpoch, name() + " is a delta but this standby holds no epoch of the "
                                                           "primary's generation: a full epoch must come first");
    }
    if (replica_differs_) {
      return replay(DecodeError::kOutOfOrderEpoch, name() + " is a delta but this standby's replica failed a "
                                                           "page's hash: a full epoch must come first");
    }
    if (begin.epoch <= last) {
      return replay(DecodeError::kReplayedEpoch,
                    name() + " was already applied (last applied " + std::to_string(last) + "): replayed");
    }
    // A merged epoch (the primary's queue overflowed while it could not ship, or a catch-up after a broken
    // connection) holds checkpoints epoch - merged .. epoch: the first of them must be the next one.
    if (begin.epoch - begin.merged != last + 1) {
      return replay(DecodeError::kOutOfOrderEpoch,
                    name() + (begin.merged > 0 ? " (merging " + std::to_string(begin.merged) + " before it)" : "") +
                        " does not continue epoch " + std::to_string(last) + ": epochs missing");
    }
  }
  // A full epoch for a standby that holds no epoch at all (first sync, restarted standby) is written straight
  // into the replica: if it breaks off there is nothing to keep, and no staging copy of all RAM is needed. With
  // a resume point it is staged, so that the replica stays that resume point until the new copy is complete.
  // Written through, a zero page where the replica file has a hole is left alone: a fresh replica stays sparse.
  const bool write_through = begin.full && !has_resume;
  std::vector<FileHoles> holes;
  if (write_through) holes = HolesOfFiles(image_->blocks(), options_.file_backed_blocks);
  decoder_.Begin(begin, record, image_.get(), write_through ? image_.get() : nullptr, std::move(holes));
  return DecodeStatus::Ok();
}

DecodeStatus Replica::HandleEpochEnd(const RecordView& record, std::vector<uint8_t>* reply) {
  if (!have_hello_) return DecodeStatus::Corrupt(DecodeError::kUnexpectedRecord, "EPOCH_END before HELLO");
  rejecting_epoch_ = decoder_.epoch_number();
  rejecting_epoch_valid_ = decoder_.in_epoch();
  TANDEM_RETURN_IF_DECODE_ERROR(decoder_.End(record));
  if (options_.debug_apply_delay_ms > 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(options_.debug_apply_delay_ms));
  }
  Epoch& staged = decoder_.staged();
  const uint64_t number = staged.number();
  const bool full = staged.full();
  const int64_t start = clock_->NowNanos();
  // The disk first: a bad or unwritable DISK_WRITES refuses the epoch before its RAM is touched. Once the disk
  // committed the epoch (decided), the RAM follows even if the disk could not finish: disk and RAM stay at the
  // same epoch, and the epoch is not acknowledged.
  bool disk_decided = false;
  DecodeStatus disk_status = DecodeStatus::Ok();
  if (session_disk_) {
    disk_status = ApplyDisk(staged, &disk_decided);
    if (!disk_status.ok() && !disk_decided) return disk_status;
  }
  {
    // Under the lock: resume_point() sees the replica before or after this epoch, never half of it.
    std::lock_guard<std::mutex> lock(mu_);
    Status st = image_->Apply(staged, std::clamp(UsableCpus(), 1, std::max(1, options_.apply_threads)));
    if (!st.ok()) return DecodeStatus(st.WithContext("apply"));  // Apply checked every page before writing any
    if (decoder_.has_device_state()) resume_.device_state.swap(staged.device_state());
    if (!has_resume_ || resume_generation_ != session_generation_) {
      if (!decoder_.has_device_state()) resume_.device_state.clear();
      resume_.descriptor = session_descriptor_;
      resume_generation_ = session_generation_;
    }
    resume_.epoch = number;
    has_resume_ = true;
    if (decoder_.settles_after() > 0) {
      settling_until_ = number + decoder_.settles_after();
    } else if (full || number >= settling_until_) {
      if (settling_until_ != 0) {
        TLOG_INFO("replica", "live resync settled at epoch %" PRIu64 ": the replica is a resume point again", number);
      }
      settling_until_ = 0;
    }
    counters_.last_applied = number;
    counters_.epochs_applied++;
    page_hashes_sent_ = false;  // the replica changed: the hashes sent no longer describe it
    counters_.last_apply_ms = (clock_->NowNanos() - start) / 1e6;
  }
  if (full) {
    replica_differs_ = false;
    TLOG_INFO("replica", "full epoch %" PRIu64 " applied: replica now holds the primary's whole RAM (%.1f ms)%s",
              number, (clock_->NowNanos() - start) / 1e6,
              decoder_.settles_after() > 0 ? ", read live: a resume point once the epochs up to it are applied" : "");
  }
  if (!disk_status.ok()) return disk_status;  // applied, but the disk must recover before it counts
  decoder_.Discard();
  AppendAck(number, AckStatus::kOk, "", &payload_, reply);
  return DecodeStatus::Ok();
}

std::optional<ResumePoint> Replica::resume_point() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!has_resume_ || settling_until_ != 0 || counters_.disk_needs_recovery) return std::nullopt;
  return resume_;
}

ReplicaCounters Replica::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  ReplicaCounters out = counters_;
  out.has_resume_point = has_resume_ && settling_until_ == 0 && !counters_.disk_needs_recovery;
  return out;
}

}  // namespace tandem::replicator
