// EpochShipper and EpochReceiver over real TCP on 127.0.0.1: epochs flow, acks come back, a slow standby slows
// the primary down to max_in_flight, a restarted standby is resynced in full, a corrupted epoch is rejected and
// replication recovers, a primary that dies mid epoch leaves the standby on the previous complete epoch.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "replicator/receiver.h"
#include "replicator/shipper.h"

namespace tandem::replicator {
namespace {

using Clock_ = std::chrono::steady_clock;

bool WaitUntil(const std::function<bool()>& pred, int timeout_ms = 10000) {
  const auto deadline = Clock_::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock_::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

double MsSince(Clock_::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock_::now() - start).count();
}

VmDescriptor Vm(uint64_t mem_pages = 64) {
  VmDescriptor d;
  d.vm_name = "vm-tcp";
  d.ram_blocks = {{"mem", mem_pages * kPageSize}, {"rom", 4 * kPageSize}};
  d.qemu_configuration = "config";
  d.qemu_vmdesc_json = "{}";
  return d;
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

// The VM as the primary sees it: the truth every replica must converge to.
class Harness {
 public:
  // A RAM block of `mem_pages` pages that compress well, or of random bytes (a full epoch as large on the wire as
  // in memory).
  // `live_ram`: the truth's "mem" block is a file the shipper reads as QEMU's RAM file (GuestRam, live resyncs).
  explicit Harness(IoEngine engine, uint64_t mem_pages = 64, bool random = false, bool live_ram = false)
      : engine_(engine), vm_(Vm(mem_pages)), rng_(7) {
    char dir[] = "/tmp/tandem-repl-XXXXXX";
    dir_ = mkdtemp(dir);
    if (live_ram) shared_ = {{"mem", dir_ + "/truth-mem"}};
    truth_ = std::move(RamImage::Create(vm_, shared_)).value();
    for (uint32_t b = 0; b < 2; ++b) {
      auto block = truth_->Block(b);
      for (size_t i = 0; i < block.size(); ++i) block[i] = uint8_t(i * 31 / 4096 + b);
    }
    if (random) {
      auto block = truth_->Block(0);
      for (size_t i = 0; i < block.size(); i += 8) {
        const uint64_t v = rng_();
        memcpy(block.data() + i, &v, 8);
      }
    }
    device_ = std::vector<uint8_t>(1000, 0x11);
  }
  ~Harness() {
    ::unlink((dir_ + "/truth-mem").c_str());
    ::unlink((dir_ + "/mem").c_str());
    ::unlink((dir_ + "/rom").c_str());
    ::rmdir(dir_.c_str());
  }

  ReceiverOptions ReceiverOpts(int port = 0) const {
    ReceiverOptions o;
    o.listen_address = "127.0.0.1:" + std::to_string(port);
    o.file_backed_blocks = {{"mem", dir_ + "/mem"}, {"rom", dir_ + "/rom"}};
    o.expected_vm_name = "vm-tcp";
    o.io_engine = engine_;
    return o;
  }

  ShipperOptions ShipperOpts(int port) const {
    ShipperOptions o;
    o.standby_address = "127.0.0.1:" + std::to_string(port);
    o.reconnect_interval_ms = 50;
    o.io_timeout_ms = 2000;
    o.io_engine = engine_;
    return o;
  }

  // The shipper's GuestRam holds copies of the truth's blocks (as of epoch 0): resyncs are exact at once, not
  // live (the live path: LiveResync tests below).
  Status StartShipper(EpochShipper& shipper) {
    auto ram = std::move(GuestRam::Open(vm_, shared_)).value();
    for (uint32_t b = 0; b < 2; ++b) {
      if (ram->live(b)) continue;  // the truth's own file
      for (uint64_t off = 0; off < truth_->Block(b).size(); off += kPageSize) {
        memcpy(ram->PageBuffer(b, off), truth_->Block(b).data() + off, kPageSize);
      }
    }
    return shipper.Start(vm_, std::move(ram), device_, 0);
  }

  // Makes epoch `n` (a few changed pages, sometimes a zero or random page, new device state), applies it to the
  // truth and submits it.
  void SubmitEpoch(EpochShipper& shipper, uint64_t n) {
    std::unique_ptr<Epoch> e = shipper.Borrow();
    e->Reset(n, false);
    const int pages = 1 + int(rng_() % 6);
    for (int i = 0; i < pages; ++i) {
      const uint64_t off = (rng_() % 64) * kPageSize;
      uint8_t* p = e->PageBuffer(0, off);
      memcpy(p, truth_->Block(0).data() + off, kPageSize);
      for (int k = 0; k < 8; ++k) p[rng_() % kPageSize] = uint8_t(rng_());
    }
    if (n % 5 == 0) e->FilledPage(0, (rng_() % 64) * kPageSize, 0);
    if (n % 7 == 0) {
      uint8_t* p = e->PageBuffer(1, (rng_() % 4) * kPageSize);
      for (size_t i = 0; i < kPageSize; ++i) p[i] = uint8_t(rng_());
    }
    e->device_state().assign(500 + n, uint8_t(n));
    ASSERT_TRUE(truth_->Apply(*e).ok());
    device_ = e->device_state();
    shipper.Submit(std::move(e));
  }

  // Epoch `n` rewrites `pages` pages (from page `n * pages`, wrapping) in about a third of their bytes: too many
  // changes for sparse runs, so every page goes through the compressor.
  void SubmitRewriteEpoch(EpochShipper& shipper, uint64_t n, uint64_t pages) {
    std::unique_ptr<Epoch> e = shipper.Borrow();
    e->Reset(n, false);
    const uint64_t ram_pages = truth_->Block(0).size() / kPageSize;
    for (uint64_t i = 0; i < pages; ++i) {
      const uint64_t off = ((n * pages + i) % ram_pages) * kPageSize;
      uint8_t* p = e->PageBuffer(0, off);
      memcpy(p, truth_->Block(0).data() + off, kPageSize);
      for (int k = 0; k < 1400; ++k) p[rng_() % kPageSize] = uint8_t("tandem epoch "[k % 13]);
    }
    e->device_state().assign(500, uint8_t(n));
    ASSERT_TRUE(truth_->Apply(*e).ok());
    device_ = e->device_state();
    shipper.Submit(std::move(e));
  }

  // The replica files hold exactly the truth.
  void ExpectReplicaMatches() {
    std::vector<uint8_t> mem = ReadFile(dir_ + "/mem"), rom = ReadFile(dir_ + "/rom");
    ASSERT_EQ(mem.size(), truth_->Block(0).size());
    ASSERT_EQ(rom.size(), truth_->Block(1).size());
    EXPECT_EQ(0, memcmp(mem.data(), truth_->Block(0).data(), mem.size())) << "replica mem differs";
    EXPECT_EQ(0, memcmp(rom.data(), truth_->Block(1).data(), rom.size())) << "replica rom differs";
  }

  const std::vector<uint8_t>& device() const { return device_; }

  // Flips a byte in each of the first `pages` pages of the standby's replica file (block 0), behind the
  // receiver's back: a replica that no longer holds what the primary shipped.
  void DamageReplica(uint64_t pages) {
    const int fd = ::open((dir_ + "/mem").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    for (uint64_t i = 0; i < pages; ++i) {
      uint8_t byte = 0;
      const off_t at = off_t(i * kPageSize + 123);
      ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
      byte ^= 0x20;
      ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
    }
    ::close(fd);
  }

 private:
  IoEngine engine_;
  VmDescriptor vm_;
  std::mt19937_64 rng_;
  std::unique_ptr<RamImage> truth_;
  std::vector<uint8_t> device_;
  std::string dir_;
  std::map<std::string, std::string> shared_;
};

// A TCP relay on 127.0.0.1 between the shipper and the receiver that slows down what the primary sends: each
// connection forwards towards the standby at most `bytes_per_s` (0: as fast as it comes), and only its first
// `pass_bytes` bytes until Release(). Its small receive buffer makes the primary's TCP see the relay's pace
// soon. Acks flow freely.
class ThrottlingRelay {
 public:
  ThrottlingRelay(int target_port, size_t pass_bytes, uint64_t bytes_per_s = 0)
      : target_port_(target_port), pass_bytes_(pass_bytes), bytes_per_s_(bytes_per_s) {
    auto fd = ListenStream("127.0.0.1:0", &port_);
    EXPECT_TRUE(fd.ok());
    if (fd.ok()) listener_ = std::move(fd).value();
    const int rcvbuf = 64 << 10;  // inherited by accepted sockets
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }
  ~ThrottlingRelay() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      for (int fd : sockets_) ::shutdown(fd, SHUT_RDWR);
    }
    cv_.notify_all();
    ::shutdown(listener_.get(), SHUT_RDWR);
    acceptor_.join();
    for (std::thread& t : pumps_) t.join();
    for (int fd : sockets_) ::close(fd);
  }
  int port() const { return port_; }
  // True once a connection has passed its bytes and holds back the rest.
  bool WaitHolding(int timeout_ms) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return holding_; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Flips one bit of the byte `bytes` past what has been forwarded towards the standby so far, as a fault on the
  // way would that TCP's checksum missed.
  void DamageByteAfter(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    damage_at_ = to_standby_ + bytes;
  }
  // Breaks every connection made so far (both ends see it end), as a network fault would; new ones are relayed.
  void CutConnections() {
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : sockets_) ::shutdown(fd, SHUT_RDWR);
  }

 private:
  void AcceptLoop() {
    for (;;) {
      const int client = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) return;  // shut down
      auto server = ConnectStream("127.0.0.1:" + std::to_string(target_port_), 2000);
      std::lock_guard<std::mutex> lock(mu_);
      if (!server.ok() || stop_) {
        ::close(client);
        continue;
      }
      const int to = server.value().release();
      for (int fd : {client, to}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
      sockets_.push_back(client), sockets_.push_back(to);
      pumps_.emplace_back([this, client, to] { Pump(client, to, true); });
      pumps_.emplace_back([this, client, to] { Pump(to, client, false); });
    }
  }
  void Pump(int from, int to, bool towards_standby) {
    std::vector<uint8_t> buf(16 << 10);
    size_t forwarded = 0;
    const auto start = Clock_::now();
    for (;;) {
      const ssize_t n = ::read(from, buf.data(), buf.size());
      if (n <= 0) break;
      if (towards_standby && bytes_per_s_ > 0) {
        std::this_thread::sleep_until(start + std::chrono::microseconds((forwarded + size_t(n)) * 1'000'000 /
                                                                        bytes_per_s_));
      }
      for (size_t at = 0; at < size_t(n);) {
        size_t chunk = size_t(n) - at;
        if (towards_standby) {
          std::unique_lock<std::mutex> lock(mu_);
          if (!released_ && forwarded + chunk > pass_bytes_) {
            chunk = pass_bytes_ - std::min(pass_bytes_, forwarded);
            if (chunk == 0) {
              holding_ = true;
              cv_.notify_all();
              cv_.wait(lock, [&] { return released_ || stop_; });
              if (stop_) return;
              continue;
            }
          }
          if (damage_at_ >= to_standby_ && damage_at_ - to_standby_ < chunk) {
            buf[at + (damage_at_ - to_standby_)] ^= 0x08;
            damage_at_ = SIZE_MAX;
          }
        }
        const ssize_t w = ::write(to, buf.data() + at, chunk);
        if (w <= 0) return;
        at += size_t(w), forwarded += size_t(w);
        if (towards_standby) {
          std::lock_guard<std::mutex> lock(mu_);
          to_standby_ += size_t(w);
        }
      }
    }
    ::shutdown(to, SHUT_WR);
  }

  const int target_port_;
  const size_t pass_bytes_;
  const uint64_t bytes_per_s_;
  int port_ = 0;
  UniqueFd listener_;
  std::thread acceptor_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false, stop_ = false, holding_ = false;
  size_t to_standby_ = 0;        // bytes forwarded towards the standby, all connections
  size_t damage_at_ = SIZE_MAX;  // DamageByteAfter
  std::vector<int> sockets_;
  std::vector<std::thread> pumps_;
};

class ShipperReceiverTest : public ::testing::TestWithParam<IoEngine> {};

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

// Shipper -> relay (passing everything, at `bytes_per_s` unless 0) -> receiver.
struct Relayed {
  explicit Relayed(Harness& h, uint64_t bytes_per_s = 0, bool auto_compression = false)
      : receiver(h.ReceiverOpts(), SystemClock()),
        listening(receiver.Start()),
        relay(receiver.port(), SIZE_MAX, bytes_per_s),
        shipper(Options(h, relay.port(), auto_compression), SystemClock()) {}
  static ShipperOptions Options(Harness& h, int port, bool auto_compression) {
    ShipperOptions so = h.ShipperOpts(port);
    if (auto_compression) {
      so.adaptive_compression = true;
      so.io_timeout_ms = 10000;  // a slow link
    }
    return so;
  }
  // Starts the shipper; true once the standby protects the VM.
  bool Protect(Harness& h) {
    return listening.ok() && h.StartShipper(shipper).ok() &&
           WaitUntil([&] { return shipper.stats().standby_connected; });
  }
  EpochReceiver receiver;
  Status listening;
  ThrottlingRelay relay;
  EpochShipper shipper;
};

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

// Submits epochs first..last and waits until the last is acknowledged.
void ShipAndAwait(Harness& h, EpochShipper& shipper, uint64_t first, uint64_t last) {
  for (uint64_t n = first; n <= last; ++n) h.SubmitEpoch(shipper, n);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected && shipper.stats().last_acked == last; }))
      << shipper.stats().last_acked << " " << shipper.stats().last_error;
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

// A record damaged on the way (its checksum fails) is rejected, nothing of its epoch applied, and the replica is
// still exactly the epoch the standby holds: the reconnect catches it up instead of sending the whole RAM again.
TEST_P(ShipperReceiverTest, RecordDamagedOnTheWayIsRejectedThenCaughtUpNotResentWhole) {
  Harness h(GetParam(), 1024);  // 4 MiB of RAM
  Relayed link(h);
  ASSERT_TRUE(link.Protect(h)) << link.shipper.stats().last_error;
  ShipAndAwait(h, link.shipper, 1, 5);
  const uint64_t bytes_before = link.shipper.stats().bytes_sent;
  // Inside the first PAGES record of epoch 6, past its EPOCH_BEGIN record and its own header.
  link.relay.DamageByteAfter(2 * kRecordHeaderSize + kEpochBeginSize + 4);
  ShipAndAwait(h, link.shipper, 6, 15);
  const ShipperStats s = link.shipper.stats();
  link.receiver.Stop();
  EXPECT_EQ(link.receiver.stats().epochs_rejected, 1u);
  EXPECT_EQ(link.receiver.stats().last_rejection, DecodeError::kChecksumMismatch) << link.receiver.stats().last_error;
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

INSTANTIATE_TEST_SUITE_P(Engines, ShipperReceiverTest, ::testing::Values(IoEngine::kPoll, IoEngine::kIoUring),
                         [](const ::testing::TestParamInfo<IoEngine>& p) {
                           return std::string(p.param == IoEngine::kPoll ? "Poll" : "IoUring");
                         });

}  // namespace
}  // namespace tandem::replicator
