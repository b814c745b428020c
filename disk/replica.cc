#include "disk/replica.h"

#include <xxhash.h>

#include <vector>

#include "common/fd.h"
#include "disk/disk_writes.h"

namespace tandem::disk {

namespace {

// Journal entry: a 48-byte header, then the DISK_WRITES payload exactly as received.
//   0 magic "TDJN" | 4 version u16 | 6 reserved u16 | 8 epoch u64 | 16 payload length u64 | 24 payload XXH3 u64 |
//  32 header XXH3 u64 (of bytes 0..32) | 40 state u64: 0 = journaled, kApplied = the image holds it
constexpr uint32_t kJournalMagic = 0x4e4a4454;  // "TDJN" read as little-endian
constexpr uint16_t kJournalVersion = 1;
constexpr size_t kJournalHeaderSize = 48;
constexpr size_t kStateAt = 40;
constexpr uint64_t kApplied = 0x4445494c50504121;  // "!APPLIED" read as little-endian
constexpr uint64_t kMaxJournalPayload = 1ull << 34;  // 16 GiB: a length beyond it is damage, not an epoch

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

Result<std::unique_ptr<DiskReplica>> DiskReplica::Open(const DiskReplicaOptions& options_in, FileSystem* fs) {
  DiskReplicaOptions options = options_in;
  if (options.journal_path.empty()) options.journal_path = options.image_path + ".journal";
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<File> image, fs->Open(options.image_path, FileSystem::Mode::kReadWrite));
  TANDEM_ASSIGN_OR_RETURN(uint64_t size, image->Size());
  if (size == 0) return Status::InvalidArgument("standby disk image " + options.image_path + " is empty");
  if (options.preallocate) {
    Status st = image->Allocate(size);
    if (!st.ok()) return st.WithContext("preallocating the standby disk image " + options.image_path);
  }
  std::unique_ptr<DiskReplica> replica(new DiskReplica(options, fs, std::move(image), size));

  // An entry still being written when the process died: its epoch was never acknowledged (Apply returns only
  // after the entry is complete and applied), and the image was not touched for it.
  const std::string tmp = options.journal_path + ".tmp";
  if (fs->Exists(tmp)) {
    TANDEM_RETURN_IF_ERROR(fs->Remove(tmp));
    replica->recovery_.discarded_incomplete = true;
  }
  if (fs->Exists(options.journal_path)) {
    TANDEM_ASSIGN_OR_RETURN(replica->journal_, fs->Open(options.journal_path, FileSystem::Mode::kReadWrite));
    Status st = replica->ReplayJournal();
    if (!st.ok()) return st.WithContext("standby disk journal " + options.journal_path);
  }
  return replica;
}

DiskReplica::DiskReplica(const DiskReplicaOptions& options, FileSystem* fs, std::unique_ptr<File> image,
                         uint64_t size)
    : options_(options), fs_(fs), image_(std::move(image)), size_(size) {}

Status DiskReplica::Apply(std::span<const uint8_t> payload) {
  if (needs_recovery_) {
    return Status::Aborted("standby disk: epoch " + std::to_string(applied_epoch_) +
                           " is journaled but not fully applied; Recover() first");
  }
  TANDEM_ASSIGN_OR_RETURN(DiskWrites writes, DecodeDiskWrites(payload));
  const std::string epoch_name = "standby disk: epoch " + std::to_string(writes.epoch);
  if (writes.disk_size != size_) {
    return Status::InvalidArgument(epoch_name + " is for a " + std::to_string(writes.disk_size) +
                                   "-byte disk, the image has " + std::to_string(size_) + " bytes");
  }
  if (has_epoch_ && writes.epoch <= applied_epoch_) {
    return Status::InvalidArgument(epoch_name + " is not after the applied epoch " + std::to_string(applied_epoch_));
  }
  if (writes.writes.empty()) {  // nothing changes on the image: no I/O at all
    applied_epoch_ = writes.epoch;
    has_epoch_ = true;
    return Status::Ok();
  }
  Status st = WriteJournal(writes.epoch, payload);
  if (!st.ok()) {
    if (!needs_recovery_) return st.WithContext(epoch_name + " not applied, the image is unchanged");
    return st.WithContext(epoch_name + " journaled; Recover() applies it");
  }
  st = ApplyToImage(writes);
  if (st.ok()) st = MarkApplied();
  return st.ok() ? st : st.WithContext(epoch_name + " journaled but not fully applied; Recover() applies it");
}

Status DiskReplica::WriteJournal(uint64_t epoch, std::span<const uint8_t> payload) {
  uint8_t header[kJournalHeaderSize] = {};
  StoreLe32(header, kJournalMagic);
  header[4] = uint8_t(kJournalVersion), header[5] = uint8_t(kJournalVersion >> 8);
  StoreLe64(header + 8, epoch);
  StoreLe64(header + 16, payload.size());
  StoreLe64(header + 24, XXH3_64bits(payload.data(), payload.size()));
  StoreLe64(header + 32, XXH3_64bits(header, 32));

  // Written whole under a temporary name, synced, then renamed into place: the journal file is always either
  // the previous entry or this complete one, never a torn mix.
  const std::string tmp = options_.journal_path + ".tmp";
  journal_.reset();
  auto written = [&]() -> Result<std::unique_ptr<File>> {
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<File> f, fs_->Open(tmp, FileSystem::Mode::kCreateTruncate));
    TANDEM_RETURN_IF_ERROR(f->PWrite(0, header));
    TANDEM_RETURN_IF_ERROR(f->PWrite(kJournalHeaderSize, payload));
    TANDEM_RETURN_IF_ERROR(f->Sync());
    return f;
  }();
  if (!written.ok()) {
    (void)fs_->Remove(tmp);  // give the space back; what is left of it is discarded at the next Open anyway
    return written.status();
  }
  if (Status st = fs_->Rename(tmp, options_.journal_path); !st.ok()) {
    (void)fs_->Remove(tmp);
    return st;
  }
  // From here the epoch is decided: a crash replays it at the next Open.
  needs_recovery_ = true;
  applied_epoch_ = epoch;
  has_epoch_ = true;
  journal_ = std::move(written.value());
  return fs_->SyncDir(DirOf(options_.journal_path));
}

Status DiskReplica::ApplyToImage(const DiskWrites& writes) {
  for (const DiskWrite& w : writes.writes) {
    if (w.kind == WriteKind::kData) {
      TANDEM_RETURN_IF_ERROR(image_->PWrite(w.offset, w.data));
    } else {
      // Zeroed in place: the blocks stay allocated, so a later epoch's write there needs no space.
      TANDEM_RETURN_IF_ERROR(image_->ZeroRange(w.offset, w.length, /*deallocate=*/false));
    }
  }
  return image_->Sync();
}

Status DiskReplica::MarkApplied() {
  uint8_t applied[8];
  StoreLe64(applied, kApplied);
  TANDEM_RETURN_IF_ERROR(journal_->PWrite(kStateAt, applied));
  TANDEM_RETURN_IF_ERROR(journal_->Sync());
  needs_recovery_ = false;
  return Status::Ok();
}

Status DiskReplica::Recover() {
  if (!needs_recovery_) return Status::Ok();
  if (!journal_) {  // the rename happened, then reopening failed: open it by name
    TANDEM_ASSIGN_OR_RETURN(journal_, fs_->Open(options_.journal_path, FileSystem::Mode::kReadWrite));
  }
  return ReplayJournal();
}

Status DiskReplica::ReplayJournal() {
  uint8_t header[kJournalHeaderSize];
  TANDEM_RETURN_IF_ERROR(journal_->PRead(0, header));
  if (LoadLe32(header) != kJournalMagic) return Status::Corruption("bad journal magic");
  if (uint16_t(header[4] | header[5] << 8) != kJournalVersion) return Status::Unsupported("journal version");
  if (LoadLe64(header + 32) != XXH3_64bits(header, 32)) return Status::Corruption("journal header checksum");
  const uint64_t epoch = LoadLe64(header + 8);
  const uint64_t length = LoadLe64(header + 16);
  recovery_.has_epoch = has_epoch_ = true;
  recovery_.epoch = applied_epoch_ = epoch;
  if (LoadLe64(header + kStateAt) == kApplied) {
    needs_recovery_ = false;
    return Status::Ok();
  }
  needs_recovery_ = true;
  if (length > kMaxJournalPayload) return Status::Corruption("journal payload length " + std::to_string(length));
  std::vector<uint8_t> payload(length);
  TANDEM_RETURN_IF_ERROR(journal_->PRead(kJournalHeaderSize, payload));
  if (LoadLe64(header + 24) != XXH3_64bits(payload.data(), payload.size())) {
    return Status::Corruption("journal payload checksum");
  }
  // The payload was verified before it was journaled; decoding again also re-checks every entry's hash.
  TANDEM_ASSIGN_OR_RETURN(DiskWrites writes, DecodeDiskWrites(payload));
  TANDEM_RETURN_IF_ERROR(ApplyToImage(writes));
  TANDEM_RETURN_IF_ERROR(MarkApplied());
  recovery_.replayed = true;
  return Status::Ok();
}

}  // namespace tandem::disk
