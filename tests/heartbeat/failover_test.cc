// The whole chain in real time over real UDP on 127.0.0.1/127.0.0.2: WitnessServer, two HeartbeatServices, two
// WitnessClients and the role guards, wired as the CLI wires them. The primary of the kill test is a forked
// process killed with SIGKILL by pid.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "common/fd.h"
#include "tests/support/free_port.h"
#include "heartbeat/guard.h"
#include "heartbeat/heartbeat.h"
#include "heartbeat/witness.h"
#include "heartbeat/witness_client.h"

namespace tandem::heartbeat {
namespace {

constexpr const char* kPsk = "failover-test-pre-shared-key";
constexpr int kInterval = 10, kTimeout = 60, kPromise = 60, kLease = 150;

using ::tandem::testing::FreeUdpPort;

std::string Addr(const char* ip, int port) { return std::string(ip) + ":" + std::to_string(port); }

bool WaitFor(const std::function<bool()>& pred, int limit_ms = 5000) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(limit_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return pred();
}

struct Hosts {
  std::string dir;
  int witness_port = 0;
  HeartbeatOptions primary, standby;

  Hosts() {
    char tmpl[] = "/tmp/tandem-failover-test-XXXXXX";
    dir = mkdtemp(tmpl);
    witness_port = FreeUdpPort("127.0.0.1");
    static const char* kIps[] = {"127.0.0.1", "127.0.0.2"};
    primary.node_name = standby.peer_name = "primary";
    primary.peer_name = standby.node_name = "standby";
    for (const char* ip : kIps) {
      const std::string a = Addr(ip, FreeUdpPort(ip)), b = Addr(ip, FreeUdpPort(ip));
      primary.links.push_back({a, b});
      standby.links.push_back({b, a});
    }
    for (HeartbeatOptions* o : {&primary, &standby}) {
      o->interval_ms = kInterval;
      o->timeout_ms = kTimeout;
      o->psk = kPsk;
    }
    standby.promise_ms = kPromise;
  }
  ~Hosts() { std::filesystem::remove_all(dir); }

  WitnessOptions Witness() const {
    WitnessOptions o;
    o.listen_address = Addr("127.0.0.1", witness_port);
    o.psk = kPsk;
    o.state_path = dir + "/witness.json";
    o.lease_ms = kLease;
    return o;
  }
  WitnessClientOptions Client(const char* node) const {
    WitnessClientOptions o;
    o.witness_address = Addr("127.0.0.1", witness_port);
    o.psk = kPsk;
    o.vm = "vm0";
    o.node = node;
    return o;
  }
};

ArbiterOptions Options() { return MakeArbiterOptions(true, TwoHostPolicy::kNeverPromote, kLease, kPromise, kInterval); }

// One host, in this process.
struct PrimaryHost {
  PrimaryHost(const Hosts& s) : hb(s.primary, SystemClock()), witness(s.Client("host-a"), SystemClock()) {}
  Status Start() {
    TANDEM_RETURN_IF_ERROR(hb.Start());
    TANDEM_RETURN_IF_ERROR(witness.Start());
    guard = std::make_unique<PrimaryGuard>(Options(), kInterval, &hb, &witness, SystemClock());
    guard->OnDecision([this](const PrimaryDecision& d) {
      running = d.action == PrimaryAction::kRun;
      if (d.action != PrimaryAction::kRun) fences++;
    });
    return guard->Start();
  }
  HeartbeatService hb;
  WitnessClient witness;
  std::unique_ptr<PrimaryGuard> guard;
  std::atomic<bool> running{false};
  std::atomic<int> fences{0};
};

struct StandbyHost {
  StandbyHost(const Hosts& s) : hb(s.standby, SystemClock()), witness(s.Client("host-b"), SystemClock()) {}
  Status Start() {
    hb.OnPeerLost([this] { lost_at = SystemClock()->NowNanos(); });
    TANDEM_RETURN_IF_ERROR(hb.Start());
    TANDEM_RETURN_IF_ERROR(witness.Start());
    guard = std::make_unique<StandbyGuard>(Options(), kInterval, &hb, &witness, SystemClock());
    guard->SetResumePoint(true, 42);
    guard->OnDecision([this](const StandbyDecision& d) {
      if (d.action == StandbyAction::kAlarm) alarms++;
      if (d.action == StandbyAction::kPromote) {
        promoted_at = SystemClock()->NowNanos();
        promoted_term = d.term;
      }
    });
    return guard->Start();
  }
  HeartbeatService hb;
  WitnessClient witness;
  std::unique_ptr<StandbyGuard> guard;
  std::atomic<int64_t> lost_at{0}, promoted_at{0};
  std::atomic<uint64_t> promoted_term{0};
  std::atomic<int> alarms{0};
};

// The primary host as a separate process: reports "running" on `pipe_fd`, then runs until killed.
[[noreturn]] void PrimaryProcess(const Hosts& s, int pipe_fd) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  {
    PrimaryHost host(s);
    if (!host.Start().ok()) _exit(2);
    bool reported = false;
    for (int i = 0; i < 30'000; ++i) {  // bounded: 30 s
      if (host.running && !reported) {
        reported = write(pipe_fd, "R", 1) == 1;
      }
      usleep(1000);
    }
  }
  _exit(3);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size() - 1) + 0.5))];
}

TEST(HeartbeatFailoverTest, PrimaryProcessKilledStandbyTakesOverWithANewTerm) {
  std::vector<double> detect_ms, promote_ms, running_ms;
  uint64_t last_term = 0;
  Hosts s;
  for (int round = 0; round < 5; ++round) {
    // No thread exists here: fork is safe.
    int fds[2];
    ASSERT_EQ(0, pipe(fds));
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      PrimaryProcess(s, fds[1]);
    }
    close(fds[1]);
    UniqueFd from_child(fds[0]);
    int64_t killed_at = 0;
    {
      WitnessServer witness(s.Witness(), SystemClock());
      ASSERT_TRUE(witness.Start().ok());
      StandbyHost standby(s);
      ASSERT_TRUE(standby.Start().ok());
      pollfd p{from_child.get(), POLLIN, 0};
      ASSERT_EQ(1, poll(&p, 1, 5000)) << "the primary process never ran";
      ASSERT_TRUE(WaitFor([&] {
        return standby.hb.peer().alive && standby.guard->decision().reason == std::string("primary alive") &&
               standby.hb.peer().promise_until_ns > 0;
      }));
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + 3 * round));  // vary the phase of the kill
      killed_at = SystemClock()->NowNanos();
      ASSERT_EQ(0, kill(pid, SIGKILL));
      int status = 0;
      ASSERT_EQ(pid, waitpid(pid, &status, 0));
      ASSERT_TRUE(WaitFor([&] { return standby.promoted_at.load() != 0; }, 3000)) << standby.guard->decision().reason;
      // The promoted standby runs as primary on the PROMOTE grant's lease at once.
      ASSERT_TRUE(standby.guard->grant().has_value());
      const uint64_t term = standby.promoted_term.load();
      EXPECT_GT(term, last_term);
      last_term = term;
      PrimaryGuard now_primary(Options(), kInterval, &standby.hb, &standby.witness, SystemClock(), term,
                               standby.guard->grant());
      std::atomic<int64_t> running_at{0};
      now_primary.OnDecision([&](const PrimaryDecision& d) {
        if (d.action == PrimaryAction::kRun && running_at == 0) running_at = SystemClock()->NowNanos();
      });
      ASSERT_TRUE(now_primary.Start().ok());
      ASSERT_TRUE(WaitFor([&] { return running_at.load() != 0; }, 1000));
      EXPECT_EQ(witness.state("vm0").holder, "host-b");
      EXPECT_EQ(witness.state("vm0").term, term);
      detect_ms.push_back((standby.lost_at - killed_at) / 1e6);
      promote_ms.push_back((standby.promoted_at - killed_at) / 1e6);
      running_ms.push_back((running_at - killed_at) / 1e6);
      now_primary.Stop();
      standby.guard->Stop();
      standby.hb.Stop();
      witness.Stop();
    }
    // Next round: host-a registers again (term + 1) once host-b's lease expired; the witness restarts meanwhile.
    std::this_thread::sleep_for(std::chrono::milliseconds(kLease + 50));
  }
  printf("kill -9 of the primary process (%zu rounds): detection p50 %.1f max %.1f ms; witness grant + promotion "
         "p50 %.1f max %.1f ms; new primary running p50 %.1f max %.1f ms\n",
         detect_ms.size(), Percentile(detect_ms, 0.5), Percentile(detect_ms, 1), Percentile(promote_ms, 0.5),
         Percentile(promote_ms, 1), Percentile(running_ms, 0.5), Percentile(running_ms, 1));
  EXPECT_LT(Percentile(detect_ms, 1), 100);  // the issue's bound for a quiet LAN
  EXPECT_GE(Percentile(promote_ms, 0), kLease - 2 * kInterval);  // never before the witness lease ran out
  EXPECT_LT(Percentile(promote_ms, 1), 400);
}

TEST(HeartbeatFailoverTest, HostLinksCutNoPromotionPrimaryKeepsRunning) {
  Hosts s;
  WitnessServer witness(s.Witness(), SystemClock());
  ASSERT_TRUE(witness.Start().ok());
  PrimaryHost primary(s);
  StandbyHost standby(s);
  ASSERT_TRUE(primary.Start().ok());
  ASSERT_TRUE(standby.Start().ok());
  // The standby must have heard the primary's term before the cut (else its PROMOTE carries term 0 and is
  // refused as stale, a different reason than the one this test is about).
  ASSERT_TRUE(WaitFor([&] {
    return primary.running && standby.hb.peer().alive && standby.hb.peer().max_term_seen >= 1;
  }));
  const int fences_before = primary.fences;
  for (size_t i = 0; i < 2; ++i) {
    primary.hb.SetLinkBlockedForTesting(i, true);
    standby.hb.SetLinkBlockedForTesting(i, true);
  }
  ASSERT_TRUE(WaitFor([&] { return standby.guard->decision().action == StandbyAction::kAlarm; }, 2000));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(standby.promoted_at.load(), 0);
  EXPECT_TRUE(primary.running);
  EXPECT_EQ(primary.fences, fences_before);
  EXPECT_NE(std::string(standby.guard->decision().reason).find("still holds"), std::string::npos);
  EXPECT_EQ(witness.state("vm0").holder, "host-a");
  EXPECT_EQ(witness.state("vm0").term, 1u);
  // Links back: the standby is content again, nothing changed hands.
  for (size_t i = 0; i < 2; ++i) {
    primary.hb.SetLinkBlockedForTesting(i, false);
    standby.hb.SetLinkBlockedForTesting(i, false);
  }
  ASSERT_TRUE(WaitFor([&] { return standby.guard->decision().action == StandbyAction::kWait; }, 2000));
  EXPECT_EQ(primary.guard->status().state, "running");
}

TEST(HeartbeatFailoverTest, WitnessDownPrimaryRunsOnThePromiseStandbyNeverPromotes) {
  Hosts s;
  auto witness = std::make_unique<WitnessServer>(s.Witness(), SystemClock());
  ASSERT_TRUE(witness->Start().ok());
  PrimaryHost primary(s);
  StandbyHost standby(s);
  ASSERT_TRUE(primary.Start().ok());
  ASSERT_TRUE(standby.Start().ok());
  ASSERT_TRUE(WaitFor([&] { return primary.running && standby.hb.peer().alive; }));
  witness.reset();  // the witness dies
  ASSERT_TRUE(WaitFor([&] { return !primary.guard->status().alarm.empty(); }, 2000));
  EXPECT_TRUE(primary.running);
  const GuardStatus st = primary.guard->status();
  EXPECT_EQ(st.state, "running");
  EXPECT_EQ(st.lease_valid_ms, -1);
  EXPECT_GE(st.support_valid_ms, 0);
  EXPECT_NE(st.alarm.find("failover impossible"), std::string::npos);
  // Now the primary dies as well: the standby alarms and never promotes.
  primary.guard->Stop();
  primary.hb.Stop();
  ASSERT_TRUE(WaitFor([&] { return standby.guard->decision().action == StandbyAction::kAlarm; }, 2000));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  EXPECT_EQ(standby.promoted_at.load(), 0);
  EXPECT_NE(std::string(standby.guard->decision().reason).find("witness unreachable"), std::string::npos);
}

}  // namespace
}  // namespace tandem::heartbeat
