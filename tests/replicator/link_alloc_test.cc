// Sealing and opening the records of an established link allocate nothing, under both suites: neither operator
// new (counting_new.h) nor OpenSSL's own allocator (counted through CRYPTO_set_mem_functions, installed before
// OpenSSL allocates anything in this binary). The EVP contexts are made and keyed once per connection.
#include <openssl/crypto.h>

#include <gtest/gtest.h>

#include <cstring>

#include "replicator/link_security.h"
#include "replicator/messages.h"
#include "tests/replicator/counting_new.h"

namespace {

std::atomic<uint64_t> g_openssl_allocations{0};
void* CountingMalloc(size_t n, const char*, int) {
  g_openssl_allocations.fetch_add(1);
  return std::malloc(n);
}
void* CountingRealloc(void* p, size_t n, const char*, int) {
  g_openssl_allocations.fetch_add(1);
  return std::realloc(p, n);
}
void CountingFree(void* p, const char*, int) { std::free(p); }
const bool g_openssl_hooked = CRYPTO_set_mem_functions(CountingMalloc, CountingRealloc, CountingFree) == 1;

}  // namespace

namespace tandem::replicator {
namespace {

// The wire in memory: what one side sends, the other reads, in a buffer reserved once.
class MemoryWire final : public Transport {
 public:
  MemoryWire() { bytes_.reserve(8 << 20); }
  void Clear() { bytes_.clear(), read_ = 0; }
  Status Send(std::span<const iovec> iov, int) override {
    for (const iovec& v : iov) {
      const auto* p = static_cast<const uint8_t*>(v.iov_base);
      bytes_.insert(bytes_.end(), p, p + v.iov_len);
    }
    return Status::Ok();
  }
  Status Recv(void* buf, size_t len, int) override {
    if (bytes_.size() - read_ < len) return Status::Closed("end of stream");
    memcpy(buf, bytes_.data() + read_, len);
    read_ += len;
    return Status::Ok();
  }
  Status WaitReadable(int) override { return Status::Ok(); }
  void Shutdown() override {}
  const char* engine_name() const override { return "memory"; }

 private:
  std::vector<uint8_t> bytes_;
  size_t read_ = 0;
};

class LinkAllocTest : public ::testing::TestWithParam<LinkEncryption> {};

TEST_P(LinkAllocTest, SealingAndOpeningRecordsAllocateNothingAfterWarmUp) {
  ASSERT_TRUE(g_openssl_hooked) << "OpenSSL allocated before the counting hooks were installed";
  LinkKey key{};
  key[0] = 7;
  auto sealer = std::move(RecordCipher::Create(GetParam(), key)).value();
  auto opener = std::move(RecordCipher::Create(GetParam(), key)).value();
  // An epoch's records: a small one, a large PAGES record (not coalesced), and its end.
  std::vector<std::vector<uint8_t>> records(3);
  AppendRecord(RecordType::kEpochBegin, std::vector<uint8_t>(kEpochBeginSize, 1), &records[0]);
  AppendRecord(RecordType::kPages, std::vector<uint8_t>(kMaxPagesPayload, 2), &records[1]);
  AppendRecord(RecordType::kEpochEnd, std::vector<uint8_t>(kEpochEndSize, 3), &records[2]);
  MemoryWire wire;
  TransportSink sink(&wire, 1000, sealer.get());
  RecordReader reader(&wire, opener.get());
  auto round = [&] {
    wire.Clear();
    for (const auto& r : records) ASSERT_TRUE(sink.WriteRecord(r).ok());
    ASSERT_TRUE(sink.Flush().ok());
    for (const auto& r : records) {
      RecordView view;
      DecodeStatus st = reader.Next(-1, -1, &view);
      ASSERT_TRUE(st.ok()) << st.ToString();
      ASSERT_EQ(view.payload.size() + kRecordHeaderSize, r.size());
      ASSERT_EQ(0, memcmp(view.payload.data(), r.data() + kRecordHeaderSize, view.payload.size()));
    }
  };
  round();  // warm-up: the reader's payload buffer grows to the largest record
  const uint64_t news = g_allocations.load(), mallocs = g_openssl_allocations.load();
  for (int i = 0; i < 20; ++i) round();
  EXPECT_EQ(g_allocations.load() - news, 0u) << "operator new in the steady state";
  EXPECT_EQ(g_openssl_allocations.load() - mallocs, 0u) << "OpenSSL allocated in the steady state";
  EXPECT_EQ(sealer->records(), 63u);
}

INSTANTIATE_TEST_SUITE_P(Suites, LinkAllocTest, ::testing::Values(LinkEncryption::kNone, LinkEncryption::kAesGcm));

}  // namespace
}  // namespace tandem::replicator
