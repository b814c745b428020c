// The COLO stream parser on synthetic streams: what it takes from a stream, and every bad input it must name.
// Streams recorded from a real QEMU 7.2: colo_stream_recorded_test.cc.
#include "qemu-integration/colo_stream.h"

#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "common/fd.h"
#include "qemu-integration/resume.h"
#include "tests/qemu/qemu_test_util.h"

namespace tandem::qemu {
namespace {

using replicator::Epoch;
using replicator::kPageSize;
using replicator::RamImage;
using replicator::VmDescriptor;
using testing::Parsed;
using testing::ParsePrecopyBytes;

// Writes QEMU's wire format piece by piece.
class StreamBuilder {
 public:
  StreamBuilder& U8(uint8_t v) { return Raw(&v, 1); }
  StreamBuilder& Be16(uint16_t v) { return U8(uint8_t(v >> 8)).U8(uint8_t(v)); }
  StreamBuilder& Be32(uint32_t v) {
    uint8_t b[4];
    StoreBe32(b, v);
    return Raw(b, 4);
  }
  StreamBuilder& Be64(uint64_t v) {
    uint8_t b[8];
    StoreBe64(b, v);
    return Raw(b, 8);
  }
  StreamBuilder& Raw(const void* p, size_t n) {
    bytes.insert(bytes.end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n);
    return *this;
  }
  StreamBuilder& Str8(const std::string& s) { return U8(uint8_t(s.size())).Raw(s.data(), s.size()); }

  StreamBuilder& Header(uint32_t magic = 0x5145564d, uint32_t version = 3) { return Be32(magic).Be32(version); }
  StreamBuilder& Configuration(const std::string& machine = "pc-q35-7.2") {
    return U8(0x07).Be32(uint32_t(machine.size())).Raw(machine.data(), machine.size());
  }
  StreamBuilder& EnableColo() { return U8(0x08).Be16(8).Be16(0); }
  StreamBuilder& RamStart(uint32_t sid, const std::vector<std::pair<std::string, uint64_t>>& blocks) {
    U8(0x01).Be32(sid).Str8("ram").Be32(0).Be32(4);
    uint64_t total = 0;
    for (const auto& b : blocks) total += b.second;
    Be64(total | 0x04);
    for (const auto& b : blocks) Str8(b.first).Be64(b.second);
    return Eos().Footer(sid);
  }
  StreamBuilder& Section(uint8_t type, uint32_t sid) { return U8(type).Be32(sid); }
  // A PAGE record whose bytes are all `fill_byte` (block empty = CONTINUE).
  StreamBuilder& Page(const std::string& block, uint64_t offset, uint8_t fill_byte) {
    Be64(offset | 0x08 | (block.empty() ? 0x20 : 0));
    if (!block.empty()) Str8(block);
    std::vector<uint8_t> page(kPageSize, fill_byte);
    return Raw(page.data(), page.size());
  }
  StreamBuilder& Zero(const std::string& block, uint64_t offset, uint8_t fill) {
    Be64(offset | 0x02 | (block.empty() ? 0x20 : 0));
    if (!block.empty()) Str8(block);
    return U8(fill);
  }
  StreamBuilder& Eos() { return Be64(0x10); }
  StreamBuilder& Footer(uint32_t sid) { return U8(0x7e).Be32(sid); }
  StreamBuilder& Full(uint32_t sid, const std::string& name, uint32_t instance, const std::vector<uint8_t>& body) {
    U8(0x04).Be32(sid).Str8(name).Be32(instance).Be32(1);
    Raw(body.data(), body.size());
    return Footer(sid);
  }
  StreamBuilder& Vmdesc(const std::string& json) {
    return U8(0x06).Be32(uint32_t(json.size())).Raw(json.data(), json.size());
  }

  std::vector<uint8_t> bytes;
};

// Device bodies that contain decoys: a footer-like `7e <sid>` and an `00 06` "trailer start".
const std::vector<uint8_t> kBodyA = {0x01, 0x7e, 0, 0, 0, 10, 0x00, 0x06, 0, 0, 0, 2, '{', '}', 0x42};
const std::vector<uint8_t> kBodyB = {0x00, 0x06, 0x7e, 0, 0, 0, 11, 0x04};

std::string Vmdesc2() {
  return nlohmann::json{{"page_size", 4096},
                        {"devices", {{{"name", "timer"}, {"instance_id", 0}}, {{"name", "apic"}, {"instance_id", 1}}}}}
      .dump();
}

// The device blob (FULL sections + EOF) that goes with Vmdesc2().
std::vector<uint8_t> DeviceBlob2() {
  StreamBuilder b;
  b.Full(10, "timer", 0, kBodyA).Full(11, "apic", 1, kBodyB).U8(0x00);
  return b.bytes;
}

// A complete precopy: blocks mem (4 pages) and rom (1 page); mem pages 0,2 full (0xaa, 0xbb via CONTINUE),
// mem page 1 zero-filled with 0x00, rom page 0 filled 0xcc across a SECTION_PART/END boundary.
StreamBuilder Precopy() {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", 4 * kPageSize}, {"rom", kPageSize}});
  b.Section(0x02, 3).Page("mem", 0, 0xaa).Zero("", kPageSize, 0x00).Page("", 2 * kPageSize, 0xbb).Eos().Footer(3);
  b.Section(0x03, 3).Zero("rom", 0, 0xcc).Eos().Footer(3);
  const std::vector<uint8_t> blob = DeviceBlob2();
  b.Raw(blob.data(), blob.size()).Vmdesc(Vmdesc2());
  return b;
}

// What one checkpoint sends after CHECKPOINT_REQUEST (which the caller adds): VMSTATE_SEND, RAM END, EOF,
// VMSTATE_SIZE + blob. Its first record CONTINUEs the precopy's last block (rom).
StreamBuilder& AppendCheckpoint(StreamBuilder& b) {
  b.Be32(3)
      .Section(0x03, 3)
      .Page("", 0, 0x11)
      .Page("mem", 3 * kPageSize, 0x22)
      .Zero("", 0, 0x05)
      .Eos()
      .Footer(3)
      .U8(0x00);
  const std::vector<uint8_t> blob = DeviceBlob2();
  return b.Be32(4).Be64(blob.size()).Raw(blob.data(), blob.size());
}

// A parse's Status and the parser's error() beside it.
struct Outcome {
  Status status;
  StreamError error = StreamError::kNone;
};

Outcome ParsePrecopyOf(const std::vector<uint8_t>& bytes) {
  MemorySource source(bytes);
  StreamReader reader(&source);
  ColoStreamParser parser(&reader);
  Status st = ParsePrecopyBytes(parser).status;
  return {st, parser.error()};
}

bool PageIs(std::span<const uint8_t> page, uint8_t v) {
  for (uint8_t b : page.first(kPageSize)) {
    if (b != v) return false;
  }
  return true;
}

TEST(ColoStreamTest, ParsesPrecopyInAnyChunkingAndStopsAtItsEnd) {
  StreamBuilder b = Precopy();
  const size_t precopy_size = b.bytes.size();
  b.Be32(1);  // the next CHECKPOINT_REQUEST, which must stay unread
  for (size_t chunk : {size_t(1), size_t(3), size_t(7), size_t(4096), size_t(5000), SIZE_MAX}) {
    SCOPED_TRACE("chunk " + std::to_string(chunk));
    MemorySource source(b.bytes, chunk);
    StreamReader reader(&source, 8192);
    ColoStreamParser parser(&reader);
    Parsed p = ParsePrecopyBytes(parser);
    ASSERT_TRUE(p.status.ok()) << p.status.ToString();
    EXPECT_EQ(reader.offset(), precopy_size);
    ASSERT_EQ(p.descriptor.ram_blocks.size(), 2u);
    EXPECT_EQ(p.descriptor.ram_blocks[0], (replicator::RamBlockInfo{"mem", 4 * kPageSize}));
    EXPECT_EQ(p.descriptor.ram_blocks[1], (replicator::RamBlockInfo{"rom", kPageSize}));
    EXPECT_EQ(p.descriptor.qemu_configuration, std::string("\x07\x00\x00\x00\x0apc-q35-7.2", 15));
    EXPECT_EQ(p.descriptor.qemu_vmdesc_json, Vmdesc2());
    EXPECT_EQ(p.device_state, DeviceBlob2());
    EXPECT_EQ(parser.precopy().pages, 2u);
    EXPECT_EQ(parser.precopy().filled_pages, 2u);
    std::span<uint8_t> mem = p.image->Block(0);
    EXPECT_TRUE(PageIs(mem.subspan(0), 0xaa));
    EXPECT_TRUE(PageIs(mem.subspan(kPageSize), 0x00));
    EXPECT_TRUE(PageIs(mem.subspan(2 * kPageSize), 0xbb));
    EXPECT_TRUE(PageIs(p.image->Block(1), 0xcc));
    EXPECT_TRUE(parser.ExpectMessage(ColoMessage::kCheckpointRequest).ok());
  }
}

TEST(ColoStreamTest, CheckpointPagesAndDeviceStateGoIntoTheEpoch) {
  StreamBuilder b = Precopy();
  b.Be32(1);
  AppendCheckpoint(b);
  b.Be32(1);
  AppendCheckpoint(b);
  MemorySource source(b.bytes, 13);
  StreamReader reader(&source, 8192);
  ColoStreamParser parser(&reader);
  Parsed p = ParsePrecopyBytes(parser);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  Epoch epoch;
  for (int i = 1; i <= 2; ++i) {
    Status st = testing::ParseNextCheckpoint(parser, &epoch, uint64_t(i));
    ASSERT_TRUE(st.ok()) << st.ToString();
    ASSERT_EQ(epoch.pages().size(), 3u);
    // CONTINUE at the start of a checkpoint refers to the last block of what came before: rom (index 1) after
    // the precopy, mem (index 0) after checkpoint 1.
    EXPECT_EQ(epoch.pages()[0].block, i == 1 ? 1u : 0u);
    EXPECT_EQ(epoch.pages()[0].offset, 0u);
    EXPECT_TRUE(PageIs({epoch.PageData(epoch.pages()[0]), kPageSize}, 0x11));
    EXPECT_EQ(epoch.pages()[1].block, 0u);
    EXPECT_EQ(epoch.pages()[1].offset, 3 * kPageSize);
    EXPECT_TRUE(epoch.pages()[2].filled);
    EXPECT_EQ(epoch.pages()[2].fill, 0x05);
    EXPECT_EQ(epoch.pages()[2].offset, 0u);
    EXPECT_EQ(epoch.pages()[2].block, 0u);
    EXPECT_EQ(epoch.device_state(), DeviceBlob2());
    EXPECT_EQ(parser.last_checkpoint().pages, 2u);
    EXPECT_EQ(parser.last_checkpoint().filled_pages, 1u);
  }
  EXPECT_EQ(source.remaining() + reader.buffered(), 0u);
}

TEST(ColoStreamTest, ResumeStreamIsHeaderConfigurationDevicesAndVmdesc) {
  StreamBuilder b = Precopy();
  MemorySource source(b.bytes);
  StreamReader reader(&source);
  ColoStreamParser parser(&reader);
  Parsed p = ParsePrecopyBytes(parser);
  ASSERT_TRUE(p.status.ok());
  const std::string stream = BuildResumeStream(p.descriptor, p.device_state);
  StreamBuilder want;
  want.Header().Configuration();
  const std::vector<uint8_t> blob = DeviceBlob2();
  want.Raw(blob.data(), blob.size()).Vmdesc(Vmdesc2());
  EXPECT_EQ(stream, std::string(want.bytes.begin(), want.bytes.end()));
}

TEST(ColoStreamTest, DeviceSectionsCheckAgainstVmdesc) {
  const std::vector<uint8_t> blob = DeviceBlob2();
  EXPECT_TRUE(CheckDeviceSections(blob, Vmdesc2()).ok());
  std::vector<uint8_t> cut(blob.begin(), blob.end() - 1);
  StreamError error = StreamError::kNone;
  EXPECT_TRUE(CheckDeviceSections(cut, Vmdesc2(), &error).IsCorruption());
  EXPECT_EQ(error, StreamError::kBadDeviceState);
  const std::string other =
      nlohmann::json{{"devices", {{{"name", "timer"}, {"instance_id", 0}}, {{"name", "hpet"}, {"instance_id", 0}}}}}
          .dump();
  EXPECT_TRUE(CheckDeviceSections(blob, other).IsCorruption());
}

// ---- bad input -------------------------------------------------------------------------------------------------

void ExpectCorruption(const Outcome& o, StreamError error) {
  EXPECT_TRUE(o.status.IsCorruption()) << o.status.ToString();
  EXPECT_EQ(o.error, error) << StreamErrorName(o.error) << ": " << o.status.ToString();
}
void ExpectUnsupported(const Outcome& o, StreamError error) {
  EXPECT_TRUE(o.status.IsUnsupported()) << o.status.ToString();
  EXPECT_EQ(o.error, error) << StreamErrorName(o.error) << ": " << o.status.ToString();
}

TEST(ColoStreamBadInputTest, BadMagic) {
  StreamBuilder b;
  b.Header(0x12345678).Configuration();
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadMagic);
}

TEST(ColoStreamBadInputTest, UnknownVersion) {
  StreamBuilder b;
  b.Header(0x5145564d, 2).Configuration();
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnknownVersion);
}

TEST(ColoStreamBadInputTest, EmptyStream) { ExpectCorruption(ParsePrecopyOf({}), StreamError::kTruncated); }

TEST(ColoStreamBadInputTest, ConfigurationMissing) {
  StreamBuilder b;
  b.Header().EnableColo().RamStart(3, {{"mem", kPageSize}});
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadConfiguration);
}

TEST(ColoStreamBadInputTest, UnknownConfigurationSubsection) {
  StreamBuilder b;
  b.Header().Configuration().U8(0x05).Str8("configuration/new-thing").Be32(1).Be32(7).EnableColo();
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

TEST(ColoStreamBadInputTest, KnownConfigurationSubsectionsAreKeptRaw) {
  StreamBuilder config;
  config.Configuration().U8(0x05).Str8("configuration/capabilities").Be32(1).Be32(1).Str8("x-ignore-shared");
  config.U8(0x05).Str8("configuration/uuid").Be32(1);
  const std::vector<uint8_t> uuid(16, 0x5a);
  config.Raw(uuid.data(), uuid.size());
  StreamBuilder b;
  b.Header().Raw(config.bytes.data(), config.bytes.size());
  StreamBuilder rest = Precopy();
  const size_t skip = 8 + StreamBuilder().Configuration().bytes.size();
  b.Raw(rest.bytes.data() + skip, rest.bytes.size() - skip);
  MemorySource source(b.bytes, 5);
  StreamReader reader(&source);
  ColoStreamParser parser(&reader);
  Parsed p = ParsePrecopyBytes(parser);
  ASSERT_TRUE(p.status.ok()) << p.status.ToString();
  EXPECT_EQ(p.descriptor.qemu_configuration, std::string(config.bytes.begin(), config.bytes.end()));
}

TEST(ColoStreamBadInputTest, NotAColoStream) {
  StreamBuilder b = Precopy();
  // Remove ENABLE_COLO (5 bytes right after the 15-byte configuration).
  b.bytes.erase(b.bytes.begin() + 8 + 15, b.bytes.begin() + 8 + 15 + 5);
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

TEST(ColoStreamBadInputTest, UnknownCommand) {
  StreamBuilder b;
  b.Header().Configuration().U8(0x08).Be16(1).Be16(0);
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

TEST(ColoStreamBadInputTest, UnknownSectionType) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().U8(0x42);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kUnknownSectionType);
}

TEST(ColoStreamBadInputTest, NonRamIterativeSection) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().U8(0x01).Be32(3).Str8("block").Be32(0).Be32(1);
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

TEST(ColoStreamBadInputTest, UnknownRamVersion) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().U8(0x01).Be32(3).Str8("ram").Be32(0).Be32(5);
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

TEST(ColoStreamBadInputTest, BlockSizesExceedTotal) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().U8(0x01).Be32(3).Str8("ram").Be32(0).Be32(4);
  b.Be64(kPageSize | 0x04).Str8("mem").Be64(2 * kPageSize);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadBlockTable);
}

TEST(ColoStreamBadInputTest, UnknownRecordFlags) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 3).Be64(0x800);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadRamRecord);
}

TEST(ColoStreamBadInputTest, XbzrleRecord) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 3).Be64(0x40).Str8("mem");
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

TEST(ColoStreamBadInputTest, CompressedPageRecord) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 3).Be64(0x100);
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

TEST(ColoStreamBadInputTest, TruncatedPageRecord) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 3).Page("mem", 0, 1);
  b.bytes.resize(b.bytes.size() - 100);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kTruncated);
}

TEST(ColoStreamBadInputTest, PageBeyondBlock) {
  StreamBuilder b;
  b.Header()
      .Configuration()
      .EnableColo()
      .RamStart(3, {{"mem", 2 * kPageSize}})
      .Section(0x02, 3)
      .Page("mem", 2 * kPageSize, 1);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadRamRecord);
}

TEST(ColoStreamBadInputTest, UnknownBlock) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 3).Page("vga.vram", 0, 1);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadRamRecord);
}

TEST(ColoStreamBadInputTest, ContinueWithoutPreviousBlock) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 3).Page("", 0, 1);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadRamRecord);
}

TEST(ColoStreamBadInputTest, FooterOfAnotherSection) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 3).Eos().Footer(4);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadFooter);
}

TEST(ColoStreamBadInputTest, MissingFooter) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 3).Eos().U8(0x04);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadFooter);
}

TEST(ColoStreamBadInputTest, PartOfUnknownSection) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x02, 9);
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

TEST(ColoStreamBadInputTest, DeviceSectionBeforeRamEnded) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Full(5, "timer", 0, kBodyA);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kBadSectionOrder);
}

TEST(ColoStreamBadInputTest, VmdescListsOtherDevices) {
  // The trailer is there, but its device list does not match the sections: not the end of a precopy.
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x03, 3).Eos().Footer(3);
  const std::vector<uint8_t> blob = DeviceBlob2();
  b.Raw(blob.data(), blob.size());
  b.Vmdesc(nlohmann::json{{"devices", {{{"name", "timer"}, {"instance_id", 0}}}}}.dump());
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kTruncated);
}

TEST(ColoStreamBadInputTest, TruncatedVmdesc) {
  StreamBuilder b = Precopy();
  b.bytes.resize(b.bytes.size() - 3);
  ExpectCorruption(ParsePrecopyOf(b.bytes), StreamError::kTruncated);
}

TEST(ColoStreamBadInputTest, PageSizeOtherThan4096) {
  StreamBuilder b;
  b.Header().Configuration().EnableColo().RamStart(3, {{"mem", kPageSize}}).Section(0x03, 3).Eos().Footer(3);
  const std::vector<uint8_t> blob = DeviceBlob2();
  b.Raw(blob.data(), blob.size());
  nlohmann::json vmdesc = nlohmann::json::parse(Vmdesc2());
  vmdesc["page_size"] = 65536;
  b.Vmdesc(vmdesc.dump());
  ExpectUnsupported(ParsePrecopyOf(b.bytes), StreamError::kUnsupportedFeature);
}

// Checkpoint-side bad input: the precopy parses, then `checkpoint` follows VMSTATE_SEND.
Outcome ParseCheckpointOf(const std::function<void(StreamBuilder&)>& checkpoint) {
  StreamBuilder b = Precopy();
  b.Be32(1).Be32(3);
  checkpoint(b);
  MemorySource source(b.bytes);
  StreamReader reader(&source);
  ColoStreamParser parser(&reader);
  Epoch epoch;
  Status st = ParsePrecopyBytes(parser).status;
  if (st.ok()) st = parser.ExpectMessage(ColoMessage::kCheckpointRequest);
  if (st.ok()) st = parser.ExpectMessage(ColoMessage::kVmstateSend);
  if (st.ok()) st = parser.ParseCheckpointState(&epoch, &epoch.device_state());
  return {st, parser.error()};
}

TEST(ColoStreamBadInputTest, UnexpectedColoMessage) {
  StreamBuilder b = Precopy();
  b.Be32(6);
  MemorySource source(b.bytes);
  StreamReader reader(&source);
  ColoStreamParser parser(&reader);
  ASSERT_TRUE(ParsePrecopyBytes(parser).status.ok());
  Status st = parser.ExpectMessage(ColoMessage::kCheckpointRequest);
  ExpectCorruption({st, parser.error()}, StreamError::kUnexpectedMessage);
}

TEST(ColoStreamBadInputTest, CheckpointWithoutRamSection) {
  ExpectCorruption(ParseCheckpointOf([](StreamBuilder& b) { b.U8(0x00); }), StreamError::kBadSectionOrder);
}

TEST(ColoStreamBadInputTest, CheckpointPageBeyondBlock) {
  ExpectCorruption(ParseCheckpointOf([](StreamBuilder& b) { b.Section(0x03, 3).Zero("rom", kPageSize, 0); }),
                   StreamError::kBadRamRecord);
}

TEST(ColoStreamBadInputTest, CheckpointWithoutEof) {
  ExpectCorruption(ParseCheckpointOf([](StreamBuilder& b) { b.Section(0x03, 3).Eos().Footer(3).U8(0x04); }),
                   StreamError::kBadSectionOrder);
}

TEST(ColoStreamBadInputTest, DeviceStateSizeOutOfRange) {
  ExpectCorruption(
      ParseCheckpointOf([](StreamBuilder& b) { b.Section(0x03, 3).Eos().Footer(3).U8(0).Be32(4).Be64(1ull << 40); }),
      StreamError::kBadDeviceState);
}

TEST(ColoStreamBadInputTest, DeviceStateWithoutEof) {
  ExpectCorruption(ParseCheckpointOf([](StreamBuilder& b) {
                     b.Section(0x03, 3).Eos().Footer(3).U8(0).Be32(4).Be64(3).U8(0x04).U8(0x01).U8(0x02);
                   }),
                   StreamError::kBadDeviceState);
}

TEST(ColoStreamBadInputTest, TruncatedDeviceState) {
  ExpectCorruption(
      ParseCheckpointOf([](StreamBuilder& b) { b.Section(0x03, 3).Eos().Footer(3).U8(0).Be32(4).Be64(100).U8(0x04); }),
      StreamError::kTruncated);
}

}  // namespace
}  // namespace tandem::qemu
