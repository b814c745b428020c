// Socket transports on 127.0.0.1, for every engine: large gathered sends arrive intact whatever the chunking
// (short sends and short reads happen for real at these sizes), timeouts fire, Shutdown unblocks a blocked
// reader, a peer that leaves is Closed.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <random>
#include <thread>

#include "replicator/transport.h"

namespace tandem::replicator {
namespace {

struct Pair {
  std::unique_ptr<Transport> client, server;
};

Pair Connect(IoEngine engine) {
  Pair p;
  int port = 0;
  auto listener = ListenTcp("127.0.0.1:0", &port);
  EXPECT_TRUE(listener.ok());
  auto fd = ConnectTcp("127.0.0.1:" + std::to_string(port), 1000);
  EXPECT_TRUE(fd.ok()) << fd.status().ToString();
  UniqueFd accepted(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  EXPECT_TRUE(accepted.valid());
  auto c = MakeSocketTransport(std::move(fd).value(), engine);
  auto s = MakeSocketTransport(std::move(accepted), engine);
  EXPECT_TRUE(c.ok() && s.ok());
  p.client = std::move(c).value();
  p.server = std::move(s).value();
  return p;
}

class TransportTest : public ::testing::TestWithParam<IoEngine> {};

TEST_P(TransportTest, EngineIsTheOneAskedFor) {
  Pair p = Connect(GetParam());
  EXPECT_STREQ(p.client->engine_name(), GetParam() == IoEngine::kPoll ? "poll" : "io_uring");
}

TEST_P(TransportTest, LargeGatheredSendsArriveIntactInAnyChunking) {
  Pair p = Connect(GetParam());
  std::mt19937_64 rng(3);
  std::vector<uint8_t> a(6 << 20), b(3 << 20);
  for (auto& x : a) x = uint8_t(rng());
  for (auto& x : b) x = uint8_t(rng());
  std::thread sender([&] {
    iovec iov[2] = {{a.data(), a.size()}, {b.data(), b.size()}};
    EXPECT_TRUE(p.client->Send({iov, 2}, 5000).ok());
  });
  std::vector<uint8_t> got(a.size() + b.size());
  size_t at = 0;
  while (at < got.size()) {
    size_t n = std::min<size_t>(got.size() - at, 1 + rng() % 300000);
    ASSERT_TRUE(p.server->Recv(got.data() + at, n, 5000).ok());
    at += n;
  }
  sender.join();
  EXPECT_EQ(0, memcmp(got.data(), a.data(), a.size()));
  EXPECT_EQ(0, memcmp(got.data() + a.size(), b.data(), b.size()));
}

TEST_P(TransportTest, ReceiveTimesOutWhenNothingComes) {
  Pair p = Connect(GetParam());
  uint8_t byte;
  const auto start = std::chrono::steady_clock::now();
  Status st = p.server->Recv(&byte, 1, 100);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  EXPECT_TRUE(st.IsTimeout()) << st.ToString();
  EXPECT_GE(ms.count(), 90);
  EXPECT_LT(ms.count(), 2000);
  EXPECT_TRUE(p.server->WaitReadable(50).IsTimeout());
}

TEST_P(TransportTest, SendTimesOutWhenThePeerDoesNotRead) {
  Pair p = Connect(GetParam());
  std::vector<uint8_t> big(64 << 20);
  iovec iov{big.data(), big.size()};
  Status st = p.client->Send({&iov, 1}, 200);
  EXPECT_TRUE(st.IsTimeout()) << st.ToString();
}

TEST_P(TransportTest, ShutdownUnblocksABlockedReader) {
  Pair p = Connect(GetParam());
  Status st;
  std::thread reader([&] {
    uint8_t buf[16];
    st = p.server->Recv(buf, sizeof(buf), 10000);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto start = std::chrono::steady_clock::now();
  p.server->Shutdown();
  reader.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_FALSE(st.ok());
}

TEST_P(TransportTest, PeerThatLeavesIsClosed) {
  Pair p = Connect(GetParam());
  uint8_t hello[3] = {1, 2, 3};
  iovec iov{hello, 3};
  ASSERT_TRUE(p.client->Send({&iov, 1}, 1000).ok());
  p.client.reset();
  uint8_t buf[8];
  Status st = p.server->Recv(buf, 8, 1000);
  EXPECT_TRUE(st.IsClosed()) << st.ToString();
  EXPECT_EQ(st.message(), "stream truncated mid-read");
  EXPECT_TRUE(p.server->Recv(buf, 1, 1000).IsClosed());
}

INSTANTIATE_TEST_SUITE_P(Engines, TransportTest, ::testing::Values(IoEngine::kPoll, IoEngine::kIoUring),
                         [](const ::testing::TestParamInfo<IoEngine>& p) {
                           return std::string(p.param == IoEngine::kPoll ? "Poll" : "IoUring");
                         });

TEST(TransportTest, BadAddresses) {
  int port = 0;
  EXPECT_FALSE(ListenTcp("no-port", &port).ok());
  EXPECT_FALSE(ListenTcp("127.0.0.1:99999", &port).ok());
  EXPECT_FALSE(ConnectTcp("127.0.0.1:x", 100).ok());
  EXPECT_FALSE(ParseIoEngine("threads").ok());
  EXPECT_EQ(ParseIoEngine("epoll").value(), IoEngine::kPoll);
  EXPECT_EQ(ParseIoEngine("io_uring").value(), IoEngine::kIoUring);
}

}  // namespace
}  // namespace tandem::replicator
