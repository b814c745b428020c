// The failure detector driven with explicit timestamps: every transition at an exact, chosen time.
#include "heartbeat/detector.h"

#include <gtest/gtest.h>

namespace tandem::heartbeat {
namespace {

constexpr int64_t kMs = 1'000'000;
constexpr int64_t kTimeout = 60 * kMs;
constexpr int64_t kStart = 1000 * kMs;
constexpr uint64_t kInc = 0xabcdef;

// What the standby would send to the primary on `link`.
Message FromPeer(uint8_t link, uint64_t seq, int64_t echo_ns, uint64_t incarnation = kInc) {
  Message m;
  m.role = Role::kStandby;
  m.link_index = link;
  m.sender.Set("standby");
  m.receiver.Set("primary");
  m.incarnation = incarnation;
  m.sequence = seq;
  m.send_ns = 5'000 * kMs + int64_t(seq) * 10 * kMs;
  m.echo_ns = echo_ns;
  m.hold_ns = 0;
  m.term = 1;
  m.last_epoch = seq;
  return m;
}

class DetectorTest : public ::testing::Test {
 protected:
  PeerDetector d{"primary", "standby", 2, kTimeout, kStart};
  DetectorEvents ev;

  // Makes the peer alive on link 0 at `now` with a fresh echo.
  void Confirm(int64_t now, uint64_t seq = 1, uint64_t incarnation = kInc) {
    ev = {};
    ASSERT_EQ(d.OnMessage(0, FromPeer(0, seq, now - kMs, incarnation), now, &ev), Verdict::kAccepted);
  }
};

TEST_F(DetectorTest, FirstContactNeedsAFreshEchoOfOurOwnTimestamps) {
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 1, 0), kStart + kMs, &ev), Verdict::kUnconfirmedIncarnation);
  EXPECT_FALSE(ev.any());
  EXPECT_FALSE(d.alive());
  // An echo older than this detector (a previous process of ours) does not count either.
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 2, kStart - kMs), kStart + 2 * kMs, &ev), Verdict::kUnconfirmedIncarnation);
  // Nor one older than timeout.
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 3, kStart + kMs), kStart + kMs + kTimeout + 1, &ev),
            Verdict::kUnconfirmedIncarnation);
  // Nor one from the future.
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 4, kStart + 500 * kMs), kStart + 100 * kMs, &ev),
            Verdict::kUnconfirmedIncarnation);
  EXPECT_FALSE(d.alive());
  EXPECT_EQ(d.Snapshot(kStart + 100 * kMs).links[0].unconfirmed, 4u);
  EXPECT_EQ(d.Snapshot(kStart + 100 * kMs).links[0].rejected, 0u);

  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 5, kStart + 95 * kMs), kStart + 100 * kMs, &ev), Verdict::kAccepted);
  EXPECT_TRUE(ev.peer_found);
  EXPECT_FALSE(ev.peer_recovered);
  EXPECT_EQ(ev.links_up, 1u);
  EXPECT_TRUE(d.alive());
  EXPECT_EQ(d.incarnation(), kInc);
}

TEST_F(DetectorTest, UnconfirmedMessagesAreEchoedSoBothSidesCanConfirm) {
  Message m = FromPeer(1, 1, 0);
  EXPECT_EQ(d.OnMessage(1, m, kStart + 7 * kMs, &ev), Verdict::kUnconfirmedIncarnation);
  Message reply;
  d.FillEcho(1, kStart + 9 * kMs, &reply);
  EXPECT_EQ(reply.echo_ns, m.send_ns);
  EXPECT_EQ(reply.hold_ns, 2 * kMs);
}

TEST_F(DetectorTest, ConfirmedIncarnationNeedsNoEchoOnOtherLinks) {
  Confirm(kStart + 10 * kMs);
  ev = {};
  EXPECT_EQ(d.OnMessage(1, FromPeer(1, 1, 0), kStart + 11 * kMs, &ev), Verdict::kAccepted);
  EXPECT_EQ(ev.links_up, 2u);
  EXPECT_FALSE(ev.peer_found);
}

TEST_F(DetectorTest, ReplayedOrDuplicateSequenceIsRejected) {
  Confirm(kStart + 10 * kMs, 5);
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 5, 0), kStart + 11 * kMs, &ev), Verdict::kReplay);
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 4, 0), kStart + 11 * kMs, &ev), Verdict::kReplay);
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 6, 0), kStart + 12 * kMs, &ev), Verdict::kAccepted);
  // Sequences are per link: 1 is new on link 1.
  EXPECT_EQ(d.OnMessage(1, FromPeer(1, 1, 0), kStart + 12 * kMs, &ev), Verdict::kAccepted);
  const PeerStatus s = d.Snapshot(kStart + 12 * kMs);
  EXPECT_EQ(s.links[0].rejected, 2u);
  EXPECT_EQ(s.links[0].received, 2u);
}

TEST_F(DetectorTest, ReplaysCannotReviveADeadPeer) {
  Confirm(kStart + 10 * kMs, 1);
  for (uint64_t seq = 2; seq <= 5; ++seq) d.OnMessage(0, FromPeer(0, seq, 0), kStart + int64_t(seq) * 10 * kMs, &ev);
  ev = d.Tick(kStart + 50 * kMs + kTimeout);
  ASSERT_TRUE(ev.peer_lost);
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    EXPECT_EQ(d.OnMessage(0, FromPeer(0, seq, 0), kStart + 200 * kMs, &ev), Verdict::kReplay);
  }
  EXPECT_FALSE(d.alive());
}

TEST_F(DetectorTest, MisaddressedMessagesAreRejected) {
  Confirm(kStart + 10 * kMs);
  Message own = FromPeer(0, 10, 0);
  own.sender.Set("primary");
  EXPECT_EQ(d.OnMessage(0, own, kStart + 11 * kMs, &ev), Verdict::kOwnMessage);
  Message stranger = FromPeer(0, 11, 0);
  stranger.sender.Set("mallory");
  EXPECT_EQ(d.OnMessage(0, stranger, kStart + 11 * kMs, &ev), Verdict::kWrongSender);
  Message elsewhere = FromPeer(0, 12, 0);
  elsewhere.receiver.Set("other-primary");
  EXPECT_EQ(d.OnMessage(0, elsewhere, kStart + 11 * kMs, &ev), Verdict::kWrongReceiver);
  EXPECT_EQ(d.OnMessage(1, FromPeer(0, 13, 0), kStart + 11 * kMs, &ev), Verdict::kWrongLink);
  EXPECT_EQ(d.Snapshot(kStart + 11 * kMs).links[0].rejected, 3u);
  EXPECT_EQ(d.Snapshot(kStart + 11 * kMs).links[1].rejected, 1u);
  EXPECT_FALSE(d.Snapshot(kStart + 11 * kMs).links[1].up);
}

TEST_F(DetectorTest, LinkDownAfterTimeoutWhilePeerStaysAliveOnTheOther) {
  Confirm(kStart + 10 * kMs);
  d.OnMessage(1, FromPeer(1, 1, 0), kStart + 10 * kMs, &ev);
  // Link 1 keeps talking, link 0 falls silent.
  for (int i = 1; i <= 10; ++i) d.OnMessage(1, FromPeer(1, uint64_t(1 + i), 0), kStart + (10 + 10 * i) * kMs, &ev);
  EXPECT_EQ(d.NextDeadline(), kStart + 10 * kMs + kTimeout);
  ev = d.Tick(kStart + 10 * kMs + kTimeout - 1);
  EXPECT_FALSE(ev.any());
  ev = d.Tick(kStart + 10 * kMs + kTimeout);
  EXPECT_EQ(ev.links_down, 1u);
  EXPECT_FALSE(ev.peer_lost);
  EXPECT_TRUE(d.alive());
  const PeerStatus s = d.Snapshot(kStart + 110 * kMs);
  EXPECT_FALSE(s.links[0].up);
  EXPECT_TRUE(s.links[1].up);
  EXPECT_DOUBLE_EQ(s.links[0].loss, 1.0);
}

TEST_F(DetectorTest, LostExactlyAtTimeoutOnceThenRecovered) {
  Confirm(kStart + 10 * kMs);
  EXPECT_FALSE(d.Tick(kStart + 10 * kMs + kTimeout - 1).peer_lost);
  ev = d.Tick(kStart + 10 * kMs + kTimeout);
  EXPECT_TRUE(ev.peer_lost);
  EXPECT_FALSE(d.alive());
  EXPECT_FALSE(d.Tick(kStart + 500 * kMs).peer_lost);  // once per transition
  EXPECT_EQ(d.NextDeadline(), std::numeric_limits<int64_t>::max());
  ev = {};
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 2, 0), kStart + 600 * kMs, &ev), Verdict::kAccepted);
  EXPECT_TRUE(ev.peer_recovered);
  EXPECT_FALSE(ev.peer_found);
  ev = d.Tick(kStart + 600 * kMs + kTimeout);
  EXPECT_TRUE(ev.peer_lost);
}

TEST_F(DetectorTest, NeverHeardPeerIsNeverLost) {
  for (int64_t t = kStart; t < kStart + 10 * kTimeout; t += 10 * kMs) EXPECT_FALSE(d.Tick(t).any());
  const PeerStatus s = d.Snapshot(kStart + 10 * kTimeout);
  EXPECT_FALSE(s.ever_heard);
  EXPECT_EQ(s.last_heard_ms_ago, -1);
}

TEST_F(DetectorTest, RestartedPeerIsAdoptedAndItsOldIncarnationRetired) {
  Confirm(kStart + 10 * kMs, 100);
  // The peer process restarts: new incarnation, sequence from 1, with a fresh echo.
  ev = {};
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 1, kStart + 19 * kMs, 0x5555), kStart + 20 * kMs, &ev), Verdict::kAccepted);
  EXPECT_TRUE(ev.peer_restarted);
  EXPECT_EQ(ev.old_incarnation, kInc);
  EXPECT_EQ(ev.new_incarnation, 0x5555u);
  EXPECT_FALSE(ev.peer_recovered);  // it never looked dead
  // The old process's datagrams (in flight or replayed, even with a fresh echo) are refused from now on.
  EXPECT_EQ(d.OnMessage(0, FromPeer(0, 101, kStart + 20 * kMs, kInc), kStart + 21 * kMs, &ev),
            Verdict::kRetiredIncarnation);
  const PeerStatus s = d.Snapshot(kStart + 21 * kMs);
  EXPECT_EQ(s.incarnation, 0x5555u);
  EXPECT_EQ(s.restarts, 1u);
}

TEST_F(DetectorTest, LossFromSequenceGaps) {
  Confirm(kStart + 10 * kMs, 1);
  // 2..10 arrive except 4 and 7: 2 of 10 lost.
  for (uint64_t seq = 2; seq <= 10; ++seq) {
    if (seq == 4 || seq == 7) continue;
    d.OnMessage(0, FromPeer(0, seq, 0), kStart + (10 + int64_t(seq)) * kMs, &ev);
  }
  EXPECT_NEAR(d.Snapshot(kStart + 20 * kMs).links[0].loss, 0.2, 1e-9);
  // A long gap saturates the 64-slot window.
  d.OnMessage(0, FromPeer(0, 1000, 0), kStart + 30 * kMs, &ev);
  EXPECT_NEAR(d.Snapshot(kStart + 30 * kMs).links[0].loss, 63.0 / 64.0, 1e-9);
}

TEST_F(DetectorTest, RttFromEchoMinusHold) {
  Message m = FromPeer(0, 1, kStart + 10 * kMs);
  m.hold_ns = 3 * kMs;
  d.OnMessage(0, m, kStart + 15 * kMs, &ev);  // 5 ms since our send, 3 ms held by the peer
  EXPECT_NEAR(d.Snapshot(kStart + 15 * kMs).links[0].rtt_ms, 2.0, 1e-9);
  Message m2 = FromPeer(0, 2, kStart + 20 * kMs);
  m2.hold_ns = 0;
  d.OnMessage(0, m2, kStart + 30 * kMs, &ev);  // sample 10 ms: EWMA 2 + (10 - 2) / 8 = 3
  EXPECT_NEAR(d.Snapshot(kStart + 30 * kMs).links[0].rtt_ms, 3.0, 1e-9);
}

// --- Terms and the standby promise (inputs of the role arbiter).

TEST_F(DetectorTest, StandbyPromiseAnchoredOnOurEchoedSendTime) {
  Message m = FromPeer(0, 1, kStart + 10 * kMs);  // echoes our send at kStart+10ms
  m.promise_ms = 60;
  d.OnMessage(0, m, kStart + 25 * kMs, &ev);
  // Support until our send time + the promise (not the receive time: the standby heard us earlier than now).
  EXPECT_EQ(d.support_until_ns(), kStart + 70 * kMs);
  EXPECT_EQ(d.Snapshot(kStart + 25 * kMs).support_until_ns, kStart + 70 * kMs);
  // An older echo never moves it back.
  Message older = FromPeer(0, 2, kStart + 5 * kMs);
  older.promise_ms = 60;
  d.OnMessage(0, older, kStart + 26 * kMs, &ev);
  EXPECT_EQ(d.support_until_ns(), kStart + 70 * kMs);
}

TEST_F(DetectorTest, NoSupportFromAMessageWithoutPromiseOrNotFromAStandby) {
  Message no_promise = FromPeer(0, 1, kStart + 10 * kMs);
  d.OnMessage(0, no_promise, kStart + 12 * kMs, &ev);
  Message promoted = FromPeer(0, 2, kStart + 11 * kMs);
  promoted.role = Role::kPrimary;
  promoted.promise_ms = 60;
  d.OnMessage(0, promoted, kStart + 13 * kMs, &ev);
  Message foreign_echo = FromPeer(0, 3, kStart - 5 * kMs);  // not a send time of this process
  foreign_echo.promise_ms = 60;
  d.OnMessage(0, foreign_echo, kStart + 14 * kMs, &ev);
  EXPECT_EQ(d.support_until_ns(), 0);
}

// A datagram of the primary node to the standby, saying it plays `role`.
Message FromPrimaryNode(Role role) {
  Message m;
  m.role = role;
  m.sender.Set("primary");
  m.receiver.Set("standby");
  m.incarnation = 9;
  m.sequence = 1;
  m.send_ns = 777 * kMs;
  m.term = 3;
  return m;
}

TEST(DetectorPromiseTest, StandbyPromiseRunsFromEveryEchoableMessageAndFromStart) {
  // The standby's own side: it promised (by echoing) not to request promotion before rx + promise.
  PeerDetector standby("standby", "primary", 1, kTimeout, kStart, 60 * kMs);
  EXPECT_EQ(standby.promise_until_ns(), kStart + 60 * kMs);  // a previous process may have promised just before
  Message m = FromPrimaryNode(Role::kPrimary);
  DetectorEvents ev;
  // Unconfirmed (no echo of ours yet), but echoed back: it counts for the promise.
  EXPECT_EQ(standby.OnMessage(0, m, kStart + 100 * kMs, &ev), Verdict::kUnconfirmedIncarnation);
  EXPECT_EQ(standby.promise_until_ns(), kStart + 160 * kMs);
  EXPECT_EQ(standby.max_term_seen(), 3u);
  // A replay is not echoed, so it promises nothing.
  m.sequence = 2;
  m.echo_ns = kStart + 90 * kMs;
  EXPECT_EQ(standby.OnMessage(0, m, kStart + 110 * kMs, &ev), Verdict::kAccepted);
  EXPECT_EQ(standby.promise_until_ns(), kStart + 170 * kMs);
  EXPECT_EQ(standby.OnMessage(0, m, kStart + 150 * kMs, &ev), Verdict::kReplay);
  EXPECT_EQ(standby.promise_until_ns(), kStart + 170 * kMs);
  // No promise configured: no constraint.
  PeerDetector none("standby", "primary", 1, kTimeout, kStart);
  EXPECT_EQ(none.promise_until_ns(), 0);
}

TEST(DetectorPromiseTest, APeerThatSaysItIsAStandbyGetsNoPromise) {
  // Re-protection: an old primary that rejoined (or handed the VM over) runs no VM that could lean on a promise.
  PeerDetector standby("standby", "primary", 1, kTimeout, kStart, 60 * kMs);
  Message m = FromPrimaryNode(Role::kStandby);
  DetectorEvents ev;
  standby.OnMessage(0, m, kStart + 100 * kMs, &ev);
  EXPECT_EQ(standby.promise_until_ns(), kStart + 60 * kMs) << "only the start-up promise";
  m.role = Role::kPrimary;
  m.sequence = 2;
  m.echo_ns = kStart + 90 * kMs;
  standby.OnMessage(0, m, kStart + 110 * kMs, &ev);
  EXPECT_EQ(standby.promise_until_ns(), kStart + 170 * kMs);
}

TEST_F(DetectorTest, OlderTermIsRefusedAndNeitherKeepsAliveNorEchoes) {
  d.SetLocalTerm(5);
  Message stale = FromPeer(0, 1, kStart + 9 * kMs);
  stale.term = 4;
  EXPECT_EQ(d.OnMessage(0, stale, kStart + 10 * kMs, &ev), Verdict::kStaleTerm);
  EXPECT_FALSE(d.alive());
  Message reply;
  d.FillEcho(0, kStart + 11 * kMs, &reply);
  EXPECT_EQ(reply.echo_ns, 0);
  EXPECT_EQ(d.Snapshot(kStart + 11 * kMs).links[0].rejected, 1u);
  // Term 0 ("not known yet") is not stale; the same or a newer term is accepted and remembered.
  Message unknown = FromPeer(0, 2, kStart + 9 * kMs);
  unknown.term = 0;
  EXPECT_EQ(d.OnMessage(0, unknown, kStart + 12 * kMs, &ev), Verdict::kAccepted);
  Message newer = FromPeer(0, 3, 0);
  newer.term = 6;
  EXPECT_EQ(d.OnMessage(0, newer, kStart + 13 * kMs, &ev), Verdict::kAccepted);
  EXPECT_EQ(d.max_term_seen(), 6u);
  EXPECT_EQ(d.Snapshot(kStart + 13 * kMs).max_term_seen, 6u);
}

}  // namespace
}  // namespace tandem::heartbeat
