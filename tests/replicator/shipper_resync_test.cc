// EpochShipper and EpochReceiver over real TCP through a relay: resyncs held up by a slow link, compression that
// follows the link, catch-ups after a broken connection or a damaged record, and a primary that dies mid epoch.
#include "tests/replicator/shipper_harness.h"

namespace tandem::replicator::shipper_testing {
namespace {

TEST_P(ShipperReceiverTest, ResyncHeldUpByTheLinkNeverHoldsTheVmAndMergedEpochsStillArrive) {
  Harness h(GetParam(), 16384,
            /*random=*/true);  // 64 MiB of random RAM: the full epoch outgrows every socket buffer on the way
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  ThrottlingRelay relay(receiver.port(), 64 << 10);  // the HELLO and the start of the full epoch get through
  ShipperOptions so = h.ShipperOpts(relay.port());
  so.io_timeout_ms = 60000;  // the connection stays up however long the link holds it
  EpochShipper shipper(so, SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(relay.WaitHolding(10000)) << "the shipper never started its full resync";
  constexpr uint64_t kEpochs = 200;  // more than the shipper's queue holds
  std::atomic<bool> submitted{false};
  std::thread vm([&] {
    for (uint64_t n = 1; n <= kEpochs; ++n) h.SubmitEpoch(shipper, n);
    submitted = true;
  });
  const bool never_held = WaitUntil([&] { return submitted.load(); }, 20000);
  EXPECT_FALSE(shipper.stats().standby_connected);
  relay.Release();
  vm.join();
  EXPECT_TRUE(never_held) << "Submit held the VM while no standby was protecting it";
  EXPECT_GT(shipper.stats().epochs_merged, 0u) << "the queue never overflowed: the test proves nothing";
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == kEpochs; }, 30000))
      << shipper.stats().last_acked << " " << shipper.stats().last_error;
  EXPECT_TRUE(shipper.stats().standby_connected);
  EXPECT_EQ(shipper.stats().resyncs, 1u);
  EXPECT_LT(receiver.stats().epochs_applied, kEpochs + 1);  // merged epochs arrived as one
  receiver.Stop();
  EXPECT_EQ(receiver.resume_point()->device_state, h.device());
  h.ExpectReplicaMatches();
  shipper.Stop();
}

// compression = auto behind a 4 MB/s link: the link, not the encoder, limits shipping, so the governor spends
// more effort (zstd ships fewer bytes), and the epochs encoded before and after the change all land. (Which way
// it goes on loopback depends on what else the two cores are doing: the direction on a known link is
// CompressionGovernorTest's.)
TEST_P(ShipperReceiverTest, AutoCompressionOnASlowLinkMovesToZstdAndEveryEpochLands) {
  Harness h(GetParam(), 1024);
  Relayed link(h, 4'000'000, true);
  ASSERT_TRUE(link.Protect(h)) << link.shipper.stats().last_error;
  EpochShipper& shipper = link.shipper;
  constexpr uint64_t kEpochs = 30;
  for (uint64_t n = 1; n <= kEpochs; ++n) h.SubmitRewriteEpoch(shipper, n, 128);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == kEpochs; }, 30000)) << shipper.stats().last_error;
  EXPECT_EQ(shipper.stats().compression, "auto: zstd level 1");
  EXPECT_GE(shipper.stats().compression_changes, 1u);
  link.receiver.Stop();
  h.ExpectReplicaMatches();
  shipper.Stop();
}

// A slow link that idles between epochs (each epoch is acknowledged before the next is taken): the send queue
// empties every time, so no rate is seen across epochs, yet within each epoch the link, not the encoder, is what
// the standby waits for. The time the part still unsent after an epoch's sends takes to leave tells the rate.
// (Without it auto walked to the lightest step here, and the 20 epochs took 4.9 s instead of 2.6 s.)
TEST_P(ShipperReceiverTest, AutoCompressionSeesASlowLinkThatIdlesBetweenEpochs) {
  Harness h(GetParam(), 1024);
  Relayed link(h, 4'000'000, true);
  ASSERT_TRUE(link.Protect(h)) << link.shipper.stats().last_error;
  EpochShipper& shipper = link.shipper;
  constexpr uint64_t kEpochs = 20;
  for (uint64_t n = 1; n <= kEpochs; ++n) {
    h.SubmitRewriteEpoch(shipper, n, 256);
    ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == n; }, 10000)) << shipper.stats().last_error;
  }
  EXPECT_EQ(shipper.stats().compression, "auto: zstd level 1");
  link.receiver.Stop();
  h.ExpectReplicaMatches();
  shipper.Stop();
}


// The standby (of a 4 MiB harness) was resynced once in full, at the start, and since `bytes_before` only caught
// up: one catch-up epoch, well under the RAM on the wire.
void ExpectCaughtUpNotResentWhole(const ShipperStats& s, uint64_t bytes_before) {
  EXPECT_EQ(s.resyncs, 1u) << "only the first connection needed the whole RAM";
  EXPECT_EQ(s.catch_ups, 1u);
  EXPECT_LT(s.bytes_sent - bytes_before, (4u << 20) / 4) << "the reconnect shipped about the RAM again";
}

// A connection that breaks (the standby process lives on, holding epoch N) is resumed with one catch-up epoch
// of the pages changed since N, not the whole RAM again.
TEST_P(ShipperReceiverTest, BrokenConnectionResyncsOnlyWhatTheStandbyMissed) {
  Harness h(GetParam(), 1024);  // 4 MiB of RAM
  Relayed link(h);
  ASSERT_TRUE(link.Protect(h)) << link.shipper.stats().last_error;
  EpochReceiver& receiver = link.receiver;
  ThrottlingRelay& relay = link.relay;
  EpochShipper& shipper = link.shipper;
  ShipAndAwait(h, shipper, 1, 10);
  const uint64_t bytes_before_cut = shipper.stats().bytes_sent;

  relay.CutConnections();
  ASSERT_TRUE(WaitUntil([&] { return !shipper.stats().standby_connected; })) << "the cut went unnoticed";
  ShipAndAwait(h, shipper, 11, 20);  // submitted while it reconnects: missed by the standby
  ShipAndAwait(h, shipper, 21, 25);  // and replication goes on from there

  ExpectCaughtUpNotResentWhole(shipper.stats(), bytes_before_cut);
  receiver.Stop();
  EXPECT_EQ(receiver.resume_point()->device_state, h.device());
  h.ExpectReplicaMatches();
  shipper.Stop();
}

// A record damaged on the way (its authentication tag fails) is rejected, nothing of its epoch applied, and the replica is
// still exactly the epoch the standby holds: the reconnect catches it up instead of sending the whole RAM again.
TEST_P(ShipperReceiverTest, RecordDamagedOnTheWayIsRejectedThenCaughtUpNotResentWhole) {
  Harness h(GetParam(), 1024);  // 4 MiB of RAM
  Relayed link(h);
  ASSERT_TRUE(link.Protect(h)) << link.shipper.stats().last_error;
  ShipAndAwait(h, link.shipper, 1, 5);
  const uint64_t bytes_before = link.shipper.stats().bytes_sent;
  // Inside the first PAGES record of epoch 6, past its EPOCH_BEGIN record and its own header.
  link.relay.DamageByteAfter(2 * kRecordHeaderSize + kEpochBeginSize + kRecordTagSize + 4);
  ShipAndAwait(h, link.shipper, 6, 15);
  const ShipperStats s = link.shipper.stats();
  link.receiver.Stop();
  EXPECT_EQ(link.receiver.stats().epochs_rejected, 1u);
  EXPECT_EQ(link.receiver.stats().last_rejection, DecodeError::kTagMismatch) << link.receiver.stats().last_error;
  ExpectCaughtUpNotResentWhole(s, bytes_before);
  h.ExpectReplicaMatches();
  link.shipper.Stop();
}

// A replica that no longer holds what the primary shipped (damaged on the standby) fails the hash of a page
// rebuilt from it: the epoch is rejected and the standby, which cannot vouch for its replica, offers no epoch to
// catch up from, so the whole RAM comes again and the replica is whole again.
TEST_P(ShipperReceiverTest, ReplicaThatNoLongerMatchesIsResentWhole) {
  Harness h(GetParam(), 1024);  // 4 MiB: what epochs 6..15 change is well under the share a catch-up may carry
  Relayed link(h);
  ASSERT_TRUE(link.Protect(h)) << link.shipper.stats().last_error;
  ShipAndAwait(h, link.shipper, 1, 5);
  h.DamageReplica(64);  // every page SubmitEpoch rewrites: epoch 6 rebuilds at least one of them
  ShipAndAwait(h, link.shipper, 6, 15);
  const ShipperStats s = link.shipper.stats();
  link.receiver.Stop();
  EXPECT_EQ(link.receiver.stats().epochs_rejected, 1u);
  EXPECT_EQ(link.receiver.stats().last_rejection, DecodeError::kPageHashMismatch) << link.receiver.stats().last_error;
  EXPECT_EQ(s.resyncs, 2u);
  EXPECT_EQ(s.catch_ups, 0u);
  h.ExpectReplicaMatches();
  link.shipper.Stop();
}

// A restarted standby process (its replica files kept) meets a new primary (a new generation: no catch-up): it
// sends its page hashes and gets none of the pages it already holds, then the epochs as usual.
TEST_P(ShipperReceiverTest, RestartedStandbyKeepsItsReplicaAndIsSentOnlyWhatDiffers) {
  Harness h(GetParam(), 1024);
  {
    EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
    ASSERT_TRUE(receiver.Start().ok());
    EpochShipper shipper(h.ShipperOpts(receiver.port()), SystemClock());
    ASSERT_TRUE(h.StartShipper(shipper).ok());
    ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; })) << shipper.stats().last_error;
    const ShipperStats first = shipper.stats();
    EXPECT_EQ(first.hash_resyncs, 1u);  // a first sync is one too: against a fresh replica
    // Every page of the truth differs from a fresh replica's zero pages: all of them shipped, and counted.
    EXPECT_EQ(first.resync_total_bytes, (1024 + 4) * uint64_t{kPageSize});
    EXPECT_EQ(first.resync_sent_bytes, first.resync_total_bytes);
    ShipAndAwait(h, shipper, 1, 5);
    shipper.Stop();
    receiver.Stop();
  }
  h.ExpectReplicaMatches();
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  EpochShipper shipper(h.ShipperOpts(receiver.port()), SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; })) << shipper.stats().last_error;
  ShipperStats s = shipper.stats();
  EXPECT_EQ(s.resyncs, 1u);
  EXPECT_EQ(s.hash_resyncs, 1u);
  EXPECT_EQ(s.hash_resync_kept_bytes, (1024 + 4) * uint64_t{kPageSize});  // both blocks are replica files
  EXPECT_EQ(s.resync_total_bytes, 0u);
  EXPECT_EQ(s.resync_sent_bytes, 0u);
  EXPECT_LT(s.bytes_sent, 64u << 10) << "the pages the standby holds were sent again";
  ShipAndAwait(h, shipper, 1, 3);
  shipper.Stop();
  receiver.Stop();
  h.ExpectReplicaMatches();
}

// Cut between epochs, when the standby has everything: protected again at once, nothing resent.
TEST_P(ShipperReceiverTest, BrokenConnectionWithNothingMissedIsProtectedAgainWithoutResending) {
  Harness h(GetParam());
  Relayed link(h);
  ASSERT_TRUE(link.Protect(h)) << link.shipper.stats().last_error;
  EpochReceiver& receiver = link.receiver;
  ThrottlingRelay& relay = link.relay;
  EpochShipper& shipper = link.shipper;
  ShipAndAwait(h, shipper, 1, 5);
  const uint64_t sent = shipper.stats().bytes_sent;
  relay.CutConnections();
  ASSERT_TRUE(WaitUntil([&] { return !shipper.stats().standby_connected; })) << "the cut went unnoticed";
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; })) << shipper.stats().last_error;
  EXPECT_EQ(shipper.stats().bytes_sent, sent);
  EXPECT_EQ(shipper.stats().catch_ups, 1u);
  ShipAndAwait(h, shipper, 6, 6);
  receiver.Stop();
  h.ExpectReplicaMatches();
  shipper.Stop();
}

TEST_P(ShipperReceiverTest, PrimaryKilledMidEpochLeavesTheStandbyOnThePreviousEpoch) {
  Harness h(GetParam());
  // The primary runs in a child process that SIGKILLs itself half way through sending epoch 6. Epoch 6 is made
  // large so that half its records is a real torn epoch. The child is forked before this process starts any
  // thread (a fork while other threads hold allocator locks, ASan's included, can hang the child); it learns
  // the receiver's port through a pipe.
  int port_pipe[2];
  ASSERT_EQ(pipe(port_pipe), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(port_pipe[1]);
    int port = 0;
    if (read(port_pipe[0], &port, sizeof port) != sizeof port) _exit(5);
    ShipperOptions so = h.ShipperOpts(port);
    so.debug_die_mid_epoch = 6;
    EpochShipper shipper(so, SystemClock());
    if (!h.StartShipper(shipper).ok()) _exit(3);
    for (int i = 0; i < 1000 && !shipper.stats().standby_connected; ++i) usleep(5000);
    for (uint64_t n = 1; n <= 5; ++n) h.SubmitEpoch(shipper, n);
    std::unique_ptr<Epoch> e = shipper.Borrow();
    e->Reset(6, false);
    for (uint32_t i = 0; i < 64 * 8; ++i) e->FilledPage(0, (i % 64) * kPageSize, uint8_t(i));
    shipper.Submit(std::move(e));
    sleep(20);  // killed long before this
    _exit(4);
  }
  close(port_pipe[0]);
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  const int port = receiver.port();
  ASSERT_EQ(write(port_pipe[1], &port, sizeof port), ssize_t(sizeof port));
  close(port_pipe[1]);
  int status = 0;
  pid_t done = 0;
  for (int i = 0; i < 2000 && done == 0; ++i) {
    done = waitpid(child, &status, WNOHANG);
    if (done == 0) usleep(5000);
  }
  if (done == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    FAIL() << "the primary did not die mid epoch";
  }
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  ASSERT_TRUE(WaitUntil([&] { return !receiver.stats().primary_connected; }));
  receiver.Stop();
  ASSERT_TRUE(receiver.resume_point().has_value());
  EXPECT_EQ(receiver.resume_point()->epoch, 5u);
  EXPECT_EQ(receiver.stats().epochs_rejected, 0u);
  // The parent's truth is the VM as of the child's epoch 5: the same seeded epochs were made there.
  for (uint64_t n = 1; n <= 5; ++n) {
    EpochShipper dummy(h.ShipperOpts(1), SystemClock());  // never started: Submit just recycles
    h.SubmitEpoch(dummy, n);
  }
  h.ExpectReplicaMatches();
}

}  // namespace
}  // namespace tandem::replicator::shipper_testing
