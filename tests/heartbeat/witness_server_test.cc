// WitnessServer and WitnessClient over real UDP on 127.0.0.1, with a FakeClock for the lease arithmetic.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <thread>

#include "common/fault_injecting_env.h"
#include "common/fd.h"
#include "heartbeat/witness.h"
#include "heartbeat/witness_client.h"
#include "tests/support/recording_notifier.h"
#include "tests/support/temp_dir.h"

namespace tandem::heartbeat {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr const char* kPsk = "witness-server-test-key";

using TempDir = ::tandem::testing::TempDir;

WitnessOptions Options(const TempDir& dir) {
  WitnessOptions o;
  o.listen_address = "127.0.0.1:0";
  o.psk = kPsk;
  o.state_path = dir.file("witness.json");
  o.lease_ms = 150;
  return o;
}

WitnessClientOptions ClientOptions(int port, const char* node) {
  WitnessClientOptions o;
  o.witness_address = "127.0.0.1:" + std::to_string(port);
  o.psk = kPsk;
  o.vm = "vm0";
  o.node = node;
  return o;
}

// Waits (real time, bounded) for the reply to the request just sent.
std::optional<LeaseReply> Await(WitnessClient& c, int timeout_ms = 2000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  LeaseReply r;
  while (std::chrono::steady_clock::now() < deadline) {
    if (c.PollReply(&r)) return r;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return std::nullopt;
}

std::optional<LeaseReply> Renew(WitnessClient& c, uint64_t term) {
  EXPECT_TRUE(c.RequestRenew(term).ok());
  return Await(c);
}

std::optional<LeaseReply> Promote(WitnessClient& c, uint64_t term, uint64_t epoch = 0) {
  EXPECT_TRUE(c.RequestPromote(term, epoch).ok());
  return Await(c);
}

TEST(WitnessServerTest, GrantsDeniesAndPromotesOverUdp) {
  TempDir dir;
  FakeClock clock;
  WitnessServer w(Options(dir), &clock);
  ASSERT_TRUE(w.Start().ok());
  ASSERT_GT(w.port(), 0);
  clock.Advance(150 * kMs);  // past the startup hold
  WitnessClient a(ClientOptions(w.port(), "host-a"), &clock), b(ClientOptions(w.port(), "host-b"), &clock);
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());

  const int64_t sent_at = clock.NowNanos();
  auto r = Renew(a, 0);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->granted);
  EXPECT_EQ(r->term, 1u);
  EXPECT_EQ(r->request_send_ns, sent_at);  // the resent (challenged) request left at the same fake time
  EXPECT_EQ(r->lease_ns, 150 * kMs);
  EXPECT_EQ(a.status().challenges, 1u);
  EXPECT_TRUE(a.status().reachable);

  r = Promote(b, 1, 17);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->granted);
  EXPECT_EQ(r->reason, WitnessReason::kHolderLeaseValid);
  EXPECT_EQ(r->holder.view(), "host-a");

  clock.Advance(150 * kMs);
  r = Promote(b, 1, 17);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->granted);
  EXPECT_EQ(r->term, 2u);
  EXPECT_EQ(w.state("vm0").holder, "host-b");

  r = Renew(a, 1);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->granted);
  EXPECT_EQ(r->reason, WitnessReason::kStaleTerm);
  EXPECT_EQ(r->term, 2u);

  auto status = QueryWitnessStatus("127.0.0.1:" + std::to_string(w.port()), kPsk, "vm0", "status", 2000);
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ(status->holder, "host-b");
  EXPECT_EQ(status->term, 2u);
  EXPECT_EQ(status->lease_ms, 150);
  EXPECT_EQ(status->lease_remaining_ms, 150);  // the fake clock has not moved since the grant
}

TEST(WitnessServerTest, TermNeverGoesBackwardsAcrossWitnessRestarts) {
  TempDir dir;
  FakeClock clock;
  uint64_t term = 0;
  for (int restart = 0; restart < 3; ++restart) {
    WitnessServer w(Options(dir), &clock);
    ASSERT_TRUE(w.Start().ok());
    // The startup hold: no holder change within one lease of the (re)start.
    WitnessClient b(ClientOptions(w.port(), restart % 2 ? "host-a" : "host-b"), &clock);
    ASSERT_TRUE(b.Start().ok());
    auto r = restart == 0 ? Renew(b, 0) : Promote(b, term);
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->granted);
    EXPECT_EQ(r->reason, WitnessReason::kStartupHold);
    EXPECT_EQ(r->term, term);
    clock.Advance(150 * kMs);
    r = restart == 0 ? Renew(b, 0) : Promote(b, term);
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->granted) << WitnessReasonName(r->reason);
    EXPECT_EQ(r->term, term + 1);
    term = r->term;
    w.Stop();
    auto table = LoadWitnessState(dir.file("witness.json"));
    ASSERT_TRUE(table.ok());
    EXPECT_EQ(table->at("vm0").term, term);
    clock.Advance(150 * kMs);
  }
  EXPECT_EQ(term, 3u);
}

TEST(WitnessServerTest, SecondWitnessOnTheSameStateIsRefused) {
  TempDir dir;
  WitnessServer w(Options(dir), SystemClock()), twin(Options(dir), SystemClock());
  ASSERT_TRUE(w.Start().ok());
  Status st = twin.Start();
  EXPECT_EQ(st.code(), Status::Code::kIoError);
  EXPECT_NE(st.message().find("another witness"), std::string::npos) << st.ToString();
}

TEST(WitnessServerTest, CorruptStateFileIsRefusedRatherThanGuessed) {
  TempDir dir;
  for (const char* text : {"not json", "{\"format\":\"tandem-witness\",\"version\":2,\"vms\":{}}",
                           "{\"format\":\"tandem-witness\",\"version\":1,\"vms\":{\"vm0\":{\"term\":-1,\"holder\":\"a\"}}}",
                           "{\"format\":\"tandem-witness\",\"version\":1,\"vms\":{\"vm0\":{\"term\":0,\"holder\":\"a\"}}}"}) {
    std::ofstream(dir.file("witness.json")) << text;
    WitnessServer w(Options(dir), SystemClock());
    Status st = w.Start();
    EXPECT_TRUE(st.IsCorruption()) << text << ": " << st.ToString();
  }
}

TEST(WitnessServerTest, StateFileRoundTrips) {
  TempDir dir;
  const WitnessTable t = {{"vm0", {7, "host-a"}}, {"vm1", {1, "host-b"}}};
  ASSERT_TRUE(SaveWitnessState(dir.file("s.json"), t).ok());
  auto back = LoadWitnessState(dir.file("s.json"));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->size(), 2u);
  EXPECT_EQ(back->at("vm0").term, 7u);
  EXPECT_EQ(back->at("vm1").holder, "host-b");
  EXPECT_FALSE(std::filesystem::exists(dir.file("s.json.tmp")));
  auto missing = LoadWitnessState(dir.file("absent.json"));
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->empty());
}

// A state file that cannot be replaced (the rename fails): the take-over is denied rather than granted on an
// unrecorded term, the error is counted, and the file on disk still names the old holder.
TEST(WitnessServerTest, AFailedStateWriteDeniesTheTakeOverAndKeepsTheOldStateFile) {
  TempDir dir;
  FakeClock clock;
  FaultInjectingEnv env(Env::Default(), &clock);
  WitnessServer w(Options(dir), &env);
  ASSERT_TRUE(w.Start().ok());
  clock.Advance(150 * kMs);
  WitnessClient a(ClientOptions(w.port(), "host-a"), &clock), b(ClientOptions(w.port(), "host-b"), &clock);
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  auto r = Renew(a, 0);
  ASSERT_TRUE(r.has_value() && r->granted);
  ASSERT_EQ(r->term, 1u);

  env.Fail(FaultInjectingEnv::Op::kRename, Status::FromErrno("rename", ENOSPC), -1, "witness.json");
  clock.Advance(150 * kMs);  // host-a's lease expired: host-b may take over, if the new term can be recorded
  r = Promote(b, 1);
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->granted);
  EXPECT_EQ(r->reason, WitnessReason::kInternal);
  EXPECT_EQ(w.counters().persist_errors, 1u);
  EXPECT_EQ(w.state("vm0").holder, "host-a");
  EXPECT_EQ(w.state("vm0").term, 1u);
  auto table = LoadWitnessState(dir.file("witness.json"));
  ASSERT_TRUE(table.ok()) << table.status().ToString();
  EXPECT_EQ(table->at("vm0").term, 1u);
  EXPECT_EQ(table->at("vm0").holder, "host-a");
  EXPECT_FALSE(std::filesystem::exists(dir.file("witness.json.tmp")));

  env.Heal(FaultInjectingEnv::Op::kRename);
  r = Promote(b, 1);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->granted);
  EXPECT_EQ(r->term, 2u);
}

TEST(WitnessServerTest, SaveWitnessStateReportsAFailedWriteAndKeepsTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("s.json");
  ASSERT_TRUE(SaveWitnessState(path, {{"vm0", {7, "host-a"}}}).ok());
  FaultInjectingEnv env;
  env.Fail(FaultInjectingEnv::Op::kSyncFile, Status::FromErrno("fsync", EIO), -1, "s.json.tmp");
  Status st = SaveWitnessState(path, {{"vm0", {8, "host-b"}}}, &env);
  EXPECT_EQ(st.code(), Status::Code::kIoError) << st.ToString();
  EXPECT_NE(st.message().find("witness"), std::string::npos) << st.ToString();
  auto back = LoadWitnessState(path);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->at("vm0").term, 7u);
}

TEST(WitnessServerTest, AnUnreadableStateFileStopsTheStart) {
  TempDir dir;
  FaultInjectingEnv env;
  env.Fail(FaultInjectingEnv::Op::kOpenFile, Status::FromErrno("open", EACCES), -1, "witness.json");
  WitnessServer w(Options(dir), &env);
  Status st = w.Start();
  EXPECT_EQ(st.code(), Status::Code::kIoError) << st.ToString();  // not an empty table: never guess a term
  EXPECT_EQ(w.port(), 0);
}

TEST(WitnessServerTest, GarbageOverUdpIsCountedAndLeavesTheServerWorking) {
  TempDir dir;
  FakeClock clock;
  WitnessServer w(Options(dir), &clock);
  ASSERT_TRUE(w.Start().ok());
  clock.Advance(150 * kMs);
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM, 0));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(uint16_t(w.port()));
  inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
  std::vector<uint8_t> big(1500, 0xab), wrong_key(kWitnessMessageSize);
  WitnessClientCore mallory("vm0", "host-m", std::move(MacKey::Create("guess")).value(), 3);
  ASSERT_TRUE(mallory.BuildRequest(LeaseOp::kRenew, 0, 0, 1, wrong_key).ok());
  for (const auto& d : {big, wrong_key, std::vector<uint8_t>{}, std::vector<uint8_t>(kWitnessMessageSize, 0)}) {
    ASSERT_EQ(ssize_t(d.size()), sendto(fd.get(), d.data(), d.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)));
  }
  WitnessClient a(ClientOptions(w.port(), "host-a"), &clock);
  ASSERT_TRUE(a.Start().ok());
  auto r = Renew(a, 0);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->granted);
  const WitnessCounters c = w.counters();
  EXPECT_EQ(c.malformed, 3u);
  EXPECT_EQ(c.unauthenticated, 1u);
  // Nothing came back to the sender of garbage.
  uint8_t buf[512];
  EXPECT_LT(recv(fd.get(), buf, sizeof(buf), MSG_DONTWAIT), 0);
}

TEST(WitnessServerTest, UnreachableWitnessGivesNoReplyAndNotReachable) {
  FakeClock clock;
  // A bound but silent socket: requests vanish.
  UniqueFd silent(socket(AF_INET, SOCK_DGRAM, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  ASSERT_EQ(0, bind(silent.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)));
  socklen_t len = sizeof(a);
  getsockname(silent.get(), reinterpret_cast<sockaddr*>(&a), &len);
  WitnessClient c(ClientOptions(ntohs(a.sin_port), "host-a"), &clock);
  ASSERT_TRUE(c.Start().ok());
  EXPECT_TRUE(c.RequestRenew(1).ok());
  EXPECT_FALSE(Await(c, 100).has_value());
  EXPECT_FALSE(c.status().reachable);
  EXPECT_EQ(c.status().requests, 1u);
}

TEST(WitnessServerTest, WaitReturnsOnceAnotherThreadStopsTheServer) {
  TempDir dir;
  WitnessServer w(Options(dir), SystemClock());
  ASSERT_TRUE(w.Start().ok());
  std::atomic<bool> stopping{false};
  std::thread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    stopping = true;
    w.Stop();
  });
  w.Wait();
  EXPECT_TRUE(stopping.load());
  stopper.join();
  w.Wait();  // already stopped: returns at once
  WitnessServer never_started(Options(dir), SystemClock());
  never_started.Wait();
}

TEST(WitnessServerTest, RunWitnessDaemonStopsWhenAsked) {
  TempDir dir;
  std::atomic<bool> stop{false};
  Status result = Status::Aborted("not run");
  std::thread t([&] { result = RunWitnessDaemon(Options(dir), [&] { return stop.load(); }); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  stop = true;
  t.join();
  EXPECT_TRUE(result.ok()) << result.ToString();
  WitnessOptions bad = Options(dir);
  bad.psk.clear();
  EXPECT_EQ(RunWitnessDaemon(bad, [] { return true; }).code(), Status::Code::kInvalidArgument);
}

TEST(WitnessServerTest, DaemonIsReadyOnceBoundAndFeedsTheWatchdogFromItsReceiveLoop) {
  TempDir dir;
  ::tandem::testing::RecordingNotifier notifier;
  WitnessOptions options = Options(dir);
  options.notifier = &notifier;
  std::atomic<bool> stop{false};
  Status result = Status::Aborted("not run");
  std::thread t([&] { result = RunWitnessDaemon(options, [&] { return stop.load(); }); });
  for (int i = 0; i < 200 && notifier.ready() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(notifier.ready(), 1);
  ASSERT_EQ(notifier.statuses().size(), 1u);
  const std::string status = notifier.statuses()[0];
  int port = 0;
  ASSERT_EQ(sscanf(status.c_str(), "witness on UDP port %d", &port), 1) << status;
  // Every datagram, even one it refuses, is a turn of the loop that answers the hosts.
  const int fed = notifier.watchdogs();
  UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(uint16_t(port));
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < 3; ++i) {
    ::sendto(udp.get(), "junk", 4, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  EXPECT_GE(notifier.watchdogs(), fed + 3);
  stop = true;
  t.join();
  EXPECT_TRUE(result.ok()) << result.ToString();
  EXPECT_EQ(notifier.ready(), 1);
}

}  // namespace
}  // namespace tandem::heartbeat
