// VmGuard acting on the VM for real heartbeat::PrimaryGuard decisions (real heartbeat service on loopback, a
// lease authority the test switches on and off, the system clock).
#include "roles/guard.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <deque>

#include "common/fd.h"
#include "tests/roles/fakes.h"

namespace tandem::roles {
namespace {

constexpr int kIntervalMs = 10, kLeaseMs = 150;

std::string FreeUdpAddress() {
  UniqueFd fd(socket(AF_INET, SOCK_DGRAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(0, bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)));
  socklen_t len = sizeof(addr);
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
}

// A witness that grants every renewal while `granting`, and otherwise stays silent.
class SwitchableWitness final : public heartbeat::LeaseAuthority {
 public:
  void SetGranting(bool granting) {
    std::lock_guard<std::mutex> lock(mu_);
    granting_ = granting;
  }
  Status RequestRenew(uint64_t term) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!granting_) return Status::Ok();
    heartbeat::LeaseReply reply;
    reply.op = heartbeat::LeaseOp::kRenew;
    reply.granted = true;
    reply.term = term == 0 ? 1 : term;
    reply.lease_ns = int64_t(kLeaseMs) * 1'000'000;
    reply.request_term = term;
    reply.request_send_ns = reply.receive_ns = SystemClock()->NowNanos();
    replies_.push_back(reply);
    return Status::Ok();
  }
  Status RequestPromote(uint64_t, uint64_t) override { return Status::Ok(); }
  bool PollReply(heartbeat::LeaseReply* reply) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (replies_.empty()) return false;
    *reply = replies_.front();
    replies_.pop_front();
    return true;
  }
  int wait_fd() const override { return -1; }
  heartbeat::LeaseAuthorityStatus status() const override { return {}; }

 private:
  std::mutex mu_;
  bool granting_ = true;
  std::deque<heartbeat::LeaseReply> replies_;
};

class VmGuardTest : public ::testing::Test {
 protected:
  VmGuardTest() {
    heartbeat::HeartbeatOptions options;
    options.node_name = "primary";
    options.peer_name = "standby";
    options.links = {{FreeUdpAddress(), FreeUdpAddress()}};  // no standby answers
    options.interval_ms = kIntervalMs;
    options.timeout_ms = 60;
    options.psk = "vm-guard-test-key";
    heartbeats_ = std::make_unique<heartbeat::HeartbeatService>(options, SystemClock());
    EXPECT_TRUE(heartbeats_->Start().ok());
    auto witness = std::make_unique<SwitchableWitness>();
    witness_ = witness.get();
    guard_ = std::make_unique<VmGuard>(
        heartbeat::MakeArbiterOptions(true, heartbeat::TwoHostPolicy::kNeverPromote, kLeaseMs, 60, kIntervalMs),
        kIntervalMs, std::move(witness), heartbeats_.get(), &shutdown_, SystemClock());
    EXPECT_TRUE(guard_->Start().ok());
    qemu_.running = true;
  }
  std::vector<std::string> Commands() {
    std::lock_guard<std::mutex> lock(qemu_.mu);
    return qemu_.qmp_commands;
  }

  Shutdown shutdown_;
  testing::FakeQemu qemu_;
  testing::FakeVm vm_{&qemu_};
  std::unique_ptr<heartbeat::HeartbeatService> heartbeats_;
  SwitchableWitness* witness_ = nullptr;
  std::unique_ptr<VmGuard> guard_;
};

TEST_F(VmGuardTest, LostLeaseStopsTheVmAndARenewedOneContinuesIt) {
  ASSERT_TRUE(guard_->WaitRunnable(2000));
  EXPECT_EQ(guard_->term(), 1u);
  guard_->AttachVm(&vm_);
  EXPECT_TRUE(Commands().empty());

  witness_->SetGranting(false);
  const auto lost = std::chrono::steady_clock::now();
  for (int i = 0; i < 100 && guard_->WaitRunnable(10); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_FALSE(guard_->WaitRunnable(0));
  EXPECT_LT(std::chrono::steady_clock::now() - lost, std::chrono::milliseconds(kLeaseMs + 100))
      << "fenced only after the lease ran out";
  EXPECT_EQ(Commands(), (std::vector<std::string>{"stop"}));
  EXPECT_EQ(guard_->StatusJson().value("state", ""), "fenced");

  witness_->SetGranting(true);
  ASSERT_TRUE(guard_->WaitRunnable(2000));
  EXPECT_EQ(Commands(), (std::vector<std::string>{"stop", "cont"}));
}

TEST_F(VmGuardTest, FenceBeforeTheVmIsAttachedStopsItOnAttach) {
  ASSERT_TRUE(guard_->WaitRunnable(2000));
  witness_->SetGranting(false);
  for (int i = 0; i < 100 && guard_->WaitRunnable(10); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_FALSE(guard_->WaitRunnable(0));
  EXPECT_TRUE(Commands().empty());
  guard_->AttachVm(&vm_);
  EXPECT_EQ(Commands(), (std::vector<std::string>{"stop"}));
}

TEST_F(VmGuardTest, ShutdownEndsTheWaitOfAFencedPrimary) {
  ASSERT_TRUE(guard_->WaitRunnable(2000));
  witness_->SetGranting(false);
  for (int i = 0; i < 100 && guard_->WaitRunnable(10); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_FALSE(guard_->WaitRunnable(0));
  shutdown_.Request();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(guard_->WaitRunnable(5000));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1000));
}

}  // namespace
}  // namespace tandem::roles
