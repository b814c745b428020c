// The role arbiters fed by hand, one event at a time, at explicit times.
#include "heartbeat/arbiter.h"

#include <gtest/gtest.h>

#include <limits>

namespace tandem::heartbeat {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kLease = 150 * kMs;

ArbiterOptions Witness() { return MakeArbiterOptions(true, TwoHostPolicy::kNeverPromote, 150, 60, 10); }
ArbiterOptions TwoHost(TwoHostPolicy p) { return MakeArbiterOptions(false, p, 150, 60, 10); }

LeaseReply Grant(LeaseOp op, uint64_t term, int64_t sent, uint64_t request_term, const char* holder = "host-a") {
  LeaseReply r;
  r.op = op;
  r.granted = true;
  r.term = term;
  r.lease_ns = kLease;
  r.request_term = request_term;
  r.request_send_ns = sent;
  r.receive_ns = sent + kMs;
  r.holder.Set(holder);
  return r;
}

LeaseReply Deny(LeaseOp op, WitnessReason reason, uint64_t term, uint64_t request_term, const char* holder) {
  LeaseReply r;
  r.op = op;
  r.reason = reason;
  r.term = term;
  r.request_term = request_term;
  r.holder.Set(holder);
  return r;
}

TEST(PrimaryArbiterTest, RefusedRegistrationSaysWhichHostHoldsTheVmAndAtWhatTerm) {
  PrimaryArbiter p(Witness());
  EXPECT_EQ(p.refused_for_holder(), "");
  // The witness's startup hold names nobody: no host is known to run the VM.
  p.OnLeaseReply(Deny(LeaseOp::kRenew, WitnessReason::kStartupHold, 0, 0, ""));
  EXPECT_EQ(p.refused_for_holder(), "");
  p.OnLeaseReply(Deny(LeaseOp::kRenew, WitnessReason::kHolderLeaseValid, 7, 0, "host-b"));
  EXPECT_EQ(p.refused_for_holder(), "host-b");
  EXPECT_EQ(p.refused_for_term(), 7u);
  // Only learnt, never acted on by the arbiter: still acquiring, not superseded (the role decides).
  EXPECT_EQ(p.Tick(1000 * kMs).action, PrimaryAction::kAcquire);
  EXPECT_EQ(p.superseding_term(), 0u);
}

TEST(PrimaryArbiterTest, AcquiresItsTermFromTheRegistrationGrantThenRuns) {
  PrimaryArbiter p(Witness());
  EXPECT_TRUE(p.should_renew());
  EXPECT_EQ(p.renew_term(), 0u);
  auto d = p.Tick(1000 * kMs);
  EXPECT_EQ(d.action, PrimaryAction::kAcquire);
  EXPECT_TRUE(d.changed);
  // Denied while another holder's lease is valid: still acquiring, not superseded.
  p.OnLeaseReply(Deny(LeaseOp::kRenew, WitnessReason::kHolderLeaseValid, 7, 0, "host-b"));
  d = p.Tick(1001 * kMs);
  EXPECT_EQ(d.action, PrimaryAction::kAcquire);
  EXPECT_FALSE(d.changed);
  EXPECT_NE(std::string(d.reason).find("another holder"), std::string::npos);
  p.OnLeaseReply(Grant(LeaseOp::kRenew, 8, 1002 * kMs, 0));
  d = p.Tick(1003 * kMs);
  EXPECT_EQ(d.action, PrimaryAction::kRun);
  EXPECT_TRUE(d.changed);
  EXPECT_EQ(d.term, 8u);
  EXPECT_EQ(p.renew_term(), 8u);
  // Lease from the SEND time of the granted request, minus the margin.
  EXPECT_EQ(p.lease_valid_until_ns(), 1002 * kMs + kLease - 15 * kMs);
}

TEST(PrimaryArbiterTest, FencesExactlyWhenLeaseAndPromiseAreBothGoneAndUnfencesAtTheSameTerm) {
  PrimaryArbiter p(Witness());
  p.OnLeaseReply(Grant(LeaseOp::kRenew, 1, 0, 0));
  p.OnPeer(1, 100 * kMs);  // standby promise anchored on our send at 40 ms: 40 + 60
  const int64_t lease_end = kLease - 15 * kMs;  // 135 ms
  EXPECT_EQ(p.NextDeadline(0), 100 * kMs - 6 * kMs);
  EXPECT_EQ(p.Tick(90 * kMs).action, PrimaryAction::kRun);
  auto d = p.Tick(100 * kMs);
  EXPECT_EQ(d.action, PrimaryAction::kRun);
  EXPECT_EQ(d.alarm, nullptr);
  EXPECT_EQ(p.NextDeadline(100 * kMs), lease_end);
  EXPECT_EQ(p.Tick(lease_end - 1).action, PrimaryAction::kRun);
  d = p.Tick(lease_end);
  EXPECT_EQ(d.action, PrimaryAction::kFence);
  EXPECT_TRUE(d.changed);
  EXPECT_EQ(p.NextDeadline(lease_end), std::numeric_limits<int64_t>::max());
  // Support regained at the same term: back to Run.
  p.OnLeaseReply(Grant(LeaseOp::kRenew, 1, 200 * kMs, 1));
  d = p.Tick(201 * kMs);
  EXPECT_EQ(d.action, PrimaryAction::kRun);
  EXPECT_TRUE(d.changed);
}

TEST(PrimaryArbiterTest, RunsOnThePromiseAloneWithAnAlarmWhenTheWitnessIsGone) {
  PrimaryArbiter p(Witness());
  p.OnLeaseReply(Grant(LeaseOp::kRenew, 1, 0, 0));
  for (int64_t t = 10 * kMs; t < 1000 * kMs; t += 10 * kMs) {
    p.OnPeer(1, t - kMs + 60 * kMs);  // the standby echoes our send from 1 ms ago
    const auto d = p.Tick(t);
    ASSERT_EQ(d.action, PrimaryAction::kRun) << t / kMs;
    if (t >= kLease - 15 * kMs) {
      EXPECT_NE(d.alarm, nullptr);
    }
  }
}

TEST(PrimaryArbiterTest, AnyNewerTermSupersedesForGood) {
  for (int source = 0; source < 3; ++source) {
    PrimaryArbiter p(Witness());
    p.OnLeaseReply(Grant(LeaseOp::kRenew, 3, 0, 0));
    ASSERT_EQ(p.Tick(kMs).action, PrimaryAction::kRun);
    if (source == 0) p.OnLeaseReply(Deny(LeaseOp::kRenew, WitnessReason::kStaleTerm, 4, 3, "host-b"));
    if (source == 1) p.OnPeer(4, 0);
    if (source == 2) p.OnTermSeen(4, "replication");
    auto d = p.Tick(2 * kMs);
    EXPECT_EQ(d.action, PrimaryAction::kSuperseded) << source;
    EXPECT_EQ(d.term, 4u);
    EXPECT_FALSE(p.should_renew());
    // Nothing brings it back: not a (late) grant of its old term, not a fresh standby promise.
    p.OnLeaseReply(Grant(LeaseOp::kRenew, 3, 3 * kMs, 3));
    p.OnPeer(3, 500 * kMs);
    EXPECT_EQ(p.Tick(4 * kMs).action, PrimaryAction::kSuperseded);
  }
}

TEST(PrimaryArbiterTest, DenialsAtTheSameTermDoNotSupersede) {
  PrimaryArbiter p(Witness());
  p.OnLeaseReply(Grant(LeaseOp::kRenew, 2, 0, 0));
  p.OnLeaseReply(Deny(LeaseOp::kRenew, WitnessReason::kUnknownVm, 0, 2, ""));
  EXPECT_EQ(p.Tick(kMs).action, PrimaryAction::kRun);
  EXPECT_EQ(p.last_deny(), WitnessReason::kUnknownVm);
  EXPECT_EQ(p.Tick(kLease).action, PrimaryAction::kFence);
}

TEST(PrimaryArbiterTest, PromotedStandbyRunsOnItsPromoteGrant) {
  PrimaryArbiter p(Witness(), 5);
  EXPECT_EQ(p.Tick(0).action, PrimaryAction::kFence);  // no lease yet
  p.OnLeaseReply(Grant(LeaseOp::kPromote, 5, 10 * kMs, 4, "host-b"));
  EXPECT_EQ(p.Tick(11 * kMs).action, PrimaryAction::kRun);
  EXPECT_EQ(p.lease_valid_until_ns(), 10 * kMs + kLease - 15 * kMs);
  p.OnPeer(4, 0);  // the old primary's heartbeats carry an older term: irrelevant
  EXPECT_EQ(p.Tick(12 * kMs).action, PrimaryAction::kRun);
}

TEST(PrimaryArbiterTest, TwoHostPolicies) {
  PrimaryArbiter never(TwoHost(TwoHostPolicy::kNeverPromote));
  EXPECT_FALSE(never.should_renew());
  EXPECT_EQ(never.term(), 1u);
  EXPECT_EQ(never.Tick(10'000 * kMs).action, PrimaryAction::kRun);
  PrimaryArbiter promotes(TwoHost(TwoHostPolicy::kStandbyPromotes));
  EXPECT_EQ(promotes.Tick(10'000 * kMs).action, PrimaryAction::kRun);
  PrimaryArbiter fenced(TwoHost(TwoHostPolicy::kStandbyPromotesPrimaryFences), 3);
  EXPECT_EQ(fenced.Tick(0).action, PrimaryAction::kFence);  // no standby yet: cannot run
  fenced.OnPeer(3, 70 * kMs);
  EXPECT_EQ(fenced.Tick(63 * kMs).action, PrimaryAction::kRun);
  EXPECT_EQ(fenced.Tick(64 * kMs).action, PrimaryAction::kFence);
  fenced.OnPeer(4, 0);
  EXPECT_EQ(fenced.Tick(65 * kMs).action, PrimaryAction::kSuperseded);
}

TEST(TwoHostPolicyTest, ParsesItsNames) {
  for (auto p : {TwoHostPolicy::kNeverPromote, TwoHostPolicy::kStandbyPromotes,
                 TwoHostPolicy::kStandbyPromotesPrimaryFences}) {
    auto parsed = ParseTwoHostPolicy(TwoHostPolicyName(p));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, p);
  }
  EXPECT_FALSE(ParseTwoHostPolicy("sometimes").ok());
}

// --- Standby.

struct StandbyFixture : ::testing::Test {
  StandbyArbiter s{Witness()};
  void Heard(int64_t promise_until, bool alive = true) { s.OnPeer(alive, true, 4, promise_until); }
};

TEST_F(StandbyFixture, WaitsWhileThePrimaryIsAliveAndUntilItsOwnPromiseRunsOut) {
  s.OnResumePoint(true);
  EXPECT_EQ(s.Tick(0).reason, std::string("primary never heard"));
  Heard(100 * kMs);
  EXPECT_EQ(s.Tick(50 * kMs).action, StandbyAction::kWait);
  Heard(100 * kMs, /*alive=*/false);
  auto d = s.Tick(99 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kWait);
  EXPECT_FALSE(d.send_promote);
  EXPECT_EQ(s.NextDeadline(99 * kMs), 100 * kMs);
  d = s.Tick(100 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kRequestPromotion);
  EXPECT_TRUE(d.send_promote);
  EXPECT_EQ(d.term, 4u);
  // Re-sent every retry interval, not on every tick.
  EXPECT_FALSE(s.Tick(105 * kMs).send_promote);
  EXPECT_TRUE(s.Tick(110 * kMs).send_promote);
  s.OnLeaseReply(Grant(LeaseOp::kPromote, 5, 110 * kMs, 4, "host-b"));
  d = s.Tick(115 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kPromote);
  EXPECT_EQ(d.term, 5u);
  EXPECT_TRUE(d.changed);
  EXPECT_TRUE(s.promoted());
  EXPECT_FALSE(s.Tick(116 * kMs).changed);
}

TEST_F(StandbyFixture, NoCompleteEpochNoPromotion) {
  Heard(10 * kMs, false);
  auto d = s.Tick(100 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kAlarm);
  EXPECT_FALSE(d.send_promote);
}

TEST_F(StandbyFixture, DenyBecauseThePrimaryStillHoldsTheLeaseIsAnAlarmAndRetried) {
  s.OnResumePoint(true);
  Heard(50 * kMs, false);
  EXPECT_TRUE(s.Tick(60 * kMs).send_promote);
  s.OnLeaseReply(Deny(LeaseOp::kPromote, WitnessReason::kHolderLeaseValid, 4, 4, "host-a"));
  // Within one lease of the first request this is just the primary's last renewal running out.
  auto d = s.Tick(65 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kRequestPromotion);
  EXPECT_NE(std::string(d.reason).find("run out"), std::string::npos);
  EXPECT_TRUE(s.Tick(70 * kMs).send_promote);
  s.OnLeaseReply(Deny(LeaseOp::kPromote, WitnessReason::kHolderLeaseValid, 4, 4, "host-a"));
  // Beyond it, the primary is evidently renewing: only the host links are down.
  d = s.Tick(210 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kAlarm);
  EXPECT_NE(std::string(d.reason).find("still holds the witness lease"), std::string::npos);
  EXPECT_TRUE(d.send_promote);  // the primary may die later: keep asking
  EXPECT_FALSE(s.promoted());
}

TEST_F(StandbyFixture, UnreachableWitnessIsAnAlarmNeverAPromotion) {
  s.OnResumePoint(true);
  Heard(50 * kMs, false);
  StandbyDecision d;
  for (int64_t t = 60 * kMs; t < 2000 * kMs; t += 10 * kMs) {
    d = s.Tick(t);
    ASSERT_NE(d.action, StandbyAction::kPromote);
  }
  EXPECT_EQ(d.action, StandbyAction::kAlarm);
  EXPECT_NE(std::string(d.reason).find("witness unreachable"), std::string::npos);
}

TEST_F(StandbyFixture, LateGrantWaitsForThePromiseRenewedMeanwhile) {
  // PROMOTE sent, then the primary is heard again (new promise until 400 ms), then the delayed GRANT arrives.
  s.OnResumePoint(true);
  Heard(100 * kMs, false);
  ASSERT_TRUE(s.Tick(100 * kMs).send_promote);
  Heard(400 * kMs, true);
  s.OnLeaseReply(Grant(LeaseOp::kPromote, 5, 100 * kMs, 4, "host-b"));
  auto d = s.Tick(200 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kWait);
  EXPECT_EQ(d.term, 5u);  // carried in heartbeats at once: the old primary stands down
  EXPECT_EQ(s.term(), 5u);
  EXPECT_EQ(s.Tick(400 * kMs - 1).action, StandbyAction::kWait);
  d = s.Tick(400 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kPromote);
  EXPECT_EQ(d.term, 5u);
}

TEST_F(StandbyFixture, WitnessNamingANewerTermStopsPromotion) {
  s.OnResumePoint(true);
  Heard(10 * kMs, false);
  ASSERT_TRUE(s.Tick(20 * kMs).send_promote);
  s.OnLeaseReply(Deny(LeaseOp::kPromote, WitnessReason::kStaleTerm, 6, 4, "host-c"));
  for (int64_t t = 30 * kMs; t < 500 * kMs; t += 10 * kMs) {
    auto d = s.Tick(t);
    ASSERT_EQ(d.action, StandbyAction::kAlarm);
    ASSERT_FALSE(d.send_promote);
  }
}

TEST(StandbyArbiterTest, TwoHostPolicies) {
  StandbyArbiter never(TwoHost(TwoHostPolicy::kNeverPromote));
  never.OnResumePoint(true);
  never.OnPeer(false, true, 2, 60 * kMs);
  EXPECT_EQ(never.Tick(1000 * kMs).action, StandbyAction::kAlarm);
  never.AllowManualPromotion();
  auto d = never.Tick(1001 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kPromote);
  EXPECT_EQ(d.term, 3u);
  StandbyArbiter promotes(TwoHost(TwoHostPolicy::kStandbyPromotes));
  promotes.OnResumePoint(true);
  promotes.OnPeer(false, true, 2, 60 * kMs);
  EXPECT_EQ(promotes.Tick(59 * kMs).action, StandbyAction::kWait);
  d = promotes.Tick(60 * kMs);
  EXPECT_EQ(d.action, StandbyAction::kPromote);
  EXPECT_FALSE(d.send_promote);
  EXPECT_EQ(d.term, 3u);
}

}  // namespace
}  // namespace tandem::heartbeat
