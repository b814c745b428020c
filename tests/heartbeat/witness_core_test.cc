// The witness's decisions, driven with explicit times (no sockets, no threads): WitnessCore fed by
// WitnessClientCore, exactly the bytes that travel on the wire.
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <random>
#include <vector>

#include "heartbeat/witness.h"
#include "heartbeat/witness_client.h"

namespace tandem::heartbeat {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kLease = 150 * kMs;
constexpr int64_t kStart = 10'000 * kMs;
constexpr const char* kPsk = "witness-core-test-key";

MacKey Key(std::string_view psk = kPsk) { return std::move(MacKey::Create(psk)).value(); }

// One witness core plus a record of what it persisted.
struct Witness {
  explicit Witness(WitnessTable loaded = {}, int64_t start = kStart, uint64_t incarnation = 0x77) {
    WitnessCore::Options o;
    o.lease_ns = kLease;
    o.startup_hold_ns = kLease;
    o.incarnation = incarnation;
    core.emplace(o, Key(), std::move(loaded), start, [this](const WitnessTable& t) {
      persisted.push_back(t);
      return fail_persist ? Status::IoError("disk full") : Status::Ok();
    });
  }
  std::optional<WitnessCore> core;
  std::vector<WitnessTable> persisted;
  bool fail_persist = false;
};

// A host process talking to the witness: builds requests, hands back the decided reply.
struct Node {
  Node(const char* name, uint64_t incarnation, const char* vm = "vm0") : core(vm, name, Key(), incarnation) {}

  // Sends a request at `now` and returns the witness's answer (after the challenge round trip if needed), or
  // nullopt when the witness stayed silent.
  std::optional<LeaseReply> Ask(Witness& w, LeaseOp op, uint64_t term, int64_t now, uint64_t epoch = 0) {
    uint8_t req[kWitnessMessageSize];
    EXPECT_TRUE(core.BuildRequest(op, term, epoch, now, req).ok());
    last_request.assign(req, req + sizeof(req));
    return Deliver(w, last_request, now);
  }

  std::optional<LeaseReply> Deliver(Witness& w, const std::vector<uint8_t>& request, int64_t now) {
    std::vector<uint8_t> req = request;
    for (int round = 0; round < 3; ++round) {
      last_sent = req;
      uint8_t reply[kWitnessMessageSize], resend[kWitnessMessageSize];
      const size_t n = w.core->OnDatagram(req, now, reply);
      if (n == 0) return std::nullopt;
      LeaseReply r;
      switch (core.OnDatagram(std::span<const uint8_t>(reply, n), now, &r, resend)) {
        case WitnessClientCore::Outcome::kReply: return r;
        case WitnessClientCore::Outcome::kResend: req.assign(resend, resend + sizeof(resend)); break;
        case WitnessClientCore::Outcome::kRejected: ADD_FAILURE() << "client rejected the witness reply"; return std::nullopt;
      }
    }
    ADD_FAILURE() << "challenge loop";
    return std::nullopt;
  }

  WitnessClientCore core;
  std::vector<uint8_t> last_request;  // as first built
  std::vector<uint8_t> last_sent;     // the one the witness decided on (after a challenge: the re-sent one)
};

void ExpectGrant(const std::optional<LeaseReply>& r, uint64_t term, const char* holder) {
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->granted) << WitnessReasonName(r->reason);
  EXPECT_EQ(r->term, term);
  EXPECT_EQ(r->holder.view(), holder);
  EXPECT_EQ(r->lease_ns, kLease);
}

void ExpectDeny(const std::optional<LeaseReply>& r, WitnessReason reason, uint64_t term, const char* holder) {
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->granted);
  EXPECT_EQ(r->reason, reason) << WitnessReasonName(r->reason);
  EXPECT_EQ(r->term, term);
  EXPECT_EQ(r->holder.view(), holder);
}

// After the startup hold, so holder changes are possible.
constexpr int64_t kT0 = kStart + kLease;

TEST(WitnessCoreTest, FirstRenewRegistersTheHolderWithTermOne) {
  Witness w;
  Node a("host-a", 1);
  auto r = a.Ask(w, LeaseOp::kRenew, 0, kT0);
  ExpectGrant(r, 1, "host-a");
  EXPECT_EQ(r->request_send_ns, kT0);
  ASSERT_EQ(w.persisted.size(), 1u);  // persisted before the GRANT was produced
  EXPECT_EQ(w.persisted[0].at("vm0").term, 1u);
  EXPECT_EQ(w.persisted[0].at("vm0").holder, "host-a");
  const WitnessVmState s = w.core->state("vm0", kT0 + 10 * kMs);
  EXPECT_TRUE(s.known);
  EXPECT_TRUE(s.lease_valid);
  EXPECT_EQ(s.lease_remaining_ns, kLease - 10 * kMs);
  EXPECT_EQ(w.core->counters().challenged, 1u);  // the first request of a process is challenged
}

TEST(WitnessCoreTest, RenewFromTheHolderExtendsTheLeaseFromReceiveTime) {
  Witness w;
  Node a("host-a", 1);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 1, kT0 + 100 * kMs), 1, "host-a");
  EXPECT_EQ(w.core->state("vm0", kT0).lease_expiry_ns, kT0 + 100 * kMs + kLease);
  EXPECT_EQ(w.persisted.size(), 1u);  // renewals change no term: nothing written
}

TEST(WitnessCoreTest, RegistrationWhileTheHolderLeaseIsValidIsDenied) {
  Witness w;
  Node a("host-a", 1), b("host-b", 2);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  ExpectDeny(b.Ask(w, LeaseOp::kRenew, 0, kT0 + kMs), WitnessReason::kHolderLeaseValid, 1, "host-a");
  ExpectDeny(b.Ask(w, LeaseOp::kRenew, 1, kT0 + 2 * kMs), WitnessReason::kNotHolder, 1, "host-a");
}

TEST(WitnessCoreTest, PromoteIsDeniedUntilTheHolderLeaseExpiresThenGrantsTermPlusOne) {
  Witness w;
  Node a("host-a", 1), b("host-b", 2);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 1, kT0 + 20 * kMs), 1, "host-a");  // the last renew: expiry kT0+170ms
  ExpectDeny(b.Ask(w, LeaseOp::kPromote, 1, kT0 + 100 * kMs, 42), WitnessReason::kHolderLeaseValid, 1, "host-a");
  ExpectDeny(b.Ask(w, LeaseOp::kPromote, 1, kT0 + 170 * kMs - 1, 42), WitnessReason::kHolderLeaseValid, 1, "host-a");
  auto r = b.Ask(w, LeaseOp::kPromote, 1, kT0 + 170 * kMs, 42);
  ExpectGrant(r, 2, "host-b");
  EXPECT_EQ(r->op, LeaseOp::kPromote);
  EXPECT_EQ(w.persisted.back().at("vm0").term, 2u);
  EXPECT_EQ(w.persisted.back().at("vm0").holder, "host-b");
  // The new holder renews its new term.
  ExpectGrant(b.Ask(w, LeaseOp::kRenew, 2, kT0 + 180 * kMs), 2, "host-b");
}

TEST(WitnessCoreTest, RenewAfterBeingSupersededIsDenied) {
  Witness w;
  Node a("host-a", 1), b("host-b", 2);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  ExpectGrant(b.Ask(w, LeaseOp::kPromote, 1, kT0 + kLease), 2, "host-b");
  ExpectDeny(a.Ask(w, LeaseOp::kRenew, 1, kT0 + kLease + kMs), WitnessReason::kStaleTerm, 2, "host-b");
  // Even after host-b's lease expired: a stale term never comes back.
  ExpectDeny(a.Ask(w, LeaseOp::kRenew, 1, kT0 + 10 * kLease), WitnessReason::kStaleTerm, 2, "host-b");
  ExpectDeny(a.Ask(w, LeaseOp::kPromote, 1, kT0 + 10 * kLease), WitnessReason::kStaleTerm, 2, "host-b");
}

TEST(WitnessCoreTest, TermsTheWitnessNeverIssuedAreDenied) {
  Witness w;
  Node a("host-a", 1), b("host-b", 2);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  ExpectDeny(a.Ask(w, LeaseOp::kRenew, 7, kT0 + kMs), WitnessReason::kFutureTerm, 1, "host-a");
  ExpectDeny(b.Ask(w, LeaseOp::kPromote, 7, kT0 + 10 * kLease), WitnessReason::kFutureTerm, 1, "host-a");
  ExpectDeny(b.Ask(w, LeaseOp::kRenew, 3, kT0), WitnessReason::kFutureTerm, 1, "host-a");
  Node c("host-c", 3, "vm9");
  ExpectDeny(c.Ask(w, LeaseOp::kRenew, 3, kT0), WitnessReason::kUnknownVm, 0, "");
  ExpectDeny(c.Ask(w, LeaseOp::kPromote, 0, kT0), WitnessReason::kUnknownVm, 0, "");
}

TEST(WitnessCoreTest, PromoteByTheHolderItselfIsDenied) {
  Witness w;
  Node a("host-a", 1);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  ExpectDeny(a.Ask(w, LeaseOp::kPromote, 1, kT0 + kLease), WitnessReason::kAlreadyHolder, 1, "host-a");
}

TEST(WitnessCoreTest, ALostGrantIsGrantedAgainToTheSameProcessOnly) {
  Witness w;
  Node a("host-a", 1), b("host-b", 2);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  ExpectGrant(b.Ask(w, LeaseOp::kPromote, 1, kT0 + kLease), 2, "host-b");  // suppose this GRANT is lost
  ExpectGrant(b.Ask(w, LeaseOp::kPromote, 1, kT0 + kLease + 10 * kMs), 2, "host-b");  // the retry
  EXPECT_EQ(w.core->state("vm0", 0).term, 2u);
  // Another process of host-b (restarted) does not inherit the grant.
  Node b2("host-b", 22);
  ExpectDeny(b2.Ask(w, LeaseOp::kPromote, 1, kT0 + kLease + 20 * kMs), WitnessReason::kStaleTerm, 2, "host-b");
  ExpectDeny(b2.Ask(w, LeaseOp::kRenew, 2, kT0 + kLease + 20 * kMs), WitnessReason::kNotHolder, 2, "host-b");
  // Same for a lost registration GRANT.
  Node c("host-c", 3, "vm1");
  ExpectGrant(c.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-c");
  ExpectGrant(c.Ask(w, LeaseOp::kRenew, 0, kT0 + kMs), 1, "host-c");
}

TEST(WitnessCoreTest, RestartedHolderProcessGetsANewTermOnlyAfterItsOldLeaseExpired) {
  Witness w;
  Node a("host-a", 1);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  Node a2("host-a", 11);  // host-a's tandem restarted: its VM is a new VM
  ExpectDeny(a2.Ask(w, LeaseOp::kRenew, 0, kT0 + 10 * kMs), WitnessReason::kHolderLeaseValid, 1, "host-a");
  ExpectGrant(a2.Ask(w, LeaseOp::kRenew, 0, kT0 + kLease), 2, "host-a");
  // The replaced process is retired: its renewals are not even answered (it fences when its lease runs out).
  EXPECT_FALSE(a.Ask(w, LeaseOp::kRenew, 1, kT0 + kLease + kMs).has_value());
  EXPECT_EQ(w.core->state("vm0", 0).term, 2u);
}

TEST(WitnessCoreTest, ReplayedRequestsChangeNothingAndGetNoReply) {
  Witness w;
  Node a("host-a", 1), b("host-b", 2);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  const std::vector<uint8_t> old_renew = a.last_request;  // the first request: sent without the witness nonce
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 1, kT0 + 5 * kMs), 1, "host-a");
  const std::vector<uint8_t> renew = a.last_sent;
  const WitnessCounters before = w.core->counters();
  uint8_t reply[kWitnessMessageSize];
  // Replaying host-a's renew later would keep a dead host-a's lease alive (no failover): refused.
  EXPECT_EQ(0u, w.core->OnDatagram(renew, kT0 + 100 * kMs, reply));
  EXPECT_EQ(w.core->counters().replayed, before.replayed + 1);
  EXPECT_EQ(w.core->state("vm0", 0).lease_expiry_ns, kT0 + 5 * kMs + kLease);
  // The challenged first request (no witness incarnation) only gets another challenge.
  const size_t n = w.core->OnDatagram(old_renew, kT0 + 100 * kMs, reply);
  EXPECT_EQ(n, kWitnessMessageSize);
  EXPECT_EQ(w.core->counters().challenged, before.challenged + 1);
  // A replayed PROMOTE after a failover must not hand the VM back.
  ExpectGrant(b.Ask(w, LeaseOp::kPromote, 1, kT0 + 5 * kMs + kLease, 9), 2, "host-b");
  const std::vector<uint8_t> promote = b.last_sent;
  Node a2("host-a", 12);
  ExpectGrant(a2.Ask(w, LeaseOp::kRenew, 0, kT0 + 5 * kMs + 2 * kLease), 3, "host-a");
  EXPECT_EQ(0u, w.core->OnDatagram(promote, kT0 + 10 * kLease, reply));
  EXPECT_EQ(w.core->state("vm0", 0).holder, "host-a");
  EXPECT_EQ(w.core->state("vm0", 0).term, 3u);
}

TEST(WitnessCoreTest, RequestsFromAReplacedSenderProcessAreRefused) {
  Witness w;
  Node a("host-a", 1);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  Node a2("host-a", 2);
  ExpectDeny(a2.Ask(w, LeaseOp::kRenew, 0, kT0 + kMs), WitnessReason::kHolderLeaseValid, 1, "host-a");
  // host-a's first process is retired for this witness: its later requests are not even answered.
  uint8_t req[kWitnessMessageSize], reply[kWitnessMessageSize];
  ASSERT_TRUE(a.core.BuildRequest(LeaseOp::kRenew, 1, 0, kT0 + 2 * kMs, req).ok());
  EXPECT_EQ(0u, w.core->OnDatagram(req, kT0 + 2 * kMs, reply));
  EXPECT_EQ(w.core->counters().replayed, 1u);
}

TEST(WitnessCoreTest, RequestsWithAnOldWitnessIncarnationAreChallengedNotDecided) {
  Witness w;
  Node a("host-a", 1);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  // The witness restarts (new incarnation, same table): host-a's next request carries the old nonce.
  Witness w2({{"vm0", {1, "host-a"}}}, kT0 + 10 * kMs, 0x88);
  uint8_t req[kWitnessMessageSize], reply[kWitnessMessageSize], resend[kWitnessMessageSize];
  ASSERT_TRUE(a.core.BuildRequest(LeaseOp::kRenew, 1, 0, kT0 + 20 * kMs, req).ok());
  const size_t n = w2.core->OnDatagram(req, kT0 + 20 * kMs, reply);
  ASSERT_EQ(n, kWitnessMessageSize);
  auto decoded = DecodeWitnessMessage(std::span<const uint8_t>(reply, n));
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(decoded->reason, WitnessReason::kChallenge);
  EXPECT_EQ(w2.core->counters().granted + w2.core->counters().denied, 0u);
  LeaseReply r;
  ASSERT_EQ(a.core.OnDatagram(std::span<const uint8_t>(reply, n), kT0 + 20 * kMs, &r, resend),
            WitnessClientCore::Outcome::kResend);
  EXPECT_EQ(a.core.witness_incarnation(), 0x88u);
  // The holder renewing its current term during the startup hold is fine: no holder change.
  auto final_reply = a.Deliver(w2, std::vector<uint8_t>(resend, resend + sizeof(resend)), kT0 + 20 * kMs);
  ExpectGrant(final_reply, 1, "host-a");
}

TEST(WitnessCoreTest, ForgedAndMalformedDatagramsAreCountedAndUnanswered) {
  Witness w;
  Node a("host-a", 1);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  WitnessClientCore mallory("vm0", "host-b", Key("not-the-psk"), 5);
  uint8_t req[kWitnessMessageSize], reply[kWitnessMessageSize];
  ASSERT_TRUE(mallory.BuildRequest(LeaseOp::kPromote, 1, 0, kT0 + 10 * kLease, req).ok());
  EXPECT_EQ(0u, w.core->OnDatagram(req, kT0 + 10 * kLease, reply));
  EXPECT_EQ(w.core->counters().unauthenticated, 1u);
  EXPECT_EQ(0u, w.core->OnDatagram(std::span<const uint8_t>(req, 100), kT0, reply));
  EXPECT_EQ(w.core->counters().malformed, 1u);
  // A reply sent to the witness (reflection attempt) is ignored.
  uint8_t grant_bytes[kWitnessMessageSize];
  WitnessMessage g;
  g.type = WitnessType::kGrant;
  g.vm.Set("vm0"), g.node.Set("host-b"), g.holder.Set("host-b");
  g.incarnation = g.sequence = g.term = g.peer_incarnation = g.echo_sequence = 1;
  g.lease_ms = 150;
  ASSERT_TRUE(EncodeWitnessMessage(g, Key(), grant_bytes).ok());
  EXPECT_EQ(0u, w.core->OnDatagram(grant_bytes, kT0, reply));
  EXPECT_EQ(w.core->counters().misdirected, 1u);
  EXPECT_EQ(w.core->state("vm0", 0).holder, "host-a");
}

TEST(WitnessCoreTest, ATermIsPersistedBeforeItsGrantAndAFailedWriteChangesNothing) {
  Witness w;
  Node a("host-a", 1), b("host-b", 2);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  w.fail_persist = true;
  ExpectDeny(b.Ask(w, LeaseOp::kPromote, 1, kT0 + kLease), WitnessReason::kInternal, 1, "host-a");
  EXPECT_EQ(w.core->state("vm0", 0).term, 1u);
  EXPECT_EQ(w.core->state("vm0", 0).holder, "host-a");
  EXPECT_EQ(w.core->counters().persist_errors, 1u);
  Node c("host-c", 3, "vm-new");
  ExpectDeny(c.Ask(w, LeaseOp::kRenew, 0, kT0), WitnessReason::kInternal, 0, "");
  EXPECT_FALSE(w.core->state("vm-new", 0).known);
  w.fail_persist = false;
  ExpectGrant(b.Ask(w, LeaseOp::kPromote, 1, kT0 + kLease + kMs), 2, "host-b");
}

TEST(WitnessCoreTest, RestartedWitnessHoldsHolderChangesForOneLease) {
  // The previous witness process granted host-a a lease just before it stopped; the new one cannot know.
  const int64_t start = 50'000 * kMs;
  Witness w({{"vm0", {4, "host-a"}}}, start);
  Node b("host-b", 2), c("host-c", 3, "vm1");
  EXPECT_TRUE(w.core->state("vm0", start).startup_hold);
  ExpectDeny(b.Ask(w, LeaseOp::kPromote, 4, start + kLease - 1), WitnessReason::kStartupHold, 4, "host-a");
  ExpectDeny(c.Ask(w, LeaseOp::kRenew, 0, start + kLease - 1), WitnessReason::kStartupHold, 0, "");
  ExpectGrant(b.Ask(w, LeaseOp::kPromote, 4, start + kLease), 5, "host-b");
  ExpectGrant(c.Ask(w, LeaseOp::kRenew, 0, start + kLease), 1, "host-c");
}

TEST(WitnessCoreTest, StatusQueryIsAnsweredWithoutChangingAnything) {
  Witness w;
  Node a("host-a", 1);
  ExpectGrant(a.Ask(w, LeaseOp::kRenew, 0, kT0), 1, "host-a");
  WitnessMessage q;
  q.type = WitnessType::kStatusQuery;
  q.vm.Set("vm0"), q.node.Set("status");
  q.incarnation = 99, q.sequence = 1, q.send_ns = 5;
  uint8_t req[kWitnessMessageSize], reply[kWitnessMessageSize];
  ASSERT_TRUE(EncodeWitnessMessage(q, Key(), req).ok());
  ASSERT_EQ(w.core->OnDatagram(req, kT0 + 50 * kMs, reply), kWitnessMessageSize);
  auto r = DecodeAuthenticatedWitnessMessage(reply, Key());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->type, WitnessType::kStatusReply);
  EXPECT_EQ(r->holder.view(), "host-a");
  EXPECT_EQ(r->term, 1u);
  EXPECT_EQ(r->lease_ms, 150u);
  EXPECT_EQ(r->lease_remaining_ms, 100u);
  EXPECT_EQ(r->peer_incarnation, 99u);
  EXPECT_EQ(w.core->counters().status_queries, 1u);
}

// Spoofed, replayed and malformed datagrams between the legitimate requests of a failover never change a decision:
// a second witness that never sees the junk decides identically, and nothing crashes.
TEST(WitnessCoreTest, FuzzedDatagramsNeverChangeADecision) {
  Witness clean, noisy;
  Node a1("host-a", 1), b1("host-b", 2), a2("host-a", 1), b2("host-b", 2);
  std::mt19937_64 rng(2024);
  std::vector<std::vector<uint8_t>> seen;  // every legitimate request, for replays and bit flips
  auto junk = [&](int64_t now) {
    uint8_t reply[kWitnessMessageSize];
    for (int i = 0; i < 50; ++i) {
      std::vector<uint8_t> d;
      switch (rng() % 4) {
        case 0:  // random bytes
          d.resize(rng() % 300);
          for (auto& x : d) x = uint8_t(rng());
          break;
        case 1:  // a real header with random contents
          d.resize(kWitnessMessageSize);
          for (auto& x : d) x = uint8_t(rng());
          std::memcpy(d.data(), "TDWT\x01", 5);
          d[5] = uint8_t(1 + rng() % 3);
          break;
        case 2:  // a replay
          if (seen.empty()) continue;
          d = seen[rng() % seen.size()];
          break;
        case 3:  // a bit-flipped real request
          if (seen.empty()) continue;
          d = seen[rng() % seen.size()];
          d[rng() % d.size()] ^= uint8_t(1 << (rng() % 8));
          break;
      }
      noisy.core->OnDatagram(d, now, reply);
    }
  };
  struct Step {
    int who;  // 0 host-a, 1 host-b
    LeaseOp op;
    uint64_t term;
    int64_t at;
  };
  const std::vector<Step> steps = {
      {0, LeaseOp::kRenew, 0, kT0},          {0, LeaseOp::kRenew, 1, kT0 + 10 * kMs},
      {1, LeaseOp::kPromote, 1, kT0 + 50 * kMs}, {0, LeaseOp::kRenew, 1, kT0 + 60 * kMs},
      {1, LeaseOp::kPromote, 1, kT0 + 200 * kMs}, {1, LeaseOp::kPromote, 1, kT0 + 210 * kMs},
      {0, LeaseOp::kRenew, 1, kT0 + 220 * kMs}, {1, LeaseOp::kRenew, 2, kT0 + 230 * kMs},
      {0, LeaseOp::kPromote, 2, kT0 + 300 * kMs}, {0, LeaseOp::kPromote, 2, kT0 + 500 * kMs},
  };
  for (const Step& s : steps) {
    junk(s.at);
    auto want = (s.who == 0 ? a1 : b1).Ask(clean, s.op, s.term, s.at);
    auto got = (s.who == 0 ? a2 : b2).Ask(noisy, s.op, s.term, s.at);
    seen.push_back((s.who == 0 ? a2 : b2).last_sent);
    ASSERT_EQ(want.has_value(), got.has_value());
    EXPECT_EQ(want->granted, got->granted);
    EXPECT_EQ(want->reason, got->reason);
    EXPECT_EQ(want->term, got->term);
    EXPECT_EQ(want->holder.view(), got->holder.view());
    junk(s.at);
  }
  EXPECT_EQ(clean.core->state("vm0", kT0).term, noisy.core->state("vm0", kT0).term);
  EXPECT_EQ(noisy.core->state("vm0", kT0).holder, "host-a");
  EXPECT_EQ(noisy.core->state("vm0", kT0).term, 3u);
  const WitnessCounters c = noisy.core->counters();
  EXPECT_GT(c.malformed + c.unauthenticated + c.replayed, 400u);
}

}  // namespace
}  // namespace tandem::heartbeat
