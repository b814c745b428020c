#include "output-commit/nic_commit.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <random>
#include <thread>

#include "output-commit/qemu_options.h"
#include "tests/output-commit/test_util.h"

namespace tandem::output_commit {
namespace {

std::vector<uint32_t> Ids(uint32_t first, uint32_t last) {
  std::vector<uint32_t> v;
  for (uint32_t i = first; i <= last; ++i) v.push_back(i);
  return v;
}

// The module between a stand-in QEMU (a datagram socket at nic-qemu.sock) and an outside that is a datagram
// socketpair (one frame per read/write, like a TAP device).
class NicCommitTest : public ::testing::Test {
 protected:
  void SetUp() override { Open({.max_bytes = 1 << 20, .max_records = 1024, .max_record_bytes = 1 << 16}); }

  void Open(HoldLimits limits) {
    nic_.reset();
    paths_ = PathsIn(dir_.path());
    qemu_.reset();
    ::unlink(paths_.nic_qemu_socket.c_str());  // QEMU's dgram netdev unlinks its local path before binding too
    qemu_ = BoundDgram(paths_.nic_qemu_socket);
    ASSERT_TRUE(qemu_.valid());
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    outside_peer_.reset(sv[1]);
    NicOptions options{.socket_path = paths_.nic_socket, .qemu_socket_path = paths_.nic_qemu_socket,
                       .outside = UniqueFd(sv[0]), .limits = limits};
    auto nic = NicOutputCommit::Create(std::move(options), &clock_);
    ASSERT_TRUE(nic.ok()) << nic.status().ToString();
    nic_ = std::move(nic.value());
  }

  // QEMU's NIC backend emits a frame (what net_dgram_receive does: sendto the remote path).
  int GuestSends(uint32_t id, size_t len = 64) { return SendTo(qemu_.get(), paths_.nic_socket, Frame(id, len)); }
  std::vector<uint32_t> Outside() { return ReceiveIds(outside_peer_.get()); }
  void Poll() { ASSERT_TRUE(nic_->PollOnce(0).ok()); }

  TempDir dir_;
  OutputPaths paths_;
  FakeClock clock_;
  UniqueFd qemu_, outside_peer_;
  std::unique_ptr<NicOutputCommit> nic_;
};

TEST_F(NicCommitTest, FramesLeaveOnlyOnceTheirEpochIsAckedAndInOrder) {
  for (uint32_t id = 1; id <= 3; ++id) ASSERT_EQ(GuestSends(id), 0);
  Poll();
  ASSERT_TRUE(nic_->OnEpochBoundary(1).ok());
  for (uint32_t id = 4; id <= 5; ++id) ASSERT_EQ(GuestSends(id), 0);
  ASSERT_TRUE(nic_->OnEpochBoundary(2).ok());
  Poll();
  EXPECT_TRUE(Outside().empty());
  nic_->ReleaseThrough(1);
  EXPECT_EQ(Outside(), Ids(1, 3));
  nic_->ReleaseThrough(1);  // a repeated ack releases nothing twice
  EXPECT_TRUE(Outside().empty());
  nic_->ReleaseThrough(2);
  EXPECT_EQ(Outside(), Ids(4, 5));
  EXPECT_EQ(nic_->stats().hold.released_records, 5u);
  EXPECT_EQ(nic_->stats().hold.max_epoch_bytes, 3u * 64);
}

// The boundary itself reads what QEMU sent before it: nothing sent before the VM stopped is left untagged in
// the kernel's queue, even if the loop never ran.
TEST_F(NicCommitTest, BoundaryDrainsTheSocketWithoutTheLoop) {
  for (uint32_t id = 1; id <= 4; ++id) ASSERT_EQ(GuestSends(id), 0);
  ASSERT_TRUE(nic_->OnEpochBoundary(10).ok());
  ASSERT_TRUE(nic_->OnEpochBoundary(11).ok());
  nic_->ReleaseThrough(10);
  EXPECT_EQ(Outside(), Ids(1, 4));
}

TEST_F(NicCommitTest, FrameAfterABoundaryCountsInTheNextEpoch) {
  ASSERT_TRUE(nic_->OnEpochBoundary(1).ok());
  ASSERT_EQ(GuestSends(1), 0);
  Poll();
  nic_->ReleaseThrough(1);
  EXPECT_TRUE(Outside().empty());
  ASSERT_TRUE(nic_->OnEpochBoundary(2).ok());
  nic_->ReleaseThrough(2);
  EXPECT_EQ(Outside(), Ids(1, 1));
}

TEST_F(NicCommitTest, FullQueueStopsReadingSoQemuGetsEagainAndNothingIsLost) {
  Open({.max_bytes = 1 << 20, .max_records = 4, .max_record_bytes = 1 << 16});
  uint32_t sent = 0;
  int err = 0;
  // QEMU keeps sending while the loop runs: 4 frames are held, then the socket fills up.
  for (int i = 0; i < 1000 && err == 0; ++i) {
    err = GuestSends(sent + 1);
    if (err == 0) ++sent;
    Poll();
  }
  EXPECT_EQ(err, EAGAIN);
  EXPECT_GT(sent, 4u);
  OutputStats s = nic_->stats();
  EXPECT_TRUE(s.backpressured);
  EXPECT_EQ(s.hold.held_records, 4u);
  EXPECT_EQ(s.backpressure_events, 1u);
  clock_.Advance(5'000'000);
  EXPECT_EQ(nic_->stats().backpressure_ns, 5'000'000u);

  // Epochs and acks drain it: every frame comes out once, in order.
  std::vector<uint32_t> out;
  for (uint64_t epoch = 1; out.size() < sent && epoch < 100; ++epoch) {
    ASSERT_TRUE(nic_->OnEpochBoundary(epoch).ok());
    nic_->ReleaseThrough(epoch);
    Poll();
    for (uint32_t id : Outside()) out.push_back(id);
  }
  EXPECT_EQ(out, Ids(1, sent));
  s = nic_->stats();
  EXPECT_FALSE(s.backpressured);
  EXPECT_EQ(s.backpressure_ns, 5'000'000u);  // ended at the first release that made room
  EXPECT_EQ(GuestSends(sent + 1), 0);  // and QEMU's sends go through again
}

TEST_F(NicCommitTest, DropUnreleasedForgetsHeldFramesOnly) {
  ASSERT_EQ(GuestSends(1), 0);
  ASSERT_TRUE(nic_->OnEpochBoundary(1).ok());
  ASSERT_EQ(GuestSends(2), 0);
  Poll();
  EXPECT_EQ(nic_->DropUnreleased(), 2u);
  nic_->ReleaseThrough(1);
  ASSERT_TRUE(nic_->OnEpochBoundary(2).ok());
  nic_->ReleaseThrough(2);
  EXPECT_TRUE(Outside().empty());
  EXPECT_EQ(nic_->stats().hold.dropped_records, 2u);
  ASSERT_EQ(GuestSends(3), 0);
  ASSERT_TRUE(nic_->OnEpochBoundary(3).ok());
  nic_->ReleaseThrough(3);
  EXPECT_EQ(Outside(), Ids(3, 3));
}

TEST_F(NicCommitTest, InboundFramesReachQemuAtOnceEvenWhileOutputIsHeld) {
  ASSERT_EQ(GuestSends(1), 0);
  Poll();
  const auto frame = Frame(77, 1514);
  ASSERT_EQ(::write(outside_peer_.get(), frame.data(), frame.size()), ssize_t(frame.size()));
  Poll();
  EXPECT_EQ(ReceiveIds(qemu_.get()), std::vector<uint32_t>{77});
  EXPECT_EQ(nic_->stats().inbound_frames, 1u);
  EXPECT_TRUE(Outside().empty());  // the guest's frame is still held
}

TEST_F(NicCommitTest, DatagramsFromAnotherSenderAreNotHeld) {
  UniqueFd intruder = BoundDgram(dir_.path() + "/other.sock");
  ASSERT_EQ(SendTo(intruder.get(), paths_.nic_socket, Frame(9)), 0);
  ASSERT_TRUE(nic_->OnEpochBoundary(1).ok());
  nic_->ReleaseThrough(1);
  EXPECT_TRUE(Outside().empty());
  EXPECT_EQ(nic_->stats().foreign_dropped, 1u);
  EXPECT_EQ(nic_->stats().hold.held_records, 0u);
}

TEST_F(NicCommitTest, PassThroughReleasesHeldAndNewFramesAtOnce) {
  ASSERT_EQ(GuestSends(1), 0);
  Poll();
  nic_->SetPassThrough(true);
  EXPECT_EQ(Outside(), Ids(1, 1));
  ASSERT_EQ(GuestSends(2), 0);
  Poll();
  EXPECT_EQ(Outside(), Ids(2, 2));
  nic_->SetPassThrough(false);
  ASSERT_EQ(GuestSends(3), 0);
  Poll();
  EXPECT_TRUE(Outside().empty());
}

// An outside that cannot take more (its queue full) stops the release; POLLOUT resumes it, in order.
TEST_F(NicCommitTest, ReleaseWaitsForTheOutsideAndResumesInOrder) {
  const uint32_t n = 60;  // more than a datagram socketpair queues (net.unix.max_dgram_qlen, 10 by default)
  for (uint32_t id = 1; id <= n; ++id) {
    ASSERT_EQ(GuestSends(id), 0);
    Poll();
  }
  ASSERT_TRUE(nic_->OnEpochBoundary(1).ok());
  nic_->ReleaseThrough(1);
  std::vector<uint32_t> out;
  for (int round = 0; round < 100 && out.size() < n; ++round) {
    for (uint32_t id : Outside()) out.push_back(id);
    ASSERT_TRUE(nic_->PollOnce(10).ok());
  }
  EXPECT_EQ(out, Ids(1, n));
}

// Random interleavings over real sockets: QEMU sends, the loop runs or not, boundaries and acks come. A frame
// sent before boundary e (and after boundary e-1) must leave exactly when an ack >= e arrives, in order.
TEST_F(NicCommitTest, RandomInterleavingsReleaseExactlyTheAckedEpochs) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    Open({.max_bytes = 1 << 20, .max_records = 1024, .max_record_bytes = 1 << 16});
    std::mt19937 rng(seed);
    std::vector<uint64_t> epoch_of;  // by id - 1; 0 = open
    uint64_t epoch = 0, acked = 0;
    size_t released = 0;
    for (int step = 0; step < 300; ++step) {
      const uint32_t op = rng() % 10;
      if (op < 4) {
        // Few enough between reads that the kernel queue (10 datagrams) never refuses one.
        ASSERT_EQ(GuestSends(uint32_t(epoch_of.size() + 1), 14 + rng() % 1500), 0);
        epoch_of.push_back(0);
        Poll();
      } else if (op < 6) {
        Poll();
      } else if (op < 8) {
        ++epoch;
        ASSERT_TRUE(nic_->OnEpochBoundary(epoch).ok());
        for (auto& e : epoch_of) {
          if (e == 0) e = epoch;
        }
      } else if (epoch > 0) {
        acked = std::max<uint64_t>(acked, epoch - rng() % std::min<uint64_t>(epoch, 3));
        nic_->ReleaseThrough(acked);
      }
      for (uint32_t id : Outside()) {
        ASSERT_EQ(id, released + 1) << "seed " << seed << ": out of order";
        ASSERT_NE(epoch_of[id - 1], 0u) << "seed " << seed << ": frame of the open epoch left";
        ASSERT_LE(epoch_of[id - 1], acked) << "seed " << seed << ": frame left before its epoch was acked";
        ++released;
      }
      // Everything acked is out.
      ASSERT_TRUE(released == epoch_of.size() || epoch_of[released] == 0 || epoch_of[released] > acked)
          << "seed " << seed;
    }
  }
}

TEST_F(NicCommitTest, WorksFromItsOwnThread) {
  nic_->Start();
  for (uint32_t id = 1; id <= 5; ++id) ASSERT_EQ(GuestSends(id), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(nic_->OnEpochBoundary(1).ok());
  nic_->ReleaseThrough(1);
  EXPECT_EQ(Outside(), Ids(1, 5));
  const auto frame = Frame(99);
  ASSERT_EQ(::write(outside_peer_.get(), frame.data(), frame.size()), ssize_t(frame.size()));
  std::vector<uint32_t> in;
  for (int i = 0; i < 200 && in.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    in = ReceiveIds(qemu_.get());
  }
  EXPECT_EQ(in, std::vector<uint32_t>{99});
  nic_->Stop();
}

TEST(NicCommitOptionsTest, RefusesAMissingOutsideAndABadLimit) {
  TempDir dir;
  FakeClock clock;
  const OutputPaths paths = PathsIn(dir.path());
  auto nic = NicOutputCommit::Create({.socket_path = paths.nic_socket, .qemu_socket_path = paths.nic_qemu_socket,
                                      .outside = UniqueFd(), .limits = {}},
                                     &clock);
  EXPECT_EQ(nic.status().code(), Status::Code::kInvalidArgument);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM, 0, sv), 0);
  UniqueFd peer(sv[1]);
  nic = NicOutputCommit::Create({.socket_path = paths.nic_socket, .qemu_socket_path = paths.nic_qemu_socket,
                                 .outside = UniqueFd(sv[0]), .limits = {.max_bytes = 1000, .max_records = 4,
                                                                        .max_record_bytes = 1 << 16}},
                                &clock);
  EXPECT_EQ(nic.status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::output_commit

namespace tandem::output_commit {
namespace {

// The three callers at once, as in tandem: the loop thread reads, a "checkpoint" thread marks boundaries, an
// "ack" thread releases, while "QEMU" sends. A frame sent after boundary A returned must not leave on ack A;
// frames leave in order and, after a last boundary and ack, all of them have left.
TEST(NicCommitConcurrencyTest, ConcurrentSendsBoundariesAndAcksNeverReleaseEarly) {
  TempDir dir;
  const OutputPaths paths = PathsIn(dir.path());
  UniqueFd qemu = BoundDgram(paths.nic_qemu_socket);
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd outside_peer(sv[1]);
  auto nic = NicOutputCommit::Create({.socket_path = paths.nic_socket, .qemu_socket_path = paths.nic_qemu_socket,
                                      .outside = UniqueFd(sv[0]), .limits = {}},
                                     SystemClock());
  ASSERT_TRUE(nic.ok());
  constexpr uint32_t kFrames = 3000;
  std::atomic<uint64_t> boundaries_done{0}, acked{0};
  std::vector<uint64_t> done_before_send(kFrames + 1);
  std::atomic<bool> sending{true};
  (*nic)->Start();
  std::thread checkpoint([&] {
    for (uint64_t e = 1; sending; ++e) {
      ASSERT_TRUE((*nic)->OnEpochBoundary(e).ok());
      boundaries_done = e;
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  std::thread acker([&] {
    while (sending) {
      const uint64_t done = boundaries_done.load();
      const uint64_t a = done > 2 ? done - 2 : 0;  // the standby lags: closed epochs wait for their ack
      // The ack is published before the release, so the checker never sees a frame of a newer ack early.
      acked = std::max(acked.load(), a);
      if (a > 0) (*nic)->ReleaseThrough(a);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  std::vector<uint32_t> out;
  auto check = [&] {
    const std::vector<uint32_t> ids = ReceiveIds(outside_peer.get());
    const uint64_t limit = acked.load();  // read after the frames: at least the ack that released them
    for (uint32_t id : ids) {
      ASSERT_EQ(id, out.size() + 1) << "out of order";
      // Sent after `done_before_send` boundaries had completed: its epoch is later than that.
      ASSERT_LT(done_before_send[id], limit) << "frame " << id << " left before its epoch was acked";
      out.push_back(id);
    }
  };
  for (uint32_t id = 1; id <= kFrames; ++id) {
    done_before_send[id] = boundaries_done.load();
    while (SendTo(qemu.get(), paths.nic_socket, Frame(id)) == EAGAIN) std::this_thread::yield();
    if (id % 64 == 0) check();
  }
  sending = false;
  checkpoint.join();
  acker.join();
  const uint64_t last = boundaries_done.load() + 1;
  ASSERT_TRUE((*nic)->OnEpochBoundary(last).ok());
  acked = last;
  (*nic)->ReleaseThrough(last);
  for (int i = 0; i < 400 && out.size() < kFrames; ++i) {
    check();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(out.size(), kFrames);
  (*nic)->Stop();
}

}  // namespace
}  // namespace tandem::output_commit
