// Helpers shared by the replicator tests: a small VM layout, a primary that encodes epochs against its mirror
// the way EpochShipper does, and a loop that feeds a byte stream to a Replica the way EpochReceiver does.
#pragma once

#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <span>
#include <vector>

#include "replicator/epoch_codec.h"
#include "replicator/guest_ram.h"
#include "replicator/replica.h"
#include "replicator/transport.h"

namespace tandem::replicator {
// gtest prints a DecodeError by name.
inline void PrintTo(DecodeError error, std::ostream* os) { *os << DecodeErrorName(error); }
}  // namespace tandem::replicator

namespace tandem::replicator::testing {

inline VmDescriptor SmallVm(const std::string& name = "vm1") {
  VmDescriptor d;
  d.vm_name = name;
  d.ram_blocks = {{"mem", 16 * kPageSize}, {"rom", 2 * kPageSize}};
  d.qemu_configuration = "pc-q35-7.2";
  d.qemu_vmdesc_json = R"({"devices":[]})";
  return d;
}

inline std::vector<uint8_t> Snapshot(const RamImage& image) {
  std::vector<uint8_t> out;
  for (uint32_t b = 0; b < image.blocks().size(); ++b) {
    auto block = image.Block(b);
    out.insert(out.end(), block.begin(), block.end());
  }
  return out;
}

// Plays the primary: a mirror of what the standby holds, epochs made of a few pages of varied kinds.
class FakePrimary {
 public:
  explicit FakePrimary(VmDescriptor d = SmallVm(), uint64_t term = 1, uint64_t generation = 0x1234,
                       PageCodecOptions codec = {})
      : descriptor_(std::move(d)), term_(term), generation_(generation), encoder_(codec), rng_(99) {
    mirror_ = std::move(RamImage::Create(descriptor_, {})).value();
    for (uint32_t b = 0; b < mirror_->blocks().size(); ++b) {
      auto block = mirror_->Block(b);
      for (size_t i = 0; i < block.size(); ++i) block[i] = uint8_t((i / 7) ^ b);  // compressible
    }
    device_state_.assign(300, 0xd5);
  }

  RamImage& mirror() { return *mirror_; }
  const std::vector<uint8_t>& device_state() const { return device_state_; }
  uint64_t term() const { return term_; }
  EpochEncoder& encoder() { return encoder_; }

  std::vector<uint8_t> Hello(uint32_t version = kProtocolVersion, bool disk = false) {
    HelloMessage h;
    h.version = version;
    h.has_disk = disk;
    h.role = PeerRole::kPrimary;
    h.term = term_;
    h.generation = generation_;
    h.descriptor = descriptor_;
    BufferSink sink;
    EXPECT_TRUE(encoder_.EncodeHello(h, &sink).ok());
    return sink.bytes;
  }

  std::vector<uint8_t> Full(uint64_t number, std::span<const uint8_t> disk_writes = {}) {
    BufferSink sink;
    Status st = encoder_.EncodeFull(number, term_, *mirror_, device_state_, &sink, disk_writes);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return sink.bytes;
  }

  // A full epoch read live, as EpochShipper reads a resync while the guest runs: the "mem" block from a file
  // holding the mirror's (GuestRam maps it read-only), flagged live, settling `settles_after` epochs later.
  std::vector<uint8_t> LiveFull(uint64_t number, uint32_t settles_after) {
    char path[] = "/tmp/tandem-live-ram-XXXXXX";
    const int fd = mkstemp(path);
    EXPECT_GE(fd, 0);
    auto mem = mirror_->Block(0);
    EXPECT_EQ(pwrite(fd, mem.data(), mem.size(), 0), ssize_t(mem.size()));
    close(fd);
    auto ram = GuestRam::Open(descriptor_, {{"mem", path}});
    unlink(path);  // the mapping keeps it
    EXPECT_TRUE(ram.ok()) << ram.status().ToString();
    if (!ram.ok()) return {};
    for (uint32_t b = 1; b < mirror_->blocks().size(); ++b) {
      for (uint64_t off = 0; off < mirror_->Block(b).size(); off += kPageSize) {
        memcpy((*ram)->PageBuffer(b, off), mirror_->Block(b).data() + off, kPageSize);
      }
    }
    ResyncSource source;
    source.ram = ram->get();
    source.settles_after = [settles_after] { return settles_after; };
    BufferSink sink;
    Status st = encoder_.EncodeFull(number, term_, source, device_state_, &sink);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return sink.bytes;
  }

  // Fills `epoch` with a mix of page kinds (delta, filled, random, rewritten unchanged) and device state.
  void MakeEpoch(uint64_t number, Epoch* epoch) {
    epoch->Reset(number, false);
    auto block0 = mirror_->Block(0);
    // A small change to an existing page: XOR-delta.
    uint64_t off = (number % 16) * kPageSize;
    uint8_t* p = epoch->PageBuffer(0, off);
    memcpy(p, block0.data() + off, kPageSize);
    p[number % kPageSize] ^= 0x5a;
    // A page with a byte changed in every other word: too many runs to send sparse, XOR + LZ4/zstd.
    off = ((number + 9) % 16) * kPageSize;
    uint8_t* q = epoch->PageBuffer(0, off);
    memcpy(q, block0.data() + off, kPageSize);
    for (size_t i = 0; i < kPageSize; i += 16) q[i] ^= uint8_t(number | 1);
    // A zero page.
    epoch->FilledPage(0, ((number + 3) % 16) * kPageSize, 0);
    // A page rewritten as it was.
    off = ((number + 5) % 16) * kPageSize;
    memcpy(epoch->PageBuffer(0, off), block0.data() + off, kPageSize);
    // An incompressible page, every few epochs.
    if (number % 4 == 0) {
      uint8_t* r = epoch->PageBuffer(1, kPageSize);
      for (size_t i = 0; i < kPageSize; ++i) r[i] = uint8_t(rng_());
    }
    epoch->device_state().assign(200 + number % 50, uint8_t(number));
  }

  // Encodes `epoch` against the mirror, then folds it into the mirror (what the shipper does).
  std::vector<uint8_t> Delta(const Epoch& epoch) {
    BufferSink sink;
    Status st = encoder_.EncodeEpoch(epoch, term_, mirror_.get(), &sink);
    EXPECT_TRUE(st.ok()) << st.ToString();
    EXPECT_TRUE(mirror_->Apply(epoch).ok());
    device_state_ = epoch.device_state();
    return sink.bytes;
  }

  std::vector<uint8_t> NextDelta(uint64_t number) {
    Epoch e;
    MakeEpoch(number, &e);
    return Delta(e);
  }

 private:
  VmDescriptor descriptor_;
  uint64_t term_, generation_;
  EpochEncoder encoder_;
  std::unique_ptr<RamImage> mirror_;
  std::vector<uint8_t> device_state_;
  std::mt19937_64 rng_;
};

inline std::vector<uint8_t> Concat(std::initializer_list<std::vector<uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Splits a stream into its records (each with header), for tests that edit streams record by record.
inline std::vector<std::vector<uint8_t>> SplitRecords(const std::vector<uint8_t>& stream) {
  std::vector<std::vector<uint8_t>> out;
  size_t pos = 0;
  while (pos + kRecordHeaderSize <= stream.size()) {
    size_t len = kRecordHeaderSize + LoadLe32(stream.data() + pos + 4);
    out.emplace_back(stream.begin() + long(pos), stream.begin() + long(pos + len));
    pos += len;
  }
  return out;
}

struct FeedResult {
  Status status;  // Ok when the stream ended cleanly between records
  DecodeError error = DecodeError::kNone;  // what was wrong with the bytes, when status is not Ok
  std::vector<AckMessage> acks;
  std::vector<HelloMessage> hellos;
  std::vector<uint8_t> disk_hashes;  // the standby's DISK_HASHES payload, if it sent one
};

inline void ParseReplies(const std::vector<uint8_t>& reply, FeedResult* result) {
  auto t = MakeMemoryTransport(reply);
  RecordReader reader(t.get());
  RecordView rec;
  while (reader.Next(-1, 1000, &rec).ok()) {
    if (rec.type == uint32_t(RecordType::kAck)) {
      AckMessage a;
      EXPECT_TRUE(ParseAck(rec.payload, &a).ok());
      result->acks.push_back(a);
    } else if (rec.type == uint32_t(RecordType::kHello)) {
      HelloMessage h;
      const DecodeStatus parsed = ParseHello(rec.payload, &h);
      EXPECT_TRUE(parsed.ok()) << parsed.ToString();
      result->hellos.push_back(h);
    } else if (rec.type == uint32_t(RecordType::kDiskHashes)) {
      result->disk_hashes.assign(rec.payload.begin(), rec.payload.end());
    }
  }
}

// Records through a Replica within the session it is in (no StartSession: what EpochReceiver feeds it after the
// HELLO); the raw replies are appended to `replies` when given.
inline FeedResult FeedMore(Replica& replica, std::span<const uint8_t> bytes, std::vector<uint8_t>* replies = nullptr) {
  FeedResult result;
  auto t = MakeMemoryTransport(bytes);
  RecordReader reader(t.get());
  for (size_t i = 0; i < bytes.size() + 1; ++i) {  // at most one record per byte
    RecordView rec;
    std::vector<uint8_t> reply;
    DecodeStatus st = reader.Next(-1, 1000, &rec);
    if (!st.ok()) {
      if (!(st.status().IsClosed() && st.status().message() == "end of stream")) {
        replica.OnStreamError(st, &reply);
        result.status = st;
        result.error = st.error();
      }
      ParseReplies(reply, &result);
      if (replies) replies->insert(replies->end(), reply.begin(), reply.end());
      return result;
    }
    st = replica.OnRecord(rec, &reply);
    ParseReplies(reply, &result);
    if (replies) replies->insert(replies->end(), reply.begin(), reply.end());
    if (!st.ok()) {
      result.status = st;
      result.error = st.error();
      return result;
    }
  }
  return result;
}

// One connection's worth of bytes through a Replica, as EpochReceiver runs it.
inline FeedResult Feed(Replica& replica, std::span<const uint8_t> bytes) {
  replica.StartSession();
  return FeedMore(replica, bytes);
}

inline ReplicaOptions Options(const std::string& vm = "vm1") {
  ReplicaOptions o;
  o.expected_vm_name = vm;
  return o;
}

// A standby that already applied full epoch 1 of `primary`.
inline void Seed(FakePrimary& primary, Replica& replica, uint64_t number = 1) {
  FeedResult r = Feed(replica, Concat({primary.Hello(), primary.Full(number)}));
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  ASSERT_EQ(r.acks.size(), 1u);
  ASSERT_EQ(r.acks[0].status, AckStatus::kOk);
  ASSERT_EQ(Snapshot(*replica.image()), Snapshot(primary.mirror()));
}

// Rejected with an ACK of `status` for the reason `error`.
inline void ExpectRejected(const FeedResult& r, AckStatus status, DecodeError error) {
  EXPECT_FALSE(r.status.ok());
  EXPECT_EQ(r.error, error) << r.status.ToString();
  ASSERT_FALSE(r.acks.empty()) << r.status.ToString();
  EXPECT_EQ(r.acks.back().status, status) << r.acks.back().reason;
}

}  // namespace tandem::replicator::testing
