// EpochShipper and EpochReceiver over real TCP on 127.0.0.1: epochs flow, acks come back, a slow standby slows
// the primary down to max_in_flight, a restarted standby is resynced in full, a corrupted epoch is rejected and
// replication recovers. Resyncs over a slow or broken link: shipper_resync_test.cc.
#include "tests/replicator/shipper_harness.h"

namespace tandem::replicator::shipper_testing {
namespace {

TEST_P(ShipperReceiverTest, ManyEpochsAreAppliedAndTheLastOneIsAcked) {
  Harness h(GetParam());
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  EpochShipper shipper(h.ShipperOpts(receiver.port()), SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; })) << shipper.stats().last_error;
  for (uint64_t n = 1; n <= 200; ++n) h.SubmitEpoch(shipper, n);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == 200; })) << shipper.stats().last_acked;
  receiver.Stop();
  const ShipperStats s = shipper.stats();
  EXPECT_EQ(s.last_submitted, 200u);
  EXPECT_EQ(s.last_sent, 200u);
  EXPECT_EQ(s.epochs_sent, 201u);  // the initial full epoch 0, then 1..200
  EXPECT_EQ(s.resyncs, 1u);
  EXPECT_GT(s.bytes_sent, 0u);
  const ReceiverStats r = receiver.stats();
  EXPECT_EQ(r.last_applied, 200u);
  EXPECT_EQ(r.epochs_applied, 201u);
  EXPECT_EQ(r.epochs_rejected, 0u);
  EXPECT_GE(r.bytes_received, s.bytes_sent);
  auto point = receiver.resume_point();
  ASSERT_TRUE(point.has_value());
  EXPECT_EQ(point->epoch, 200u);
  EXPECT_EQ(point->device_state, h.device());
  EXPECT_EQ(point->descriptor.ram_blocks, Vm().ram_blocks);
  EXPECT_EQ(point->descriptor.qemu_configuration, "config");
  h.ExpectReplicaMatches();
  shipper.Stop();
}

// The shipper reads the guest's RAM file, not a mirror: its resync is live, the standby applies it but holds no
// resume point, and the VM is not protected, until the epoch submitted after the read is applied.
TEST_P(ShipperReceiverTest, LiveResyncProtectsOnlyOnceTheNextEpochIsApplied) {
  Harness h(GetParam(), 64, false, /*live_ram=*/true);
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  EpochShipper shipper(h.ShipperOpts(receiver.port()), SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return receiver.stats().epochs_applied >= 1; })) << shipper.stats().last_error;
  EXPECT_FALSE(receiver.resume_point().has_value()) << "a live resync is no resume point before it settles";
  EXPECT_FALSE(shipper.stats().standby_connected);
  for (uint64_t n = 1; n <= 20; ++n) h.SubmitEpoch(shipper, n);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == 20; })) << shipper.stats().last_acked;
  EXPECT_TRUE(shipper.stats().standby_connected);
  receiver.Stop();
  auto point = receiver.resume_point();
  ASSERT_TRUE(point.has_value());
  EXPECT_EQ(point->epoch, 20u);
  EXPECT_EQ(point->device_state, h.device());
  h.ExpectReplicaMatches();
  const ShipperStats s = shipper.stats();
  EXPECT_EQ(s.resyncs, 1u);
  EXPECT_GT(s.delta_base_hits + s.delta_base_misses, 0u);
  shipper.Stop();
}

// What the metrics endpoint shows (roles/role_metrics.h): a resync's progress, raw against wire bytes, ack lag.
TEST_P(ShipperReceiverTest, StatsShowResyncProgressRawAndWireBytesAndAckLag) {
  Harness h(GetParam(), 64, false, /*live_ram=*/true);
  ReceiverOptions ro = h.ReceiverOpts();
  ro.debug_apply_delay_ms = 100;
  EpochReceiver receiver(ro, SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  EpochShipper shipper(h.ShipperOpts(receiver.port()), SystemClock());
  EXPECT_EQ(shipper.stats().ack_lag_ms, 0);
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return receiver.stats().epochs_applied >= 1; })) << shipper.stats().last_error;
  ShipperStats s = shipper.stats();
  // The live full resync is read and sent, and waits for the epoch it settles at.
  EXPECT_TRUE(s.resync_active);
  EXPECT_GT(s.resync_total_bytes, 0u);
  EXPECT_EQ(s.resync_sent_bytes, s.resync_total_bytes);
  EXPECT_GE(s.raw_bytes_sent, s.resync_total_bytes);
  EXPECT_GT(s.bytes_sent, 0u);
  EXPECT_FALSE(receiver.stats().has_resume_point) << "not before it settles";
  const auto submitted = Clock_::now();  // just before: the lag counts from inside Submit
  h.SubmitEpoch(shipper, 1);
  // The standby takes 100 ms to apply it: meanwhile the epoch's wait shows as ack lag.
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  s = shipper.stats();
  ASSERT_EQ(s.last_acked, 0u) << "applied within 50 ms despite the standby's 100 ms delay";
  EXPECT_GE(s.ack_lag_ms, 40);
  EXPECT_LE(s.ack_lag_ms, MsSince(submitted));
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == 1; })) << shipper.stats().last_acked;
  s = shipper.stats();
  EXPECT_EQ(s.ack_lag_ms, 0) << "nothing waits";
  EXPECT_FALSE(s.resync_active) << "settled";
  EXPECT_TRUE(s.standby_connected);
  EXPECT_TRUE(receiver.stats().has_resume_point);
  receiver.Stop();
  shipper.Stop();
}

TEST_P(ShipperReceiverTest, SlowStandbyBoundsUnackedEpochsByMaxInFlight) {
  Harness h(GetParam());
  ReceiverOptions ro = h.ReceiverOpts();
  ro.debug_apply_delay_ms = 25;
  EpochReceiver receiver(ro, SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  ShipperOptions so = h.ShipperOpts(receiver.port());
  so.max_in_flight = 2;
  EpochShipper shipper(so, SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; }));
  const auto start = Clock_::now();
  constexpr uint64_t kEpochs = 24;
  uint64_t max_unacked = 0;
  for (uint64_t n = 1; n <= kEpochs; ++n) {
    h.SubmitEpoch(shipper, n);
    const ShipperStats s = shipper.stats();
    max_unacked = std::max(max_unacked, s.last_submitted - s.last_acked);
  }
  const double submit_ms = MsSince(start);
  EXPECT_LE(max_unacked, 2u);
  EXPECT_EQ(max_unacked, 2u) << "the standby never fell behind: the test proves nothing";
  // Submit waited for the standby: 24 epochs at 25 ms each with at most 2 ahead.
  EXPECT_GE(submit_ms, (kEpochs - 2) * 25 * 0.9);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == kEpochs; }));
  EXPECT_TRUE(shipper.stats().standby_connected);
  EXPECT_EQ(shipper.stats().resyncs, 1u);
  receiver.Stop();
  h.ExpectReplicaMatches();
}

TEST_P(ShipperReceiverTest, StandbyRestartReconnectsAndResyncsInFull) {
  Harness h(GetParam());
  auto receiver = std::make_unique<EpochReceiver>(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver->Start().ok());
  const int port = receiver->port();
  EpochShipper shipper(h.ShipperOpts(port), SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; }));
  for (uint64_t n = 1; n <= 10; ++n) h.SubmitEpoch(shipper, n);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == 10; }));

  receiver.reset();  // the standby goes away
  ASSERT_TRUE(WaitUntil([&] { return !shipper.stats().standby_connected; })) << "loss not noticed";
  // Unprotected: Submit does not wait for anyone.
  const auto start = Clock_::now();
  for (uint64_t n = 11; n <= 20; ++n) h.SubmitEpoch(shipper, n);
  EXPECT_LT(MsSince(start), 1000);

  receiver = std::make_unique<EpochReceiver>(h.ReceiverOpts(port), SystemClock());
  ASSERT_TRUE(receiver->Start().ok());
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; })) << shipper.stats().last_error;
  EXPECT_EQ(shipper.stats().resyncs, 2u);
  EXPECT_GE(shipper.stats().last_acked, 20u);  // the full epoch covers what was submitted while disconnected
  for (uint64_t n = 21; n <= 30; ++n) h.SubmitEpoch(shipper, n);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == 30; }));
  receiver->Stop();
  EXPECT_EQ(receiver->resume_point()->epoch, 30u);
  EXPECT_EQ(receiver->resume_point()->device_state, h.device());
  h.ExpectReplicaMatches();
}

TEST_P(ShipperReceiverTest, CorruptedEpochIsRejectedNeverAppliedAndReplicationRecovers) {
  Harness h(GetParam());
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  ShipperOptions so = h.ShipperOpts(receiver.port());
  so.debug_corrupt_epoch = 5;
  EpochShipper shipper(so, SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; }));
  for (uint64_t n = 1; n <= 15; ++n) h.SubmitEpoch(shipper, n);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().last_acked == 15; })) << shipper.stats().last_error;
  const ShipperStats s = shipper.stats();
  shipper.Stop();
  receiver.Stop();
  const ReceiverStats r = receiver.stats();
  EXPECT_EQ(r.epochs_rejected, 1u);
  EXPECT_NE(r.last_error.find("epoch 5"), std::string::npos) << r.last_error;
  EXPECT_TRUE(s.standby_connected);
  EXPECT_EQ(s.resyncs, 2u);
  EXPECT_EQ(s.catch_ups, 0u) << "a page rebuilt from the replica failed its hash: no catch-up from that replica";
  EXPECT_NE(s.last_error.find("rejected epoch 5"), std::string::npos) << s.last_error;
  h.ExpectReplicaMatches();
}

TEST_P(ShipperReceiverTest, NothingIsAppliedAfterStopReturns) {
  Harness h(GetParam());
  EpochReceiver receiver(h.ReceiverOpts(), SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  EpochShipper shipper(h.ShipperOpts(receiver.port()), SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected; }));
  std::atomic<bool> done{false};
  std::thread primary([&] {
    for (uint64_t n = 1; n <= 100000 && !done.load(); ++n) h.SubmitEpoch(shipper, n);
  });
  ASSERT_TRUE(WaitUntil([&] { return receiver.stats().last_applied >= 20; }));
  receiver.Stop();
  const uint64_t applied = receiver.stats().last_applied;
  const uint64_t resume = receiver.resume_point()->epoch;
  EXPECT_EQ(resume, applied);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(receiver.stats().last_applied, applied);
  EXPECT_EQ(receiver.resume_point()->epoch, resume);
  done = true;
  primary.join();
  shipper.Stop();
}

TEST_P(ShipperReceiverTest, StandbyForAnotherVmRefusesAndThePrimaryStaysUnprotected) {
  Harness h(GetParam());
  ReceiverOptions ro = h.ReceiverOpts();
  ro.expected_vm_name = "some-other-vm";
  EpochReceiver receiver(ro, SystemClock());
  ASSERT_TRUE(receiver.Start().ok());
  EpochShipper shipper(h.ShipperOpts(receiver.port()), SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  ASSERT_TRUE(WaitUntil([&] { return receiver.stats().last_rejection == DecodeError::kWrongPeer; }))
      << receiver.stats().last_error;
  ASSERT_TRUE(WaitUntil([&] { return !shipper.stats().last_error.empty(); })) << "the refusal is not reported";
  for (uint64_t n = 1; n <= 5; ++n) h.SubmitEpoch(shipper, n);  // does not block
  EXPECT_FALSE(shipper.stats().standby_connected);
  EXPECT_FALSE(receiver.resume_point().has_value());
  shipper.Stop();
}

TEST_P(ShipperReceiverTest, NoStandbyListeningSubmitNeverBlocks) {
  Harness h(GetParam());
  int port = 0;
  {
    auto fd = ListenStream("127.0.0.1:0", &port);  // a port nobody listens on once closed
    ASSERT_TRUE(fd.ok());
  }
  EpochShipper shipper(h.ShipperOpts(port), SystemClock());
  ASSERT_TRUE(h.StartShipper(shipper).ok());
  const auto start = Clock_::now();
  for (uint64_t n = 1; n <= 100; ++n) h.SubmitEpoch(shipper, n);
  EXPECT_LT(MsSince(start), 2000);
  EXPECT_FALSE(shipper.stats().standby_connected);
  EXPECT_EQ(shipper.stats().last_submitted, 100u);
  EXPECT_TRUE(WaitUntil([&] { return !shipper.stats().last_error.empty(); })) << "the failed connect is not reported";
  shipper.Stop();
}

// The full resync cannot get through (the link holds it back) while the VM goes on: no standby holds a copy, so
// nothing is awaited and Submit must not hold the VM once the queue is full; queued epochs are merged instead.
// When the link frees up, the standby ends up holding exactly the VM's RAM as of the last epoch.
}  // namespace

INSTANTIATE_TEST_SUITE_P(Engines, ShipperReceiverTest, ::testing::Values(IoEngine::kPoll, IoEngine::kIoUring),
                         [](const ::testing::TestParamInfo<IoEngine>& p) {
                           return std::string(p.param == IoEngine::kPoll ? "Poll" : "IoUring");
                         });

}  // namespace tandem::replicator::shipper_testing
