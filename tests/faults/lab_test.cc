// The fault lab on its own, measured rather than assumed: reachability per link, cuts, isolation, the loss rule's
// drop rate, the relay's delay and jitter (UDP and TCP), flapping, and cleanup.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <thread>

#include "tests/faults/lab.h"
#include "tests/support/kvm.h"

namespace tandem::faults {
namespace {

#define REQUIRE_LAB() TANDEM_SKIP_UNLESS_AVAILABLE(LabUnavailableReason(), "FAULT LAB UNAVAILABLE: ")

double MonoMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) * 1e3 + double(ts.tv_nsec) / 1e6;
}

sockaddr_in Sockaddr(const std::string& ip, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
  return a;
}

std::unique_ptr<NetLab> MakeLab() {
  auto lab = NetLab::Create(TANDEM_FAULT_RELAY);
  EXPECT_TRUE(lab.ok()) << lab.status().ToString();
  return lab.ok() ? std::move(lab).value() : nullptr;
}

// A UDP echo (or sink) server inside a host's namespace.
class UdpServer {
 public:
  UdpServer(NetLab& lab, Host host, Link link, int port, bool echo = true) : echo_(echo) {
    auto fd = lab.Socket(host, AF_INET, SOCK_DGRAM);
    EXPECT_TRUE(fd.ok()) << fd.status().ToString();
    fd_ = std::move(fd).value();
    int big = 8 << 20;
    setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
    sockaddr_in a = Sockaddr(NetLab::Address(host, link), port);
    EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
    thread_ = std::thread([this] {
      char buf[2048];
      while (!stop_) {
        pollfd p{fd_.get(), POLLIN, 0};
        if (poll(&p, 1, 20) <= 0) continue;
        sockaddr_in from{};
        socklen_t len = sizeof(from);
        ssize_t n = recvfrom(fd_.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n < 0) continue;
        ++received_;
        if (echo_) sendto(fd_.get(), buf, size_t(n), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    });
  }
  ~UdpServer() {
    stop_ = true;
    thread_.join();
  }
  uint64_t received() const { return received_.load(); }

 private:
  bool echo_;
  UniqueFd fd_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> received_{0};
  std::thread thread_;
};

// A UDP client in `host`'s namespace, connected to ip:port.
UniqueFd Client(NetLab& lab, Host host, const std::string& ip, int port) {
  auto fd = lab.Socket(host, AF_INET, SOCK_DGRAM);
  EXPECT_TRUE(fd.ok()) << fd.status().ToString();
  sockaddr_in a = Sockaddr(ip, port);
  EXPECT_EQ(connect(fd->get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
  return std::move(fd).value();
}

// One request, waiting up to timeout_ms for the echo. Returns the round trip in ms, or -1.
double Ping(int fd, int timeout_ms = 300) {
  static uint64_t token = 0;
  const uint64_t mine = ++token;
  const double start = MonoMs();
  if (send(fd, &mine, sizeof(mine), 0) != ssize_t(sizeof(mine))) return -1;
  for (;;) {
    const int left = int(start + timeout_ms - MonoMs());
    if (left <= 0) return -1;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) continue;
    uint64_t got = 0;
    if (recv(fd, &got, sizeof(got), 0) == ssize_t(sizeof(got)) && got == mine) return MonoMs() - start;
  }
}

bool Reaches(NetLab& lab, Host from, Host to, Link link, int port) {
  UdpServer server(lab, to, link, port);
  UniqueFd c = Client(lab, from, NetLab::Address(to, link), port);
  for (int i = 0; i < 3; ++i) {
    if (Ping(c.get(), 200) >= 0) return true;
  }
  return false;
}

// Sends `count` probes `gap_ms` apart without waiting, collecting echoes as they come. Returns the round trips.
std::vector<double> PingStream(int fd, int count, double gap_ms, int tail_ms = 300) {
  std::vector<double> sent(size_t(count), 0), rtts;
  const double start = MonoMs();
  int next = 0;
  double last_activity = start;
  while (next < count || MonoMs() < last_activity + tail_ms) {
    const double now = MonoMs();
    if (next < count && now >= start + next * gap_ms) {
      uint32_t seq = uint32_t(next);
      sent[size_t(next)] = now;
      send(fd, &seq, sizeof(seq), 0);
      ++next;
      last_activity = now;
      continue;
    }
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 1) <= 0) continue;
    uint32_t seq = 0;
    if (recv(fd, &seq, sizeof(seq), 0) == ssize_t(sizeof(seq)) && seq < uint32_t(count)) {
      rtts.push_back(MonoMs() - sent[seq]);
      last_activity = MonoMs();
    }
  }
  return rtts;
}

struct Summary {
  double min = 0, max = 0, mean = 0, stdev = 0;
};
Summary Summarize(const std::vector<double>& v) {
  Summary s;
  if (v.empty()) return s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / double(v.size());
  double var = 0;
  for (double x : v) var += (x - s.mean) * (x - s.mean);
  s.stdev = std::sqrt(var / double(v.size()));
  return s;
}

TEST(FaultLabTest, EveryHostReachesItsPeersOnEveryLinkThroughTheRouter) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  EXPECT_TRUE(Reaches(*lab, Host::kPrimary, Host::kStandby, Link::kData0, 7000));
  EXPECT_TRUE(Reaches(*lab, Host::kPrimary, Host::kStandby, Link::kData1, 7000));
  EXPECT_TRUE(Reaches(*lab, Host::kStandby, Host::kPrimary, Link::kData0, 7000));
  EXPECT_TRUE(Reaches(*lab, Host::kPrimary, Host::kWitness, Link::kMgmt, 7000));
  EXPECT_TRUE(Reaches(*lab, Host::kStandby, Host::kWitness, Link::kMgmt, 7000));
  // The router forwards only within a link: the hosts' management addresses do not reach each other.
  EXPECT_FALSE(Reaches(*lab, Host::kPrimary, Host::kStandby, Link::kMgmt, 7000));
  // Without delay the round trip through the router is well under a millisecond or two.
  UdpServer server(*lab, Host::kStandby, Link::kData0, 7001);
  UniqueFd c = Client(*lab, Host::kPrimary, NetLab::Address(Host::kStandby, Link::kData0), 7001);
  Summary s = Summarize(PingStream(c.get(), 50, 2));
  EXPECT_LT(s.mean, 5.0);
}

TEST(FaultLabTest, CutLinkBlocksOnlyThatLinkUntilRestored) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  ASSERT_TRUE(lab->SetLinkUp(Host::kPrimary, Link::kData0, false).ok());
  EXPECT_FALSE(Reaches(*lab, Host::kPrimary, Host::kStandby, Link::kData0, 7000));
  EXPECT_TRUE(Reaches(*lab, Host::kPrimary, Host::kStandby, Link::kData1, 7000));
  EXPECT_TRUE(Reaches(*lab, Host::kPrimary, Host::kWitness, Link::kMgmt, 7000));
  ASSERT_TRUE(lab->SetLinkUp(Host::kPrimary, Link::kData0, true).ok());
  // Carrier comes back and neighbours re-resolve: allow a little time.
  bool back = false;
  for (int i = 0; i < 20 && !back; ++i) back = Reaches(*lab, Host::kPrimary, Host::kStandby, Link::kData0, 7000);
  EXPECT_TRUE(back);
}

TEST(FaultLabTest, IsolatedHostReachesNobodyOthersStillReachEachOther) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  ASSERT_TRUE(lab->Isolate(Host::kPrimary).ok());
  EXPECT_FALSE(Reaches(*lab, Host::kPrimary, Host::kStandby, Link::kData0, 7000));
  EXPECT_FALSE(Reaches(*lab, Host::kPrimary, Host::kStandby, Link::kData1, 7000));
  EXPECT_FALSE(Reaches(*lab, Host::kPrimary, Host::kWitness, Link::kMgmt, 7000));
  EXPECT_FALSE(Reaches(*lab, Host::kStandby, Host::kPrimary, Link::kData0, 7000));
  EXPECT_TRUE(Reaches(*lab, Host::kStandby, Host::kWitness, Link::kMgmt, 7000));
  ASSERT_TRUE(lab->Reconnect(Host::kPrimary).ok());
  bool back = false;
  for (int i = 0; i < 20 && !back; ++i) back = Reaches(*lab, Host::kPrimary, Host::kWitness, Link::kMgmt, 7000);
  EXPECT_TRUE(back);
}

TEST(FaultLabTest, LossRuleDropsAboutThatPercentage) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  UdpServer sink(*lab, Host::kStandby, Link::kData0, 7002, /*echo=*/false);
  UniqueFd c = Client(*lab, Host::kPrimary, NetLab::Address(Host::kStandby, Link::kData0), 7002);
  auto blast = [&](int n) {
    const uint64_t before = sink.received();
    for (int i = 0; i < n; ++i) {
      uint32_t v = uint32_t(i);
      send(c.get(), &v, sizeof(v), 0);
      if (i % 50 == 49) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return double(sink.received() - before) / n;
  };
  EXPECT_GT(blast(2000), 0.995) << "no loss rule, yet datagrams were lost";
  ASSERT_TRUE(lab->SetLoss(30).ok());
  const double delivered = blast(4000);
  fprintf(stderr, "[lab] 30%% loss rule: %.1f%% delivered\n", delivered * 100);
  // Binomial sd at n=4000 is 0.7 points: +-4 points is > 5 sd.
  EXPECT_NEAR(delivered, 0.70, 0.04);
  // Limited to one host link: the other link is untouched.
  ASSERT_TRUE(lab->SetLoss(50, {{Host::kPrimary, Link::kData1}}).ok());
  EXPECT_GT(blast(2000), 0.995);
  ASSERT_TRUE(lab->SetLoss(0).ok());
  EXPECT_GT(blast(2000), 0.995);
}

TEST(FaultLabTest, RelayDelaysUdpByDelayPlusMinusJitterMeasured) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  ASSERT_TRUE(lab->AddRelayRoute(Proto::kUdp, Host::kStandby, Link::kData0, 7003).ok());
  ASSERT_TRUE(lab->StartRelay().ok());
  UdpServer server(*lab, Host::kStandby, Link::kData0, 7003);
  UniqueFd c = Client(*lab, Host::kPrimary, NetLab::Address(Host::kStandby, Link::kData0), 7003);
  // Delay 0: relayed, still fast.
  Summary fast = Summarize(PingStream(c.get(), 50, 2));
  EXPECT_LT(fast.mean, 5.0);
  ASSERT_TRUE(lab->SetRelay(20, 10).ok());
  std::vector<double> rtts = PingStream(c.get(), 200, 5);
  Summary s = Summarize(rtts);
  fprintf(stderr, "[lab] relay 20+-10 ms each way: %zu/200 echoes, rtt min %.1f mean %.1f max %.1f sd %.1f ms\n",
          rtts.size(), s.min, s.mean, s.max, s.stdev);
  EXPECT_GE(rtts.size(), 195u);
  // Each direction is uniform in [10, 30] ms: the round trip lies in [20, 60], mean 40, sd ~8.2.
  EXPECT_GE(s.min, 19.5);
  EXPECT_LE(s.max, 75.0);  // 60 + scheduling slack on a busy 2-core machine
  EXPECT_NEAR(s.mean, 40.0, 5.0);
  EXPECT_GT(s.stdev, 4.0) << "no jitter";
  // The relay's own drop probability.
  ASSERT_TRUE(lab->SetRelay(0, 0, 50).ok());
  rtts = PingStream(c.get(), 400, 1);
  // Two relay passes per echo: 25% come back (sd 2.2 points).
  EXPECT_NEAR(double(rtts.size()) / 400, 0.25, 0.08);
  auto stats = lab->RelayStats();
  ASSERT_TRUE(stats.ok());
  EXPECT_NE(stats->find("udp_dropped="), std::string::npos);
}

TEST(FaultLabTest, RelayForwardsTcpInOrderWithDelay) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  ASSERT_TRUE(lab->AddRelayRoute(Proto::kTcp, Host::kStandby, Link::kData0, 7004).ok());
  ASSERT_TRUE(lab->StartRelay().ok());
  ASSERT_TRUE(lab->SetRelay(20, 10).ok());
  // TCP echo server in the standby.
  auto listener = lab->Socket(Host::kStandby, AF_INET, SOCK_STREAM);
  ASSERT_TRUE(listener.ok());
  sockaddr_in a = Sockaddr(NetLab::Address(Host::kStandby, Link::kData0), 7004);
  ASSERT_EQ(bind(listener->get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  ASSERT_EQ(listen(listener->get(), 4), 0);
  std::thread server([fd = listener->get()] {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 5000) <= 0) return;
    UniqueFd c(accept(fd, nullptr, nullptr));
    char buf[65536];
    for (;;) {
      ssize_t n = read(c.get(), buf, sizeof(buf));
      if (n <= 0) break;
      if (!WriteFull(c.get(), buf, size_t(n)).ok()) break;
    }
  });
  auto client = lab->Socket(Host::kPrimary, AF_INET, SOCK_STREAM);
  ASSERT_TRUE(client.ok());
  ASSERT_EQ(connect(client->get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
  // Small ping-pongs: each round trip crosses the relay twice.
  std::vector<double> rtts;
  for (int i = 0; i < 15; ++i) {
    char b = char(i), r = 0;
    const double start = MonoMs();
    ASSERT_TRUE(WriteFull(client->get(), &b, 1).ok());
    ASSERT_TRUE(ReadFull(client->get(), &r, 1).ok());
    rtts.push_back(MonoMs() - start);
    EXPECT_EQ(r, b);
  }
  Summary s = Summarize(rtts);
  fprintf(stderr, "[lab] relay tcp: rtt min %.1f mean %.1f max %.1f ms\n", s.min, s.mean, s.max);
  EXPECT_GE(s.min, 19.5);
  EXPECT_NEAR(s.mean, 40.0, 12.0);
  // Bulk: 512 KiB come back byte for byte in order although chunks are jittered.
  std::vector<uint8_t> out(512 << 10), in(out.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t((i * 2654435761u) >> 13);
  std::thread writer([&] { EXPECT_TRUE(WriteFull(client->get(), out.data(), out.size()).ok()); });
  ASSERT_TRUE(ReadFull(client->get(), in.data(), in.size()).ok());
  writer.join();
  EXPECT_TRUE(in == out) << "relay reordered or corrupted the byte stream";
  shutdown(client->get(), SHUT_WR);
  server.join();
}

TEST(FaultLabTest, FlappingLinkLosesSomeProbesThenEndsUp) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  UdpServer server(*lab, Host::kStandby, Link::kData0, 7005);
  UniqueFd c = Client(*lab, Host::kPrimary, NetLab::Address(Host::kStandby, Link::kData0), 7005);
  ASSERT_GE(Ping(c.get()), 0);
  ASSERT_TRUE(lab->StartFlapping(Host::kPrimary, Link::kData0, 40, 40, 800).ok());
  std::vector<double> rtts = PingStream(c.get(), 250, 3, 100);
  fprintf(stderr, "[lab] flapping 40/40 ms: %zu/250 echoes, %llu flaps\n", rtts.size(),
          (unsigned long long)lab->flaps());
  EXPECT_GT(rtts.size(), 20u);
  EXPECT_LT(rtts.size(), 230u);
  EXPECT_GE(lab->flaps(), 5u);
  lab->StopFlapping();
  bool back = false;
  for (int i = 0; i < 20 && !back; ++i) back = Ping(c.get(), 200) >= 0;
  EXPECT_TRUE(back) << "link not left up after flapping";
}

TEST(FaultLabTest, DestructorRemovesNamespacesAndKillsEveryProcessInside) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  const std::string pidfile = lab->dir() + "/grandchild.pid";
  auto pid = lab->Spawn(Host::kStandby, {"/bin/sh", "-c", "sleep 61 & echo $! > " + pidfile + "; sleep 60"},
                        lab->dir() + "/sh.log");
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  pid_t grandchild = 0;
  for (int i = 0; i < 100 && grandchild == 0; ++i) {
    std::ifstream in(pidfile);
    in >> grandchild;
    if (grandchild == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_GT(grandchild, 0);
  ASSERT_TRUE(NetLab::Alive(*pid));
  ASSERT_TRUE(NetLab::Alive(grandchild));
  std::vector<std::string> names;
  for (Host h : {Host::kPrimary, Host::kStandby, Host::kWitness, Host::kRouter}) names.push_back(lab->Namespace(h));
  const std::string dir = lab->dir();
  lab.reset();
  EXPECT_FALSE(NetLab::Alive(*pid));
  for (int i = 0; i < 50 && NetLab::Alive(grandchild); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_FALSE(NetLab::Alive(grandchild)) << "a process started inside the lab outlived it";
  for (const auto& n : names) EXPECT_FALSE(std::filesystem::exists("/run/netns/" + n)) << n;
  EXPECT_FALSE(std::filesystem::exists(dir));
}

TEST(FaultLabTest, SpawnRunsTheProcessInsideTheHostNamespace) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  const std::string log = lab->dir() + "/ip.log";
  auto pid = lab->Spawn(Host::kWitness, {"/usr/sbin/ip", "-4", "-o", "addr"}, log);
  ASSERT_TRUE(pid.ok()) << pid.status().ToString();
  for (int i = 0; i < 100 && NetLab::Alive(*pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  lab->Kill(*pid);
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_NE(text.str().find(NetLab::Address(Host::kWitness, Link::kMgmt)), std::string::npos) << text.str();
  EXPECT_EQ(text.str().find(NetLab::Address(Host::kPrimary, Link::kData0)), std::string::npos) << text.str();
}


// A reconnected host is reachable again at once (within a few ms), on every link: short outages stay short.
TEST(FaultLabTest, ReconnectedHostIsReachableAgainWithinMilliseconds) {
  REQUIRE_LAB();
  auto lab = MakeLab();
  ASSERT_TRUE(lab);
  UdpServer data(*lab, Host::kStandby, Link::kData0, 7006);
  UdpServer mgmt(*lab, Host::kWitness, Link::kMgmt, 7006);
  UniqueFd cd = Client(*lab, Host::kPrimary, NetLab::Address(Host::kStandby, Link::kData0), 7006);
  UniqueFd cm = Client(*lab, Host::kPrimary, NetLab::Address(Host::kWitness, Link::kMgmt), 7006);
  ASSERT_GE(Ping(cd.get()), 0);
  ASSERT_GE(Ping(cm.get()), 0);
  for (int outage = 0; outage < 5; ++outage) {
    ASSERT_TRUE(lab->Isolate(Host::kPrimary).ok());
    // Traffic keeps being sent into the cut, as a daemon would.
    for (int i = 0; i < 8; ++i) {
      uint64_t v = 0;
      send(cd.get(), &v, sizeof(v), 0);
      send(cm.get(), &v, sizeof(v), 0);
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(lab->Reconnect(Host::kPrimary).ok());
    const double back = MonoMs();
    double data_ms = -1, mgmt_ms = -1;
    while (MonoMs() - back < 400 && (data_ms < 0 || mgmt_ms < 0)) {
      if (data_ms < 0 && Ping(cd.get(), 10) >= 0) data_ms = MonoMs() - back;
      if (mgmt_ms < 0 && Ping(cm.get(), 10) >= 0) mgmt_ms = MonoMs() - back;
    }
    fprintf(stderr, "[lab] outage %d: data0 back after %.1f ms, mgmt after %.1f ms\n", outage, data_ms, mgmt_ms);
    EXPECT_GE(data_ms, 0);
    EXPECT_GE(mgmt_ms, 0);
    EXPECT_LT(data_ms, 50);
    EXPECT_LT(mgmt_ms, 50);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

}  // namespace
}  // namespace tandem::faults
