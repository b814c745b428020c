// The standby's disk: only whole, verified epochs reach the image, whatever fails and wherever the process dies.
#include "disk/replica.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "disk/disk_writes.h"
#include "tests/disk/disk_test_util.h"

namespace tandem::disk {
namespace {

using namespace testing;  // the disk tests' helpers (disk_test_util.h)

constexpr uint64_t kDisk = 1 << 20;

// Epoch `epoch`'s writes: data at a few places, a zeroed range, a trimmed range.
std::vector<uint8_t> EpochPayload(uint64_t epoch) {
  DiskWritesEncoder enc(kDisk);
  enc.AddData(epoch * 4096, Pattern(20000, uint8_t(epoch)));
  enc.AddData(kDisk - 3000, Pattern(3000, uint8_t(epoch + 100)));
  enc.Add(WriteKind::kZero, 300000, 10000);
  enc.Add(WriteKind::kTrim, 500000, 4096);
  return enc.Finish(epoch);
}

// What the image holds after applying `payload` to `before`.
std::vector<uint8_t> Applied(std::vector<uint8_t> before, const std::vector<uint8_t>& payload) {
  auto d = DecodeDiskWrites(payload);
  EXPECT_TRUE(d.ok());
  for (const DiskWrite& w : d->writes) {
    if (w.kind == WriteKind::kData) {
      std::copy(w.data.begin(), w.data.end(), before.begin() + long(w.offset));
    } else {
      std::fill_n(before.begin() + long(w.offset), w.length, 0);
    }
  }
  return before;
}

class DiskReplicaTest : public ::testing::Test {
 protected:
  void SetUp() override { WriteWholeFile(image_, Pattern(kDisk, 50)); }
  Result<std::unique_ptr<DiskReplica>> Open(FileSystem* fs = DefaultFileSystem()) {
    DiskReplicaOptions options;
    options.image_path = image_;
    return DiskReplica::Open(options, fs);
  }

  TempDir dir_;
  std::string image_ = dir_ / "standby.img";
  std::string journal_ = image_ + ".journal";
};

TEST_F(DiskReplicaTest, AppliesAnEpochDurablyAndRemembersIt) {
  auto replica = Open();
  ASSERT_TRUE(replica.ok()) << replica.status().ToString();
  EXPECT_FALSE((*replica)->has_epoch());
  std::vector<uint8_t> payload = EpochPayload(1);
  ASSERT_TRUE((*replica)->Apply(payload).ok());
  EXPECT_EQ(ReadWholeFile(image_), Applied(Pattern(kDisk, 50), payload));
  EXPECT_EQ((*replica)->applied_epoch(), 1u);
  replica->reset();

  auto reopened = Open();
  ASSERT_TRUE(reopened.ok());
  EXPECT_TRUE((*reopened)->recovery().has_epoch);
  EXPECT_EQ((*reopened)->recovery().epoch, 1u);
  EXPECT_FALSE((*reopened)->recovery().replayed);
  EXPECT_FALSE((*reopened)->recovery().discarded_incomplete);
  EXPECT_EQ(ReadWholeFile(image_), Applied(Pattern(kDisk, 50), payload));
}

TEST_F(DiskReplicaTest, ACorruptPayloadIsRefusedWithNothingWritten) {
  auto replica = Open();
  ASSERT_TRUE(replica.ok());
  std::vector<uint8_t> payload = EpochPayload(1);
  payload[payload.size() / 2] ^= 4;
  Status st = (*replica)->Apply(payload);
  EXPECT_TRUE(st.IsCorruption()) << st.ToString();
  EXPECT_EQ(ReadWholeFile(image_), Pattern(kDisk, 50));
  EXPECT_FALSE(DefaultFileSystem()->Exists(journal_));
  EXPECT_FALSE(DefaultFileSystem()->Exists(journal_ + ".tmp"));
  EXPECT_FALSE((*replica)->has_epoch());
}

TEST_F(DiskReplicaTest, RefusesAnotherDiskSizeAndEpochsNotAfterTheApplied) {
  auto replica = Open();
  ASSERT_TRUE(replica.ok());
  DiskWritesEncoder other(kDisk * 2);
  other.AddData(0, Pattern(10, 1));
  EXPECT_NE((*replica)->Apply(other.Finish(1)).message().find("-byte disk"), std::string::npos);
  ASSERT_TRUE((*replica)->Apply(EpochPayload(2)).ok());
  EXPECT_FALSE((*replica)->Apply(EpochPayload(2)).ok());
  EXPECT_FALSE((*replica)->Apply(EpochPayload(1)).ok());
  DiskWritesEncoder empty(kDisk);
  EXPECT_TRUE((*replica)->Apply(empty.Finish(3)).ok());  // no writes, no I/O, but the epoch counts
  EXPECT_EQ((*replica)->applied_epoch(), 3u);
  EXPECT_TRUE((*replica)->Apply(EpochPayload(4)).ok());
}

// The process dies after each possible step of an Apply in turn; whatever the step, the reopened image holds
// the previous epoch or the new one entirely, and the new one exactly when its journal entry was complete.
TEST_F(DiskReplicaTest, ACrashAtAnyStepLeavesAWholeEpochAfterReopen) {
  const std::vector<uint8_t> base = Pattern(kDisk, 50);
  const std::vector<uint8_t> one = EpochPayload(1), two = EpochPayload(2);
  const std::vector<uint8_t> after_one = Applied(base, one), after_two = Applied(after_one, two);

  // Count the steps of a clean Apply.
  FaultyFileSystem counting;
  int64_t steps = 0;
  {
    WriteWholeFile(image_, base);
    auto replica = Open(&counting);
    ASSERT_TRUE(replica.ok());
    ASSERT_TRUE((*replica)->Apply(one).ok());
    int64_t before = counting.mutations();
    ASSERT_TRUE((*replica)->Apply(two).ok());
    steps = counting.mutations() - before;
  }
  ASSERT_GE(steps, 8);  // create, 2 writes, sync, rename, dir sync, image writes, sync, mark, sync

  int saw_old = 0, saw_new = 0, saw_replay = 0, saw_discard = 0;
  for (int64_t crash_at = 0; crash_at <= steps; ++crash_at) {
    SCOPED_TRACE("crash after step " + std::to_string(crash_at));
    (void)DefaultFileSystem()->Remove(journal_);
    (void)DefaultFileSystem()->Remove(journal_ + ".tmp");
    WriteWholeFile(image_, base);
    FaultyFileSystem fs;
    {
      auto replica = Open(&fs);
      ASSERT_TRUE(replica.ok());
      ASSERT_TRUE((*replica)->Apply(one).ok());
      fs.crash_after = fs.mutations() + crash_at;
      Status st = (*replica)->Apply(two);
      EXPECT_EQ(st.ok(), crash_at == steps) << st.ToString();
    }  // the process is gone
    auto reopened = Open();
    ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
    const std::vector<uint8_t> image = ReadWholeFile(image_);
    ASSERT_TRUE(image == after_one || image == after_two) << "a partial epoch is on the image";
    const DiskRecovery& r = (*reopened)->recovery();
    EXPECT_EQ(r.epoch, image == after_two ? 2u : 1u);
    saw_old += image == after_one;
    saw_new += image == after_two;
    saw_replay += r.replayed;
    saw_discard += r.discarded_incomplete;
    // Whatever happened, the replica goes on.
    ASSERT_TRUE((*reopened)->Apply(EpochPayload(3)).ok());
    EXPECT_EQ(ReadWholeFile(image_), Applied(image, EpochPayload(3)));
  }
  EXPECT_GT(saw_old, 0);
  EXPECT_GT(saw_new, 0);
  EXPECT_GT(saw_replay, 0);
  EXPECT_GT(saw_discard, 0);
}

TEST_F(DiskReplicaTest, AFullDiskRefusesTheEpochAndLeavesTheImageAsItWas) {
  FaultyFileSystem fs;
  auto replica = Open(&fs);
  ASSERT_TRUE(replica.ok());
  const std::vector<uint8_t> payload = EpochPayload(1);
  fs.space_bytes = payload.size() / 2;  // the journal entry does not fit
  Status st = (*replica)->Apply(payload);
  ASSERT_FALSE(st.ok());
  EXPECT_TRUE(IsNoSpace(st)) << st.ToString();
  EXPECT_NE(st.message().find("image is unchanged"), std::string::npos) << st.ToString();
  EXPECT_EQ(ReadWholeFile(image_), Pattern(kDisk, 50));
  EXPECT_FALSE(DefaultFileSystem()->Exists(journal_ + ".tmp"));  // the space is given back
  EXPECT_FALSE((*replica)->needs_recovery());

  fs.space_bytes = UINT64_MAX;  // space freed: the same epoch applies
  ASSERT_TRUE((*replica)->Apply(payload).ok());
  EXPECT_EQ(ReadWholeFile(image_), Applied(Pattern(kDisk, 50), payload));
}

// The same through the kernel: a file size limit makes the journal write fail with EFBIG, as a full disk would.
TEST_F(DiskReplicaTest, AFileSizeLimitBehavesLikeAFullDisk) {
  const std::vector<uint8_t> payload = EpochPayload(1);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    rlimit limit{payload.size() / 2, payload.size() / 2};  // below the journal entry; the image exists already
    if (setrlimit(RLIMIT_FSIZE, &limit) != 0) _exit(10);
    DiskReplicaOptions options;
    options.image_path = image_;
    options.preallocate = false;
    auto replica = DiskReplica::Open(options);
    if (!replica.ok()) _exit(11);
    Status st = (*replica)->Apply(payload);
    _exit(st.ok() ? 12 : IsNoSpace(st) ? 0 : 13);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ReadWholeFile(image_), Pattern(kDisk, 50));
}

TEST_F(DiskReplicaTest, AnImageErrorAfterTheJournalIsRecoveredByReplaying) {
  FaultyFileSystem fs;
  auto replica = Open(&fs);
  ASSERT_TRUE(replica.ok());
  const std::vector<uint8_t> payload = EpochPayload(1);
  fs.image_writes_before_eio = 1;  // the first data entry lands, the second fails
  Status st = (*replica)->Apply(payload);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("Recover()"), std::string::npos) << st.ToString();
  EXPECT_TRUE((*replica)->needs_recovery());
  EXPECT_EQ((*replica)->applied_epoch(), 1u);  // decided: the epoch is journaled
  EXPECT_FALSE((*replica)->Apply(EpochPayload(2)).ok());  // nothing goes on top of a half-applied epoch

  fs.image_writes_before_eio = -1;
  ASSERT_TRUE((*replica)->Recover().ok());
  EXPECT_FALSE((*replica)->needs_recovery());
  EXPECT_EQ(ReadWholeFile(image_), Applied(Pattern(kDisk, 50), payload));
  EXPECT_TRUE((*replica)->Apply(EpochPayload(2)).ok());
}

TEST_F(DiskReplicaTest, ADamagedJournalIsAnErrorNotAGuess) {
  {
    auto replica = Open();
    ASSERT_TRUE(replica.ok());
    ASSERT_TRUE((*replica)->Apply(EpochPayload(1)).ok());
  }
  std::vector<uint8_t> journal = ReadWholeFile(journal_);
  journal[10] ^= 1;  // the epoch number, under the header checksum
  WriteWholeFile(journal_, journal);
  auto reopened = Open();
  ASSERT_FALSE(reopened.ok());
  EXPECT_TRUE(reopened.status().IsCorruption()) << reopened.status().ToString();
}

}  // namespace
}  // namespace tandem::disk
