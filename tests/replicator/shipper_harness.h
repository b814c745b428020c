// The harness of the shipper/receiver tests (shipper_receiver_test.cc, shipper_resync_test.cc): a primary's RAM
// and epochs, a standby's replica file, and a relay between them that can throttle and cut the connection.
#pragma once

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

namespace tandem::replicator::shipper_testing {


using Clock_ = std::chrono::steady_clock;

// The pre-shared key of the link in these tests (both ends).
inline constexpr char kLinkKey[] = "shipper-receiver-test-link-key";

inline bool WaitUntil(const std::function<bool()>& pred, int timeout_ms = 10000) {
  const auto deadline = Clock_::now() + std::chrono::milliseconds(timeout_ms);
  while (Clock_::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

inline double MsSince(Clock_::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock_::now() - start).count();
}

inline VmDescriptor Vm(uint64_t mem_pages = 64) {
  VmDescriptor d;
  d.vm_name = "vm-tcp";
  d.ram_blocks = {{"mem", mem_pages * kPageSize}, {"rom", 4 * kPageSize}};
  d.qemu_configuration = "config";
  d.qemu_vmdesc_json = "{}";
  return d;
}

inline std::vector<uint8_t> ReadFile(const std::string& path) {
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
    o.security = {kLinkKey, encryption};
    return o;
  }

  ShipperOptions ShipperOpts(int port) const {
    ShipperOptions o;
    o.standby_address = "127.0.0.1:" + std::to_string(port);
    o.reconnect_interval_ms = 50;
    o.io_timeout_ms = 2000;
    o.io_engine = engine_;
    o.security = {kLinkKey, encryption};
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

  LinkEncryption encryption = LinkEncryption::kAesGcm;  // of both ends' options

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
  // What the first connection sent towards the standby so far (its first 8 MiB): a session to replay.
  std::vector<uint8_t> FirstSessionToStandby() {
    std::lock_guard<std::mutex> lock(mu_);
    return recorded_;
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
      const bool first = sockets_.size() == 2;
      pumps_.emplace_back([this, client, to, first] { Pump(client, to, true, first); });
      pumps_.emplace_back([this, client, to] { Pump(to, client, false); });
    }
  }
  void Pump(int from, int to, bool towards_standby, bool record = false) {
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
          if (record && recorded_.size() < (8u << 20)) recorded_.insert(recorded_.end(), &buf[at - size_t(w)], &buf[at]);
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
  std::vector<uint8_t> recorded_;  // FirstSessionToStandby
  std::vector<int> sockets_;
  std::vector<std::thread> pumps_;
};

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

// Submits epochs first..last and waits until the last is acknowledged.
inline void ShipAndAwait(Harness& h, EpochShipper& shipper, uint64_t first, uint64_t last) {
  for (uint64_t n = first; n <= last; ++n) h.SubmitEpoch(shipper, n);
  ASSERT_TRUE(WaitUntil([&] { return shipper.stats().standby_connected && shipper.stats().last_acked == last; }))
      << shipper.stats().last_acked << " " << shipper.stats().last_error;
}

class ShipperReceiverTest : public ::testing::TestWithParam<IoEngine> {};

}  // namespace tandem::replicator::shipper_testing
