// HeartbeatService over real UDP sockets on 127.0.0.1 / 127.0.0.2 (both are loopback on Linux).
#include "heartbeat/heartbeat.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "tests/support/free_port.h"

namespace tandem::heartbeat {
namespace {

constexpr const char* kPsk = "service-test-pre-shared-key";

using ::tandem::testing::FreeUdpPort;

std::string Addr(const char* ip, int port) { return std::string(ip) + ":" + std::to_string(port); }

// Options for a primary/standby pair; link i uses 127.0.0.(i+1) on both ends.
struct Pair {
  HeartbeatOptions primary, standby;
};
Pair MakePair(size_t links, int interval_ms, int timeout_ms) {
  static const char* kIps[] = {"127.0.0.1", "127.0.0.2", "127.0.0.3"};
  Pair p;
  p.primary.node_name = "primary";
  p.primary.peer_name = "standby";
  p.standby.node_name = "standby";
  p.standby.peer_name = "primary";
  for (size_t i = 0; i < links; ++i) {
    const std::string a = Addr(kIps[i], FreeUdpPort(kIps[i]));
    const std::string b = Addr(kIps[i], FreeUdpPort(kIps[i]));
    p.primary.links.push_back({a, b});
    p.standby.links.push_back({b, a});
  }
  for (HeartbeatOptions* o : {&p.primary, &p.standby}) {
    o->interval_ms = interval_ms;
    o->timeout_ms = timeout_ms;
    o->psk = kPsk;
  }
  return p;
}

// Polls `pred` every millisecond for at most `limit`.
bool WaitFor(const std::function<bool()>& pred, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

// Counts callbacks and remembers when the last one ran.
struct Recorder {
  std::atomic<int> lost{0}, recovered{0}, restarted{0};
  std::atomic<int64_t> lost_at_ns{0};
  void Attach(HeartbeatService& s) {
    s.OnPeerLost([this] {
      lost_at_ns = SystemClock()->NowNanos();
      lost++;
    });
    s.OnPeerRecovered([this] { recovered++; });
    s.OnPeerRestarted([this] { restarted++; });
  }
};

bool AllLinksUp(const HeartbeatService& s) {
  const PeerStatus p = s.peer();
  return p.alive && std::all_of(p.links.begin(), p.links.end(), [](const LinkStatus& l) { return l.up; });
}

uint64_t Rejected(const HeartbeatService& s, size_t link = 0) { return s.peer().links[link].rejected; }

TEST(HeartbeatServiceTest, TwoServicesSeeEachOtherAliveWithRttOnEveryLink) {
  Pair p = MakePair(2, 10, 200);
  HeartbeatService a(p.primary, SystemClock()), b(p.standby, SystemClock());
  a.SetLocalState({Role::kPrimary, 3, 77});
  b.SetLocalState({Role::kStandby, 3, 70});
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  auto rtt_known = [](const HeartbeatService& s) {
    const PeerStatus peer = s.peer();
    return peer.alive && std::all_of(peer.links.begin(), peer.links.end(),
                                     [](const LinkStatus& l) { return l.up && l.rtt_ms > 0; });
  };
  ASSERT_TRUE(WaitFor([&] { return rtt_known(a) && rtt_known(b); }));
  const PeerStatus pa = a.peer(), pb = b.peer();
  EXPECT_TRUE(pa.ever_heard);
  EXPECT_EQ(pa.remote.role, Role::kStandby);
  EXPECT_EQ(pa.remote.term, 3u);
  EXPECT_EQ(pa.remote.last_epoch, 70u);
  EXPECT_EQ(pb.remote.role, Role::kPrimary);
  EXPECT_EQ(pb.remote.last_epoch, 77u);
  EXPECT_EQ(pa.incarnation, b.incarnation());
  EXPECT_EQ(pb.incarnation, a.incarnation());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(pa.links[i].local_address, p.primary.links[i].local_address);
    EXPECT_EQ(pa.links[i].peer_address, p.primary.links[i].peer_address);
    EXPECT_GT(pa.links[i].sent, 0u);
    EXPECT_GT(pa.links[i].received, 0u);
    EXPECT_EQ(pa.links[i].rejected, 0u);
    EXPECT_LT(pa.links[i].rtt_ms, 200.0);
    printf("link %zu: rtt %.3f ms / %.3f ms, loss %.2f, sent %lu received %lu\n", i, pa.links[i].rtt_ms,
           pb.links[i].rtt_ms, pa.links[i].loss, (unsigned long)pa.links[i].sent,
           (unsigned long)pa.links[i].received);
  }
  // The epoch moves without any other effect.
  a.SetLocalState({Role::kPrimary, 3, 78});
  EXPECT_TRUE(WaitFor([&] { return b.peer().remote.last_epoch == 78; }));
}

TEST(HeartbeatServiceTest, StoppedPeerIsLostAfterTheTimeout) {
  Pair p = MakePair(2, 10, 60);
  Recorder rec;  // declared first: it must outlive the service thread that calls it
  HeartbeatService a(p.primary, SystemClock());
  rec.Attach(a);
  ASSERT_TRUE(a.Start().ok());
  std::vector<double> detection_ms;
  for (int round = 0; round < 5; ++round) {
    HeartbeatService b(p.standby, SystemClock());
    ASSERT_TRUE(b.Start().ok());
    ASSERT_TRUE(WaitFor([&] { return AllLinksUp(a); })) << "round " << round;
    // Stop at a different phase of the 10 ms send cycle each round.
    std::this_thread::sleep_for(std::chrono::microseconds(30'000 + round * 2'300));
    const int lost_before = rec.lost.load();
    const int64_t stop_ns = SystemClock()->NowNanos();
    b.Stop();
    ASSERT_TRUE(WaitFor([&] { return rec.lost.load() > lost_before; })) << "round " << round;
    detection_ms.push_back((rec.lost_at_ns.load() - stop_ns) / 1e6);
    EXPECT_FALSE(a.peer().alive);
  }
  // No second report for the same loss.
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_EQ(rec.lost.load(), 5);
  std::sort(detection_ms.begin(), detection_ms.end());
  printf("peer loss detection after Stop() (interval 10 ms, timeout 60 ms): min %.1f ms, median %.1f ms, max %.1f ms\n",
         detection_ms.front(), detection_ms[detection_ms.size() / 2], detection_ms.back());
  // Loose: scheduling on a loaded 2-core machine (or under ASan) must not fail this; a broken detector would.
  EXPECT_LT(detection_ms.back(), 2000.0);
}

TEST(HeartbeatServiceTest, NeverHeardPeerIsNotReportedLost) {
  Pair p = MakePair(1, 10, 40);
  Recorder rec;  // declared first: it must outlive the service thread that calls it
  HeartbeatService a(p.primary, SystemClock());
  rec.Attach(a);
  ASSERT_TRUE(a.Start().ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(rec.lost.load(), 0);
  const PeerStatus s = a.peer();
  EXPECT_FALSE(s.ever_heard);
  EXPECT_FALSE(s.alive);
  EXPECT_EQ(s.last_heard_ms_ago, -1);
  EXPECT_GT(s.links[0].sent, 5u);
}

TEST(HeartbeatServiceTest, OneOfTwoLinksDroppedPeerStaysAliveThatLinkDown) {
  Pair p = MakePair(2, 10, 100);
  Recorder rec;
  HeartbeatService a(p.primary, SystemClock()), b(p.standby, SystemClock());
  rec.Attach(a);
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return AllLinksUp(a) && AllLinksUp(b); }));
  b.SetLinkBlockedForTesting(1, true);
  ASSERT_TRUE(WaitFor([&] { return !a.peer().links[1].up && !b.peer().links[1].up; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  PeerStatus s = a.peer();
  EXPECT_TRUE(s.alive);
  EXPECT_TRUE(s.links[0].up);
  EXPECT_FALSE(s.links[1].up);
  EXPECT_DOUBLE_EQ(s.links[1].loss, 1.0);
  EXPECT_GE(s.links[1].last_heard_ms_ago, 100);
  EXPECT_EQ(rec.lost.load(), 0);
  // Cable back in: the link comes up again, still no loss reported.
  b.SetLinkBlockedForTesting(1, false);
  EXPECT_TRUE(WaitFor([&] { return AllLinksUp(a); }));
  EXPECT_EQ(rec.lost.load(), 0);
  EXPECT_EQ(rec.recovered.load(), 0);
}

TEST(HeartbeatServiceTest, LinkToADeadPortStaysDownWhileTheOtherCarriesThePeer) {
  Pair p = MakePair(2, 10, 100);
  const std::string dead = Addr("127.0.0.2", FreeUdpPort("127.0.0.2"));
  p.standby.links[1].peer_address = dead;  // the standby's second link sends into the void
  p.primary.links[1].peer_address = dead;
  HeartbeatService a(p.primary, SystemClock()), b(p.standby, SystemClock());
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return a.peer().alive && b.peer().alive; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  const PeerStatus s = a.peer();
  EXPECT_TRUE(s.alive);
  EXPECT_TRUE(s.links[0].up);
  EXPECT_FALSE(s.links[1].up);
  EXPECT_EQ(s.links[1].received, 0u);
  EXPECT_GT(s.links[1].sent, 0u);
}

// Plays the standby by hand from a raw UDP socket bound to the standby's address: confirms the primary with
// echoes, records what it sent, then falls silent and attacks.
class FakeStandby {
 public:
  FakeStandby(const LinkConfig& standby_link, uint64_t incarnation)
      : key_(std::move(MacKey::Create(kPsk)).value()), incarnation_(incarnation) {
    fd_ = UniqueFd(socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0));
    self_ = Parse(standby_link.local_address);
    primary_ = Parse(standby_link.peer_address);
    EXPECT_EQ(0, bind(fd_.get(), reinterpret_cast<sockaddr*>(&self_), sizeof(self_)));
  }

  // Reads the primary's datagrams and answers one heartbeat echoing the newest.
  void Pump() {
    uint8_t buf[512];
    ssize_t n;
    while ((n = recv(fd_.get(), buf, sizeof(buf), 0)) > 0) {
      auto m = DecodeAuthenticatedMessage(std::span<const uint8_t>(buf, size_t(n)), key_);
      if (m.ok()) {
        echo_ns_ = m->send_ns;
        echo_rx_ns_ = SystemClock()->NowNanos();
      }
    }
    captured_.push_back(Build(incarnation_, ++seq_, "standby", "primary"));
    Send(captured_.back());
  }

  std::vector<uint8_t> Build(uint64_t incarnation, uint64_t seq, const char* sender, const char* receiver,
                             int64_t echo_override = -1) {
    Message m;
    m.role = Role::kStandby;
    m.sender.Set(sender);
    m.receiver.Set(receiver);
    m.incarnation = incarnation;
    m.sequence = seq;
    m.send_ns = SystemClock()->NowNanos();
    m.echo_ns = echo_override >= 0 ? echo_override : echo_ns_;
    m.hold_ns = echo_override >= 0 || echo_ns_ == 0 ? 0 : m.send_ns - echo_rx_ns_;
    std::vector<uint8_t> out(kMessageSize);
    EXPECT_TRUE(EncodeMessage(m, key_, out).ok());
    return out;
  }

  void Send(const std::vector<uint8_t>& datagram) {
    ASSERT_EQ(ssize_t(datagram.size()), sendto(fd_.get(), datagram.data(), datagram.size(), 0,
                                               reinterpret_cast<const sockaddr*>(&primary_), sizeof(primary_)));
  }

  const std::vector<std::vector<uint8_t>>& captured() const { return captured_; }
  uint64_t seq() const { return seq_; }
  int64_t first_echo_ns = 0;

 private:
  static sockaddr_in Parse(const std::string& text) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    const size_t colon = text.rfind(':');
    inet_pton(AF_INET, text.substr(0, colon).c_str(), &a.sin_addr);
    a.sin_port = htons(uint16_t(std::stoi(text.substr(colon + 1))));
    return a;
  }

  MacKey key_;
  uint64_t incarnation_;
  UniqueFd fd_;
  sockaddr_in self_{}, primary_{};
  uint64_t seq_ = 0;
  int64_t echo_ns_ = 0, echo_rx_ns_ = 0;
  std::vector<std::vector<uint8_t>> captured_;
};

TEST(HeartbeatServiceTest, ForgedDatagramsAreRejectedAndNeverReviveADeadPeer) {
  Pair p = MakePair(1, 10, 60);
  Recorder rec;  // declared first: it must outlive the service thread that calls it
  HeartbeatService a(p.primary, SystemClock());
  rec.Attach(a);
  ASSERT_TRUE(a.Start().ok());
  FakeStandby fake(p.standby.links[0], 0x1111222233334444ull);
  const int64_t started_ns = SystemClock()->NowNanos();
  ASSERT_TRUE(WaitFor([&] {
    fake.Pump();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return a.peer().alive;
  }));
  EXPECT_EQ(a.peer().incarnation, 0x1111222233334444ull);
  ASSERT_TRUE(WaitFor([&] { return rec.lost.load() == 1; }));  // the fake falls silent
  std::this_thread::sleep_for(std::chrono::milliseconds(80));  // every echo it ever sent is now stale
  ASSERT_EQ(Rejected(a), 0u);
  const uint64_t unconfirmed_before = a.peer().links[0].unconfirmed;  // the fake's first, echo-less datagrams

  UniqueFd stranger(socket(AF_INET, SOCK_DGRAM, 0));  // another port: the source address is not trusted anyway
  sockaddr_in to{};
  to.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  to.sin_port = htons(uint16_t(std::stoi(p.primary.links[0].local_address.substr(10))));
  auto send_stranger = [&](const std::vector<uint8_t>& d) {
    ASSERT_EQ(ssize_t(d.size()),
              sendto(stranger.get(), d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)));
  };

  uint64_t expected = 0;
  // Replayed: every datagram the real (now dead) standby sent.
  for (const auto& d : fake.captured()) fake.Send(d), expected++;
  for (const auto& d : fake.captured()) send_stranger(d), expected++;
  // Bad HMAC on an otherwise perfect next datagram.
  auto bad_mac = fake.Build(0x1111222233334444ull, fake.seq() + 1, "standby", "primary");
  bad_mac[kMacOffset + 3] ^= 0x40;
  fake.Send(bad_mac), expected++;
  // Truncated and over-long.
  auto good_next = fake.Build(0x1111222233334444ull, fake.seq() + 1, "standby", "primary");
  fake.Send(std::vector<uint8_t>(good_next.begin(), good_next.begin() + 100)), expected++;
  auto longer = good_next;
  longer.resize(1500, 0xee);
  fake.Send(longer), expected++;
  // Validly signed, but the wrong peer, addressed to someone else, or pretending to be the primary itself.
  fake.Send(fake.Build(0x1111222233334444ull, fake.seq() + 1, "mallory", "primary")), expected++;
  fake.Send(fake.Build(0x1111222233334444ull, fake.seq() + 1, "standby", "someone")), expected++;
  fake.Send(fake.Build(0x1111222233334444ull, fake.seq() + 1, "primary", "primary")), expected++;
  // Random garbage of random sizes, and an empty datagram.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 50; ++i) {
    std::vector<uint8_t> junk(1 + rng() % 400);
    for (auto& b : junk) b = uint8_t(rng());
    send_stranger(junk), expected++;
  }
  fake.Send({}), expected++;
  // A recording of some other standby process: authentic, but its echo is stale. Not rejected as forged, just
  // never adopted.
  fake.Send(fake.Build(0x9999, 1, "standby", "primary", /*echo=*/started_ns + 1'000'000));

  ASSERT_TRUE(WaitFor([&] { return Rejected(a) >= expected && a.peer().links[0].unconfirmed > unconfirmed_before; }))
      << Rejected(a) << " of " << expected;
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const PeerStatus s = a.peer();
  EXPECT_EQ(s.links[0].rejected, expected);
  EXPECT_EQ(s.links[0].unconfirmed, unconfirmed_before + 1);
  EXPECT_FALSE(s.alive);
  EXPECT_FALSE(s.links[0].up);
  EXPECT_EQ(s.incarnation, 0x1111222233334444ull);
  EXPECT_EQ(rec.lost.load(), 1);
  EXPECT_EQ(rec.recovered.load(), 0);
  EXPECT_EQ(rec.restarted.load(), 0);

  // Still fully functional: the genuine standby speaking again (next sequence) is accepted at once.
  ASSERT_TRUE(WaitFor([&] {
    fake.Pump();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return a.peer().alive;
  }));
  EXPECT_EQ(rec.recovered.load(), 1);
}

TEST(HeartbeatServiceTest, RestartedPeerWithNewIncarnationIsRecovered) {
  Pair p = MakePair(2, 10, 60);
  Recorder rec;  // declared first: it must outlive the service thread that calls it
  HeartbeatService a(p.primary, SystemClock());
  rec.Attach(a);
  ASSERT_TRUE(a.Start().ok());
  uint64_t first_incarnation;
  {
    HeartbeatService b(p.standby, SystemClock());
    ASSERT_TRUE(b.Start().ok());
    first_incarnation = b.incarnation();
    ASSERT_TRUE(WaitFor([&] { return AllLinksUp(a); }));
  }  // destroyed: as if the process died
  ASSERT_TRUE(WaitFor([&] { return rec.lost.load() == 1; }));
  Recorder rec2;
  HeartbeatService b2(p.standby, SystemClock());
  rec2.Attach(b2);
  ASSERT_TRUE(b2.Start().ok());
  ASSERT_NE(b2.incarnation(), first_incarnation);
  ASSERT_TRUE(WaitFor([&] { return rec.recovered.load() == 1 && AllLinksUp(a) && b2.peer().alive; }));
  const PeerStatus s = a.peer();
  EXPECT_EQ(s.incarnation, b2.incarnation());
  EXPECT_EQ(s.restarts, 1u);
  EXPECT_EQ(rec.restarted.load(), 1);
  EXPECT_EQ(rec.lost.load(), 1);
  EXPECT_EQ(rec2.recovered.load(), 0);  // b2's first contact is not a recovery
}

TEST(HeartbeatServiceTest, FastRestartIsReportedAsRestartNotLoss) {
  Pair p = MakePair(1, 10, 2000);
  Recorder rec;  // declared first: it must outlive the service thread that calls it
  HeartbeatService a(p.primary, SystemClock());
  rec.Attach(a);
  ASSERT_TRUE(a.Start().ok());
  auto b = std::make_unique<HeartbeatService>(p.standby, SystemClock());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return a.peer().alive; }));
  b.reset();
  b = std::make_unique<HeartbeatService>(p.standby, SystemClock());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(WaitFor([&] { return rec.restarted.load() == 1; }));
  EXPECT_EQ(a.peer().incarnation, b->incarnation());
  EXPECT_TRUE(a.peer().alive);
  EXPECT_EQ(rec.lost.load(), 0);
}

TEST(HeartbeatServiceTest, RoleOrTermChangeIsSentAtOnce) {
  // A 5 s interval: anything seen within a second was sent because of the change, not by the schedule.
  Pair p = MakePair(1, 5000, 15000);
  HeartbeatService a(p.primary, SystemClock()), b(p.standby, SystemClock());
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());  // b's first datagram reaches a (a's first went out before b was bound)
  ASSERT_TRUE(WaitFor([&] { return a.peer().links[0].unconfirmed >= 1; }, std::chrono::seconds(2)));
  a.SetLocalState({Role::kPrimary, 1, 0});  // echoes b: b confirms a
  ASSERT_TRUE(WaitFor([&] { return b.peer().alive; }, std::chrono::seconds(1)));
  b.SetLocalState({Role::kStandby, 1, 0});  // echoes a: a confirms b
  ASSERT_TRUE(WaitFor([&] { return a.peer().alive; }, std::chrono::seconds(1)));
  a.SetLocalState({Role::kPrimary, 2, 5});
  EXPECT_TRUE(WaitFor([&] { return b.peer().remote.term == 2; }, std::chrono::seconds(1)));
  EXPECT_EQ(b.peer().remote.last_epoch, 5u);
}

TEST(HeartbeatServiceTest, LossIsMeasuredOnTheInjectedClock) {
  FakeClock clock;
  Pair p = MakePair(1, 10, 60);
  Recorder rec;
  HeartbeatService a(p.primary, &clock), b(p.standby, &clock);
  rec.Attach(a);
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  // Frozen time sends nothing on schedule: state changes drive the handshake.
  ASSERT_TRUE(WaitFor([&] { return a.peer().links[0].unconfirmed >= 1; }, std::chrono::seconds(2)));
  a.SetLocalState({Role::kPrimary, 1, 0});
  ASSERT_TRUE(WaitFor([&] { return b.peer().alive; }, std::chrono::seconds(1)));
  b.SetLocalState({Role::kStandby, 1, 0});
  ASSERT_TRUE(WaitFor([&] { return a.peer().alive; }, std::chrono::seconds(1)));
  b.Stop();
  // Real time passes, the injected clock does not: the peer cannot time out.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_TRUE(a.peer().alive);
  EXPECT_EQ(rec.lost.load(), 0);
  clock.Advance(59'000'000);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(rec.lost.load(), 0);
  clock.Advance(1'000'000);
  EXPECT_TRUE(WaitFor([&] { return rec.lost.load() == 1; }, std::chrono::seconds(2)));
}

TEST(HeartbeatServiceTest, EmptyPskIsRefused) {
  Pair p = MakePair(1, 10, 60);
  p.primary.psk.clear();
  HeartbeatService a(p.primary, SystemClock());
  Status st = a.Start();
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("key"), std::string::npos);
}

TEST(HeartbeatServiceTest, InvalidOptionsAreRefused) {
  auto start = [](const std::function<void(HeartbeatOptions&)>& edit) {
    HeartbeatOptions o = MakePair(1, 10, 60).primary;
    edit(o);
    HeartbeatService s(o, SystemClock());
    return s.Start();
  };
  EXPECT_EQ(start([](auto& o) { o.peer_name = o.node_name; }).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(start([](auto& o) { o.node_name = std::string(33, 'n'); }).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(start([](auto& o) { o.links.clear(); }).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(start([](auto& o) { o.timeout_ms = o.interval_ms; }).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(start([](auto& o) { o.interval_ms = 0; }).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(start([](auto& o) { o.links[0].peer_address = "localhost:7000"; }).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(start([](auto& o) { o.links[0].local_address = "127.0.0.1"; }).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(start([](auto& o) { o.links[0].local_address = "127.0.0.1:99999"; }).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(start([](auto& o) { o.links[0].peer_address = "[::1]:7000"; }).code(), Status::Code::kInvalidArgument);
}

TEST(HeartbeatServiceTest, PortInUseIsAnIoErrorNamingTheAddress) {
  Pair p = MakePair(1, 10, 60);
  HeartbeatService a(p.primary, SystemClock()), twin(p.primary, SystemClock());
  ASSERT_TRUE(a.Start().ok());
  Status st = twin.Start();
  EXPECT_EQ(st.code(), Status::Code::kIoError);
  EXPECT_NE(st.message().find(p.primary.links[0].local_address), std::string::npos) << st.ToString();
  EXPECT_EQ(a.Start().code(), Status::Code::kInvalidArgument);  // once only
}

TEST(HeartbeatServiceTest, StandbyPromiseReachesThePrimaryAsSupportAnchoredOnItsOwnClock) {
  Pair p = MakePair(2, 10, 200);
  p.standby.promise_ms = 60;
  HeartbeatService a(p.primary, SystemClock()), b(p.standby, SystemClock());
  a.SetLocalState({Role::kPrimary, 4, 0});
  b.SetLocalState({Role::kStandby, 4, 0});
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return a.peer().support_until_ns > 0 && b.peer().alive; }));
  // Support ends at most promise_ms after now (it is anchored on one of our past send times)...
  const int64_t now = SystemClock()->NowNanos();
  const PeerStatus pa = a.peer(), pb = b.peer();
  EXPECT_LE(pa.support_until_ns, now + 60'000'000);
  EXPECT_GT(pa.support_until_ns, now);  // ...and is fresh while the standby hears us every 10 ms
  // The standby's promise ends after the primary's view of it: that gap is what keeps them apart.
  EXPECT_GE(pb.promise_until_ns, pa.support_until_ns);
  EXPECT_EQ(pa.max_term_seen, 4u);
  EXPECT_EQ(pb.max_term_seen, 4u);
  // A standby that becomes primary stops promising: support stops growing.
  b.SetLocalState({Role::kPrimary, 5, 0});
  ASSERT_TRUE(WaitFor([&] { return a.peer().max_term_seen == 5; }));
  const int64_t frozen = a.peer().support_until_ns;
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(a.peer().support_until_ns, frozen);
}

TEST(HeartbeatServiceTest, PeerWithAnOlderTermLooksDead) {
  Pair p = MakePair(1, 10, 60);
  HeartbeatService a(p.primary, SystemClock()), b(p.standby, SystemClock());
  a.SetLocalState({Role::kPrimary, 2, 0});
  b.SetLocalState({Role::kStandby, 2, 0});
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return a.peer().alive && b.peer().alive; }));
  a.SetLocalState({Role::kPrimary, 3, 0});  // a moved on: b's term-2 datagrams are refused from now on
  ASSERT_TRUE(WaitFor([&] { return !a.peer().alive; }));
  EXPECT_GT(Rejected(a), 0u);
  EXPECT_TRUE(WaitFor([&] { return b.peer().max_term_seen == 3; }));
}

}  // namespace
}  // namespace tandem::heartbeat
