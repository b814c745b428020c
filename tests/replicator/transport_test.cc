// Socket transports on 127.0.0.1 and on a unix socket in a temp dir, for every engine: large gathered sends
// arrive intact whatever the chunking (short sends and short reads happen for real at these sizes), timeouts fire,
// Shutdown unblocks a blocked reader, a peer that leaves is Closed.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <tuple>

#include <chrono>
#include <random>
#include <thread>

#include "replicator/transport.h"
#include "tests/support/temp_dir.h"

namespace tandem::replicator {
namespace {

enum class Family { kTcp, kUnix };

using ::tandem::testing::TempDir;

struct Pair {
  std::unique_ptr<Transport> client, server;
};

Pair Connect(IoEngine engine, Family family = Family::kTcp, const std::string& dir = "") {
  Pair p;
  int port = 0;
  const std::string listen_at = family == Family::kTcp ? "127.0.0.1:0" : "unix:" + dir + "/replication.sock";
  auto listener = ListenStream(listen_at, &port);
  EXPECT_TRUE(listener.ok()) << listener.status().ToString();
  if (!listener.ok()) return p;
  auto fd = ConnectStream(family == Family::kTcp ? "127.0.0.1:" + std::to_string(port) : listen_at, 1000);
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

class TransportTest : public ::testing::TestWithParam<std::tuple<IoEngine, Family>> {
 protected:
  IoEngine engine() const { return std::get<0>(GetParam()); }
  Pair Connect() { return replicator::Connect(engine(), std::get<1>(GetParam()), dir_.path()); }

 private:
  TempDir dir_;
};

TEST_P(TransportTest, EngineIsTheOneAskedFor) {
  Pair p = Connect();
  EXPECT_STREQ(p.client->engine_name(), engine() == IoEngine::kPoll ? "poll" : "io_uring");
  EXPECT_EQ(p.client->engine_detail().rfind(p.client->engine_name(), 0), 0u) << p.client->engine_detail();
}

TEST_P(TransportTest, LargeGatheredSendsArriveIntactInAnyChunking) {
  Pair p = Connect();
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
  Pair p = Connect();
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
  Pair p = Connect();
  std::vector<uint8_t> big(64 << 20);
  iovec iov{big.data(), big.size()};
  Status st = p.client->Send({&iov, 1}, 200);
  EXPECT_TRUE(st.IsTimeout()) << st.ToString();
}

TEST_P(TransportTest, ShutdownUnblocksABlockedReader) {
  Pair p = Connect();
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
  Pair p = Connect();
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

// What the read-ahead of the io_uring engine must not change: records of every size, read in any sizes with
// WaitReadable between them, come out in order; the end of the stream after a WaitReadable is still reported.
TEST_P(TransportTest, MixedSizesWithWaitReadableBetweenArriveInOrder) {
  Pair p = Connect();
  std::mt19937_64 rng(5);
  const size_t kSizes[] = {1, 7, 24, 100, 4095, 4096, 4097, 16384, 20000, 300000};
  std::vector<size_t> sizes;
  size_t total = 0;
  for (int i = 0; i < 400; ++i) {
    sizes.push_back(kSizes[rng() % std::size(kSizes)]);
    total += sizes.back();
  }
  std::vector<uint8_t> data(total);
  for (auto& x : data) x = uint8_t(rng());
  std::thread sender([&] {
    size_t at = 0;
    for (size_t n : sizes) {
      iovec iov{data.data() + at, n};
      ASSERT_TRUE(p.client->Send({&iov, 1}, 5000).ok());
      at += n;
    }
    p.client->Shutdown();
  });
  std::vector<uint8_t> got(total);
  size_t at = 0;
  for (size_t i = 0; at < total; ++i) {
    const size_t n = std::min(total - at, sizes[(i * 7) % sizes.size()]);  // not the sender's chunking
    ASSERT_TRUE(p.server->WaitReadable(5000).ok());
    ASSERT_TRUE(p.server->Recv(got.data() + at, n, 5000).ok());
    at += n;
  }
  sender.join();
  EXPECT_EQ(0, memcmp(got.data(), data.data(), total));
  EXPECT_TRUE(p.server->WaitReadable(1000).ok());  // the end of the stream counts as readable
  uint8_t byte;
  Status st = p.server->Recv(&byte, 1, 1000);
  EXPECT_TRUE(st.IsClosed()) << st.ToString();
  EXPECT_EQ(st.message(), "end of stream");
}

TEST_P(TransportTest, ShutdownUnblocksABlockedWaitReadable) {
  Pair p = Connect();
  Status st;
  std::thread waiter([&] { st = p.server->WaitReadable(10000); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto start = std::chrono::steady_clock::now();
  p.server->Shutdown();
  waiter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  uint8_t byte;
  EXPECT_FALSE(p.server->Recv(&byte, 1, 100).ok());
}

TEST_P(TransportTest, ShutdownUnblocksABlockedSender) {
  Pair p = Connect();
  Status st;
  std::vector<uint8_t> big(64 << 20);
  std::thread sender([&] {
    iovec iov{big.data(), big.size()};
    st = p.client->Send({&iov, 1}, 10000);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto start = std::chrono::steady_clock::now();
  p.client->Shutdown();
  sender.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_FALSE(st.ok());
}

// The transport's last user is often not the thread that used it (the shipper's sender thread ends a connection
// whose acks another thread read): the peer must still see the end of the stream at once, not when the kernel
// gets round to tearing down an io_uring that holds the socket.
TEST_P(TransportTest, PeerSeesTheEndAtOnceWhenAnotherThreadDestroysTheTransport) {
  Pair p = Connect();
  std::thread user([&] {
    uint8_t hello[3] = {1, 2, 3};
    iovec iov{hello, 3};
    ASSERT_TRUE(p.client->Send({&iov, 1}, 1000).ok());
    uint8_t reply[3];
    ASSERT_TRUE(p.client->Recv(reply, 3, 1000).ok());
  });
  uint8_t buf[3];
  ASSERT_TRUE(p.server->Recv(buf, 3, 1000).ok());
  iovec iov{buf, 3};
  ASSERT_TRUE(p.server->Send({&iov, 1}, 1000).ok());
  user.join();
  const auto start = std::chrono::steady_clock::now();
  p.client.reset();
  Status st = p.server->Recv(buf, 1, 1000);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  EXPECT_TRUE(st.IsClosed()) << st.ToString();
  EXPECT_LT(ms.count(), 20) << "the peer saw the end of the stream only after " << ms.count() << " ms";
}

// A ring may be tied to the thread that first used it (io_uring SINGLE_ISSUER): a transport used from a new
// thread every time must still work, in both directions.
TEST_P(TransportTest, EveryCallFromAnotherThreadStillWorks) {
  Pair p = Connect();
  for (uint8_t i = 0; i < 10; ++i) {
    std::thread([&] {
      uint8_t out[2] = {i, uint8_t(i + 1)};
      iovec iov{out, 2};
      ASSERT_TRUE(p.client->Send({&iov, 1}, 1000).ok());
      uint8_t in[2];
      ASSERT_TRUE(p.server->WaitReadable(1000).ok());
      ASSERT_TRUE(p.server->Recv(in, 2, 1000).ok());
      EXPECT_EQ(in[0], i);
      EXPECT_EQ(in[1], i + 1);
    }).join();
  }
}

INSTANTIATE_TEST_SUITE_P(Engines, TransportTest,
                         ::testing::Combine(::testing::Values(IoEngine::kPoll, IoEngine::kIoUring),
                                            ::testing::Values(Family::kTcp, Family::kUnix)),
                         [](const ::testing::TestParamInfo<std::tuple<IoEngine, Family>>& p) {
                           return std::string(std::get<0>(p.param) == IoEngine::kPoll ? "Poll" : "IoUring") +
                                  (std::get<1>(p.param) == Family::kTcp ? "Tcp" : "Unix");
                         });

// TCP_NODELAY is a TCP option: set on TCP sockets, not tried on unix ones.
TEST(TransportTest, TcpSocketsGetNoDelay) {
  int port = 0;
  auto listener = ListenStream("127.0.0.1:0", &port);
  ASSERT_TRUE(listener.ok());
  auto fd = ConnectStream("127.0.0.1:" + std::to_string(port), 1000);
  ASSERT_TRUE(fd.ok());
  UniqueFd view(::dup(fd->get()));  // the same socket, to look at after the transport took it
  auto t = MakeSocketTransport(std::move(fd).value(), IoEngine::kPoll);
  ASSERT_TRUE(t.ok());
  int nodelay = 0;
  socklen_t len = sizeof(nodelay);
  ASSERT_EQ(getsockopt(view.get(), IPPROTO_TCP, TCP_NODELAY, &nodelay, &len), 0);
  EXPECT_EQ(nodelay, 1);
}

TEST(TransportTest, UnixListenerReplacesAStaleSocketFileButNotALiveOne) {
  TempDir dir;
  const std::string address = "unix:" + dir.path() + "/s.sock";
  int port = -1;
  {
    auto first = ListenStream(address, &port);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    EXPECT_EQ(port, 0);
    auto second = ListenStream(address, &port);  // the first still listens
    ASSERT_FALSE(second.ok());
    EXPECT_NE(second.status().ToString().find("in use"), std::string::npos) << second.status().ToString();
  }
  struct stat st;
  ASSERT_EQ(lstat((dir.path() + "/s.sock").c_str(), &st), 0);  // left behind, as documented
  auto again = ListenStream(address, &port);                    // its listener is gone: replaced
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  auto fd = ConnectStream(address, 1000);
  EXPECT_TRUE(fd.ok()) << fd.status().ToString();
  RemoveUnixSocket(address);
  EXPECT_NE(lstat((dir.path() + "/s.sock").c_str(), &st), 0);
}

TEST(TransportTest, UnixListenerLeavesARegularFileAlone) {
  TempDir dir;
  const std::string path = dir.path() + "/not-a-socket";
  std::ofstream(path) << "keep me";
  int port = 0;
  EXPECT_FALSE(ListenStream("unix:" + path, &port).ok());
  RemoveUnixSocket("unix:" + path);
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  EXPECT_EQ(text, "keep me");
}

TEST(TransportTest, UnixConnectWithNobodyListeningFails) {
  TempDir dir;
  auto fd = ConnectStream("unix:" + dir.path() + "/nobody.sock", 100);
  ASSERT_FALSE(fd.ok());
  EXPECT_FALSE(fd.status().IsTimeout()) << fd.status().ToString();
}

TEST(TransportTest, BadAddresses) {
  int port = 0;
  EXPECT_FALSE(ListenStream("no-port", &port).ok());
  EXPECT_FALSE(ListenStream("127.0.0.1:99999", &port).ok());
  EXPECT_FALSE(ConnectStream("127.0.0.1:x", 100).ok());
  EXPECT_FALSE(ParseIoEngine("threads").ok());
  EXPECT_EQ(ParseIoEngine("epoll").value(), IoEngine::kPoll);
  EXPECT_EQ(ParseIoEngine("io_uring").value(), IoEngine::kIoUring);
}

// "[v6]:port" is the grammar heartbeats use too (common/net_address.h): a stream listens and connects on it.
TEST(TransportTest, Ipv6LiteralAddressCarriesAStream) {
  int port = 0;
  auto listener = ListenStream("[::1]:0", &port);
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  ASSERT_NE(port, 0);
  auto fd = ConnectStream("[::1]:" + std::to_string(port), 1000);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  UniqueFd accepted(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted.valid());
  auto client = MakeSocketTransport(std::move(fd).value(), IoEngine::kPoll);
  auto server = MakeSocketTransport(std::move(accepted), IoEngine::kPoll);
  ASSERT_TRUE(client.ok() && server.ok());
  char out[] = "epoch";
  iovec iov{out, sizeof(out)};
  ASSERT_TRUE((*client)->Send({&iov, 1}, 1000).ok());
  char in[sizeof(out)] = {};
  ASSERT_TRUE((*server)->Recv(in, sizeof(in), 1000).ok());
  EXPECT_STREQ(in, "epoch");
  EXPECT_FALSE(CheckStreamAddress("::1:7400").ok()) << "an IPv6 host needs its brackets";
}

TEST(TransportTest, UnixAddressWithAnEmptyPath) {
  int port = 0;
  auto listener = ListenStream("unix:", &port);
  ASSERT_FALSE(listener.ok());
  EXPECT_NE(listener.status().ToString().find("empty socket path"), std::string::npos) << listener.status().ToString();
  EXPECT_FALSE(ConnectStream("unix:", 100).ok());
  EXPECT_FALSE(CheckStreamAddress("unix:").ok());
}

TEST(TransportTest, UnixPathLongerThanSunPath) {
  const std::string address = "unix:/tmp/" + std::string(sizeof(sockaddr_un::sun_path), 'x') + ".sock";
  int port = 0;
  auto listener = ListenStream(address, &port);
  ASSERT_FALSE(listener.ok());
  EXPECT_NE(listener.status().ToString().find("longer than the 107"), std::string::npos)
      << listener.status().ToString();
  EXPECT_FALSE(ConnectStream(address, 100).ok());
  EXPECT_FALSE(CheckStreamAddress(address).ok());
  // The longest path that fits is fine as an address.
  EXPECT_TRUE(CheckStreamAddress("unix:/" + std::string(sizeof(sockaddr_un::sun_path) - 2, 'y')).ok());
  EXPECT_TRUE(CheckStreamAddress("127.0.0.1:7400").ok());
}

}  // namespace
}  // namespace tandem::replicator
