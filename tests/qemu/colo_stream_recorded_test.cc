// The COLO stream parser on streams recorded from a real QEMU 7.2 COLO primary by scripts/record-colo-stream:
// a running and a booting guest, every truncation, and a replica that misses a page.
#include "qemu-integration/colo_stream.h"

#include <gtest/gtest.h>

#include "qemu-integration/resume.h"
#include "tests/qemu/qemu_test_util.h"

namespace tandem::qemu {
namespace {

using replicator::Epoch;
using replicator::kPageSize;
using replicator::VmDescriptor;
using testing::Parsed;
using testing::ParsePrecopyBytes;

// ---- streams recorded from QEMU 7.2 (scripts/record-colo-stream) --------------------------------------------------

constexpr uint32_t kGuestPages = 64;  // the recordings ran the test guest with pages=64

struct RecordedRun {
  Parsed precopy;
  std::vector<uint64_t> checkpoint_pages;
  std::vector<uint32_t> counters;  // guest counter in the replica after the precopy and each checkpoint
  Status status;
  StreamError error = StreamError::kNone;  // the parser's, when it failed
};

// Parses the precopy and `checkpoints` checkpoints, applying each; with `whole`, nothing may be left over.
RecordedRun ParseRecording(const std::vector<uint8_t>& bytes, size_t chunk, size_t checkpoints, bool whole = true) {
  RecordedRun run;
  MemorySource source(bytes, chunk);
  StreamReader reader(&source);
  ColoStreamParser parser(&reader);
  run.precopy = ParsePrecopyBytes(parser);
  run.error = parser.error();
  if (!(run.status = run.precopy.status).ok()) return run;
  auto check = [&]() -> Status {
    uint32_t counter = 0;
    std::string bad = testing::CheckGuestPages(run.precopy.image->Block(0), kGuestPages, &counter,
                                               /*verify_check_word=*/false);
    if (!bad.empty()) return Status::Corruption("guest pages inconsistent: " + bad);
    run.counters.push_back(counter);
    return Status::Ok();
  };
  Epoch epoch;
  for (size_t i = 0; i < checkpoints; ++i) {
    if (!(run.status = check()).ok()) return run;
    run.status = testing::ParseNextCheckpoint(parser, &epoch, i + 1);
    run.error = parser.error();
    if (!run.status.ok()) return run;
    run.status = CheckDeviceSections(epoch.device_state(), run.precopy.descriptor.qemu_vmdesc_json, &run.error);
    if (!run.status.ok()) return run;
    if (!(run.status = run.precopy.image->Apply(epoch)).ok()) return run;
    run.checkpoint_pages.push_back(epoch.pages().size());
  }
  run.status = check();
  if (whole && run.status.ok() && source.remaining() + reader.buffered() != 0) {
    run.status = Status::Corruption(std::to_string(source.remaining() + reader.buffered()) + " bytes left over");
  }
  return run;
}

TEST(RecordedColoStreamTest, RunningGuestPrecopyAndCheckpointsReplicateConsistentRam) {
  const std::vector<uint8_t> bytes = testing::ReadFixture("colo-kvm-16m-running.bin.zst");
  for (size_t chunk : {size_t(4093), SIZE_MAX}) {
    RecordedRun run = ParseRecording(bytes, chunk, 2);
    ASSERT_TRUE(run.status.ok()) << run.status.ToString();
    const VmDescriptor& d = run.precopy.descriptor;
    ASSERT_GE(d.ram_blocks.size(), 1u);
    EXPECT_EQ(d.ram_blocks[0], (replicator::RamBlockInfo{kMainRamBlock, 16u << 20}));
    EXPECT_EQ(d.qemu_configuration.substr(0, 15), std::string("\x07\x00\x00\x00\x0apc-q35-7.2", 15));
    EXPECT_TRUE(CheckDeviceSections(run.precopy.device_state, d.qemu_vmdesc_json).ok());
    nlohmann::json vmdesc = nlohmann::json::parse(d.qemu_vmdesc_json);
    EXPECT_EQ(vmdesc["page_size"], 4096);
    EXPECT_GE(vmdesc["devices"].size(), 10u);
    ASSERT_EQ(run.checkpoint_pages.size(), 2u);
    // The guest rewrites its 64 pages many times per 200 ms checkpoint: each checkpoint carries all of them.
    for (uint64_t pages : run.checkpoint_pages) EXPECT_GE(pages, kGuestPages);
    ASSERT_EQ(run.counters.size(), 3u);
    EXPECT_LT(run.counters[0], run.counters[1]);
    EXPECT_LT(run.counters[1], run.counters[2]);
  }
}

TEST(RecordedColoStreamTest, ReplicaMissingOneCheckpointPageIsCaught) {
  // The consistency check these tests rely on must notice a page left from an older epoch.
  const std::vector<uint8_t> bytes = testing::ReadFixture("colo-kvm-16m-running.bin.zst");
  RecordedRun run = ParseRecording(bytes, SIZE_MAX, 0, /*whole=*/false);
  ASSERT_TRUE(run.status.ok()) << run.status.ToString();
  std::span<uint8_t> mem = run.precopy.image->Block(0);
  const size_t page10 = 0x200000 + 10 * kPageSize;
  const std::vector<uint8_t> old(mem.begin() + std::ptrdiff_t(page10),
                                 mem.begin() + std::ptrdiff_t(page10 + kPageSize));
  RecordedRun full = ParseRecording(bytes, SIZE_MAX, 2);
  ASSERT_TRUE(full.status.ok()) << full.status.ToString();
  std::span<uint8_t> replica = full.precopy.image->Block(0);
  uint32_t counter = 0;
  ASSERT_EQ(testing::CheckGuestPages(replica, kGuestPages, &counter, false), "");
  std::memcpy(replica.data() + page10, old.data(), kPageSize);
  EXPECT_NE(testing::CheckGuestPages(replica, kGuestPages, &counter, false), "");
}

TEST(RecordedColoStreamTest, BootingGuestPrecopyResendsPagesAndParses) {
  const std::vector<uint8_t> bytes = testing::ReadFixture("colo-kvm-16m-booting.bin.zst");
  MemorySource source(bytes);
  StreamReader reader(&source);
  ColoStreamParser parser(&reader);
  Parsed p = ParsePrecopyBytes(parser);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  uint64_t total_pages = 0;
  for (const auto& b : p.descriptor.ram_blocks) total_pages += b.size_bytes / kPageSize;
  // Pages dirtied while the precopy ran are sent again in later passes.
  EXPECT_GT(parser.precopy().pages + parser.precopy().filled_pages, total_pages);
  Epoch epoch;
  for (int i = 1; i <= 2; ++i) {
    Status st = testing::ParseNextCheckpoint(parser, &epoch, uint64_t(i));
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_GT(epoch.pages().size(), 0u);
    EXPECT_TRUE(p.image->Apply(epoch).ok());
  }
  EXPECT_EQ(source.remaining() + reader.buffered(), 0u);
}

void ExpectTruncated(const RecordedRun& run) {
  EXPECT_TRUE(run.status.IsCorruption()) << run.status.ToString();
  EXPECT_EQ(run.error, StreamError::kTruncated) << StreamErrorName(run.error) << ": " << run.status.ToString();
}

TEST(RecordedColoStreamTest, EveryTruncationIsReportedAsTruncated) {
  const std::vector<uint8_t> bytes = testing::ReadFixture("colo-kvm-16m-running.bin.zst");
  // Cut points spread over the whole recording (precopy, device tail, both checkpoints) plus the very start.
  for (size_t cut : {size_t(0), size_t(5), size_t(20), size_t(60)}) {
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + std::ptrdiff_t(cut));
    const RecordedRun run = ParseRecording(part, SIZE_MAX, 2);
    ExpectTruncated(run);
  }
  for (size_t i = 1; i < 97; ++i) {
    const size_t cut = bytes.size() * i / 97;
    std::vector<uint8_t> part(bytes.begin(), bytes.begin() + std::ptrdiff_t(cut));
    RecordedRun run = ParseRecording(part, SIZE_MAX, 2);
    EXPECT_TRUE(run.status.IsCorruption()) << "cut at " << cut << ": " << run.status.ToString();
    EXPECT_EQ(run.error, StreamError::kTruncated) << "cut at " << cut << ": " << run.status.ToString();
  }
}

}  // namespace
}  // namespace tandem::qemu
