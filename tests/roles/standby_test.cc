#include "roles/standby.h"

#include <gtest/gtest.h>

#include "roles/status_file.h"
#include "tests/qemu/qemu_test_util.h"
#include "tests/roles/fakes.h"
#include "tests/support/recording_notifier.h"

namespace tandem::roles {
namespace {

using qemu::testing::TempDir;

class FakeReceiver final : public EpochReceiving {
 public:
  replicator::ReceiverStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void Stop() override {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  std::optional<replicator::ResumePoint> resume_point() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return point_;
  }
  void Applied(replicator::ResumePoint point) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.epochs_applied = stats_.last_applied = point.epoch;
    stats_.has_resume_point = true;
    point_ = std::move(point);
  }
  bool stopped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stopped_;
  }
  // Applied epochs of a live resync that has not settled: no resume point yet.
  void AppliedUnsettled(uint64_t epoch) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.epochs_applied = stats_.last_applied = epoch;
  }
  void SetPrimaryConnected(bool connected) {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.primary_connected = connected;
  }

 private:
  mutable std::mutex mu_;
  replicator::ReceiverStats stats_;
  std::optional<replicator::ResumePoint> point_;
  bool stopped_ = false;
};

// Promotes, like the arbiter, only once told so and a complete epoch can be resumed.
class FakePromotion final : public Promotion {
 public:
  FakePromotion(FakeClock* clock, testing::FakeGuard* next_guard) : clock_(clock), next_guard_(next_guard) {}
  void Promote(uint64_t term) {
    std::lock_guard<std::mutex> lock(mu_);
    term_ = term;
    lost_ns_ = clock_->NowNanos();
    allowed_ = true;
    cv_.notify_all();
  }
  void SetResumePoint(bool ready, uint64_t last_applied_epoch) override {
    std::lock_guard<std::mutex> lock(mu_);
    ready_ = ready;
    last_applied_ = last_applied_epoch;
  }
  bool WaitPromoted(int timeout_ms) override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return woken_ || (allowed_ && ready_); });
    woken_ = false;
    return allowed_ && ready_;
  }
  void Wake() override {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
    wakes_++;
    cv_.notify_all();
  }
  int wakes() {
    std::lock_guard<std::mutex> lock(mu_);
    return wakes_;
  }
  nlohmann::json StatusJson() const override { return {{"state", "wait"}, {"term", 4}}; }
  heartbeat::PeerStatus peer() const override { return {}; }
  PromotionDecision Decision() override {
    std::lock_guard<std::mutex> lock(mu_);
    return {term_, "primary lost", lost_ns_};
  }
  Result<std::unique_ptr<RunGuard>> BecomePrimary(const PromotionDecision& decision, uint64_t last_epoch) override {
    std::lock_guard<std::mutex> lock(mu_);
    primary_term_ = decision.term;
    primary_last_epoch_ = last_epoch;
    return std::unique_ptr<RunGuard>(std::make_unique<GuardRef>(next_guard_));
  }
  uint64_t primary_term_ = 0, primary_last_epoch_ = 0;

 private:
  // The role owns the guard it gets; the test keeps looking at `next_guard_`.
  struct GuardRef final : RunGuard {
    explicit GuardRef(RunGuard* guard) : g(guard) {}
    void AttachVm(Vm* vm) override { g->AttachVm(vm); }
    bool WaitRunnable(int timeout_ms) override { return g->WaitRunnable(timeout_ms); }
    bool superseded() const override { return g->superseded(); }
    uint64_t term() const override { return g->term(); }
    void SetLastEpoch(uint64_t epoch) override { g->SetLastEpoch(epoch); }
    nlohmann::json StatusJson() const override { return g->StatusJson(); }
    heartbeat::PeerStatus peer() const override { return g->peer(); }
    RunGuard* g;
  };
  FakeClock* clock_;
  testing::FakeGuard* next_guard_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool allowed_ = false, ready_ = false, woken_ = false;
  int wakes_ = 0;
  uint64_t term_ = 0, last_applied_ = 0;
  int64_t lost_ns_ = 0;
};

class StandbyRoleTest : public ::testing::Test {
 protected:
  StandbyRoleTest() {
    options_.vm_name = "vm7";
    options_.state_dir = dir_.path();
    options_.replica_path = dir_ / "replica";
    options_.receive.listen_address = "127.0.0.1:7400";
    options_.arbitration = "NO witness: two-host policy standby-promotes";
    host_.qemu.clock = &clock_;
  }
  int Run() {
    StandbyEnv env{&clock_, &host_, &receiver_, &promotion_, &shutdown_, &notifier_, nullptr, nullptr};
    env.make_reprotect_shipper = [this](uint64_t term, disk::BlockDevice*) {
      std::lock_guard<std::mutex> lock(ship_log_.mu);
      ship_log_.term = term;
      return std::unique_ptr<EpochShipping>(std::make_unique<testing::FakeShipper>(&ship_log_));
    };
    return RunStandbyRole(options_, env);
  }
  // Polls `done` every 10 ms for up to 5 s.
  static bool WaitUntil(const std::function<bool()>& done) {
    for (int i = 0; i < 500; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
  size_t EpochsShipped() {
    std::lock_guard<std::mutex> lock(ship_log_.mu);
    return ship_log_.submitted.size();
  }
  void EnableReprotection() {
    options_.vm.ram_path = options_.replica_path;
    options_.reprotect = ReprotectOptions{30, {}, std::nullopt};
    options_.reprotect->ship.standby_address = "127.0.0.1:7401";
    active_guard_.SetPeerAlive(true);  // the other host is back
  }
  // Runs the role on its own thread until `done` holds for its status.json, then requests shutdown.
  int RunUntil(const std::function<bool(const nlohmann::json&)>& done) {
    int code = -1;
    std::thread role([&] { code = Run(); });
    for (int i = 0; i < 500; ++i) {
      auto status = ReadStatusFile(dir_.path());
      if (status.ok() && done(*status)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    shutdown_.Request();
    role.join();
    return code;
  }
  replicator::ResumePoint Epoch(uint64_t number) {
    replicator::ResumePoint point;
    point.epoch = number;
    point.descriptor = testing::SmallVm();
    point.device_state = {9, uint8_t(number)};
    return point;
  }

  TempDir dir_;
  FakeClock clock_;
  testing::FakeHost host_;
  FakeReceiver receiver_;
  testing::FakeGuard active_guard_{5};
  FakePromotion promotion_{&clock_, &active_guard_};
  Shutdown shutdown_;
  StandbyOptions options_;
  tandem::testing::RecordingNotifier notifier_;
  testing::ShipperLog ship_log_;  // the re-protection's shipper
};

TEST_F(StandbyRoleTest, PromotionResumesFromTheReceiversResumePointWithItsStream) {
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  const int code = RunUntil([](const nlohmann::json& s) { return s.value("state", "") == "active"; });
  EXPECT_EQ(code, kExitOk);
  EXPECT_EQ(host_.qemu.role, qemu::QemuRole::kStandby);
  EXPECT_TRUE(receiver_.stopped()) << "the replica must be final before QEMU loads it";
  EXPECT_EQ(host_.qemu.resume_stream, qemu::BuildResumeStream(Epoch(7).descriptor, Epoch(7).device_state));
  EXPECT_EQ(host_.qemu.resume_socket, dir_ / "incoming.sock");
  EXPECT_EQ(promotion_.primary_term_, 5u);
  EXPECT_EQ(promotion_.primary_last_epoch_, 7u);
  EXPECT_TRUE(active_guard_.ever_attached()) << "the promoted host fences like any primary";
  EXPECT_EQ(active_guard_.attached(), nullptr);
  const nlohmann::json status = ReadStatusFile(dir_.path()).value();
  EXPECT_EQ(status.value("resumed_epoch", 0), 7);
  EXPECT_EQ(status.value("term", 0), 5);
  const nlohmann::json& m = status["metrics"];
  EXPECT_EQ(m.value("tandem_role{role=\"primary\"}", -1.0), 1) << "the promoted standby is the primary now";
  EXPECT_EQ(m.value("tandem_term", -1.0), 5) << m.dump(2);
  EXPECT_EQ(m.value("tandem_protected", -1.0), 0) << "nothing protects the VM after a failover";
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL));
}

TEST_F(StandbyRoleTest, MetricsSayProtectedOnlyWithAResumePointAndThePrimaryConnected) {
  auto protected_is = [](double want) {
    return [want](const nlohmann::json& s) {
      return s.contains("metrics") && s["metrics"].value("tandem_protected", -1.0) == want &&
             s["metrics"].value("tandem_role{role=\"standby\"}", -1.0) == 1;
    };
  };
  auto wait_for = [&](const std::function<bool(const nlohmann::json&)>& done) {
    for (int i = 0; i < 500; ++i) {
      auto status = ReadStatusFile(dir_.path());
      if (status.ok() && done(*status)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  int code = -1;
  std::thread role([&] { code = Run(); });
  EXPECT_TRUE(wait_for(protected_is(0))) << "no primary, no copy: unprotected";
  receiver_.Applied(Epoch(3));
  receiver_.SetPrimaryConnected(true);
  EXPECT_TRUE(wait_for(protected_is(1)));
  EXPECT_EQ(ReadStatusFile(dir_.path()).value()["metrics"].value("tandem_epochs_total", -1.0), 3);
  receiver_.SetPrimaryConnected(false);
  EXPECT_TRUE(wait_for(protected_is(0))) << "primary gone: the replica is a copy nobody updates";
  shutdown_.Request();
  role.join();
  EXPECT_EQ(code, kExitOk);
}

size_t IndexOf(const std::vector<std::string>& events, const std::string& event) {
  return size_t(std::find(events.begin(), events.end(), event) - events.begin());
}

TEST_F(StandbyRoleTest, ConsoleListensBeforeTheWarmQemuStartsAndHoldsUntilFailover) {
  options_.outputs.console_log = dir_ / "serial.log";
  options_.outputs.nic = NicOptions{"tdtap0", "", {}};
  const int code = RunUntil([](const nlohmann::json& s) { return s.value("state", "") == "standby"; });
  EXPECT_EQ(code, kExitOk);
  const std::vector<std::string> events = host_.qemu.Events();
  ASSERT_LT(IndexOf(events, "console:open"), events.size());
  EXPECT_LT(IndexOf(events, "console:open"), IndexOf(events, "launch")) << "QEMU's chardev connects at startup";
  EXPECT_EQ(host_.qemu.console_log, dir_ / "serial.log");
  EXPECT_EQ(IndexOf(events, "nic:open"), events.size()) << "the standby opens its TAP only at failover";
  EXPECT_EQ(IndexOf(events, "console:pass on"), events.size()) << "no pass-through before the failover";
}

TEST_F(StandbyRoleTest, FailoverOpensTheNicPassesOutputThroughAndAnnouncesTheMac) {
  options_.outputs.nic = NicOptions{"tdtap0", "br0", {}};
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  const int code = RunUntil([](const nlohmann::json& s) { return s.value("state", "") == "active"; });
  EXPECT_EQ(code, kExitOk);
  const std::vector<std::string> events = host_.qemu.Events();
  const size_t resume = IndexOf(events, "failover resume");
  ASSERT_LT(resume, events.size());
  EXPECT_LT(IndexOf(events, "nic:open"), resume);
  EXPECT_LT(IndexOf(events, "nic:pass on"), resume) << "the resumed VM's first frame leaves at once";
  EXPECT_LT(IndexOf(events, "console:pass on"), resume);
  const size_t announce = IndexOf(events, "qmp announce-self");
  ASSERT_LT(announce, events.size()) << "the switches must learn the MAC's new port";
  EXPECT_GT(announce, resume);
}

TEST_F(StandbyRoleTest, FailoverWithoutANicDoesNotAnnounce) {
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  EXPECT_EQ(RunUntil([](const nlohmann::json& s) { return s.value("state", "") == "active"; }), kExitOk);
  const std::vector<std::string> events = host_.qemu.Events();
  EXPECT_LT(IndexOf(events, "console:pass on"), IndexOf(events, "failover resume"));
  EXPECT_EQ(IndexOf(events, "nic:open"), events.size());
  EXPECT_EQ(IndexOf(events, "qmp announce-self"), events.size());
}

TEST_F(StandbyRoleTest, NicThatCannotOpenFailsTheFailoverBeforeResuming) {
  options_.outputs.nic = NicOptions{"tdtap0", "", {}};
  host_.qemu.nic_error = Status::IoError("TUNSETIFF tdtap0: Operation not permitted");
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  EXPECT_EQ(Run(), kExitFailed);
  EXPECT_TRUE(host_.qemu.resume_stream.empty()) << "a VM without its NIC must not run";
  EXPECT_NE(ReadStatusFile(dir_.path()).value().value("error", "").find("tdtap0"), std::string::npos);
}

TEST_F(StandbyRoleTest, ResumesOnlyOnceAnEpochIsComplete) {
  promotion_.Promote(5);  // allowed, but nothing applied yet: the arbiter waits for a resume point
  const int code = RunUntil([](const nlohmann::json& s) { return s.value("state", "") == "standby"; });
  EXPECT_EQ(code, kExitOk);
  EXPECT_TRUE(host_.qemu.resume_stream.empty());
  EXPECT_FALSE(receiver_.stopped());
}

TEST_F(StandbyRoleTest, AppliedEpochsOfAnUnsettledLiveResyncAreNoResumePoint) {
  receiver_.AppliedUnsettled(1);
  promotion_.Promote(5);
  // A few turns of the role's loop: a promotion would have come by then.
  const int code = RunUntil([&](const nlohmann::json& s) {
    return s.value("state", "") == "standby" && notifier_.watchdogs() >= 4;
  });
  EXPECT_EQ(code, kExitOk);
  EXPECT_TRUE(host_.qemu.resume_stream.empty()) << "promoted onto a replica no epoch describes";
  EXPECT_TRUE(ReadStatusFile(dir_.path()).value()["resume_epoch"].is_null());
}

TEST_F(StandbyRoleTest, WarmQemuThatExitsFailsTheStandby) {
  host_.qemu.exits_at_start = true;
  EXPECT_EQ(Run(), kExitFailed);
  const nlohmann::json status = ReadStatusFile(dir_.path()).value();
  EXPECT_EQ(status.value("state", ""), "failed");
  EXPECT_NE(status.value("error", "").find("the warm standby QEMU exited"), std::string::npos) << status.dump();
}

TEST_F(StandbyRoleTest, ResumeRefusedByQemuFails) {
  receiver_.Applied(Epoch(3));
  promotion_.Promote(5);
  host_.qemu.resume_error = Status::IoError("incoming migration failed");
  EXPECT_EQ(Run(), kExitFailed);
  EXPECT_EQ(ReadStatusFile(dir_.path()).value().value("state", ""), "failed");
  EXPECT_FALSE(active_guard_.ever_attached()) << "no primary guard for a VM that never ran";
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL));
}

TEST_F(StandbyRoleTest, ShutdownEndsTheStandbyAtOnce) {
  int code = -1;
  std::thread role([&] { code = Run(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // inside its first 200 ms wait
  shutdown_.Request();
  role.join();
  EXPECT_GE(promotion_.wakes(), 1) << "the shutdown must wake the wait for a promotion, not wait it out";
  EXPECT_EQ(code, kExitOk);
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL));
  EXPECT_TRUE(host_.qemu.resume_stream.empty());
}

bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

TEST_F(StandbyRoleTest, ReadyOnceTheWarmQemuRunsAndTheFeedKeepsTurning) {
  const int code = RunUntil([&](const nlohmann::json& s) {
    return s.value("state", "") == "standby" && notifier_.watchdogs() >= 3;
  });
  EXPECT_EQ(code, kExitOk);
  EXPECT_TRUE(host_.qemu.launched);
  EXPECT_EQ(notifier_.ready(), 1);
  EXPECT_GE(notifier_.watchdogs(), 3) << "fed from every turn of the role's loop (200 ms)";
  ASSERT_FALSE(notifier_.statuses().empty());
  EXPECT_TRUE(StartsWith(notifier_.statuses()[0], "standby: waiting for the primary")) << notifier_.statuses()[0];
  EXPECT_NE(notifier_.statuses()[0].find("term 4"), std::string::npos) << notifier_.statuses()[0];
}

TEST_F(StandbyRoleTest, StandbyWhoseQemuCannotStartIsNeverReady) {
  host_.qemu.launch_error = Status::IoError("no qemu-system-x86_64");
  EXPECT_EQ(Run(), kExitFailed);
  EXPECT_EQ(notifier_.ready(), 0);
}

TEST_F(StandbyRoleTest, PrimaryConnectingAndLeavingAreStatusChanges) {
  std::thread primary([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    receiver_.SetPrimaryConnected(true);
    receiver_.Applied(Epoch(3));
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    receiver_.SetPrimaryConnected(false);
  });
  const int code = RunUntil([&](const nlohmann::json&) {
    const std::vector<std::string> statuses = notifier_.statuses();
    return !statuses.empty() && StartsWith(statuses.back(), "standby: primary NOT connected");
  });
  primary.join();
  EXPECT_EQ(code, kExitOk);
  std::vector<std::string> states;
  for (const std::string& status : notifier_.statuses()) states.push_back(status.substr(0, status.find(" (")));
  EXPECT_EQ(states, (std::vector<std::string>{"standby: waiting for the primary, no copy of the VM yet",
                                              "standby: protecting the VM, replica in sync",
                                              "standby: primary NOT connected, holding the last complete epoch"}));
}

TEST_F(StandbyRoleTest, PromotedStandbySaysItIsActiveAndKeepsFeedingTheWatchdog) {
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  int fed_when_active = -1;
  const int code = RunUntil([&](const nlohmann::json& s) {
    if (s.value("state", "") != "active") return false;
    if (fed_when_active < 0) fed_when_active = notifier_.watchdogs();
    return notifier_.watchdogs() >= fed_when_active + 2;
  });
  EXPECT_EQ(code, kExitOk);
  ASSERT_FALSE(notifier_.statuses().empty());
  EXPECT_TRUE(StartsWith(notifier_.statuses().back(), "ACTIVE: VM running on this host after a failover"))
      << notifier_.statuses().back();
  EXPECT_NE(notifier_.statuses().back().find("term 5, resumed from epoch 7"), std::string::npos);
}

TEST_F(StandbyRoleTest, PromotedStandbyReprotectsTheVmItResumedWithoutStartingAnother) {
  EnableReprotection();
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  const int code = RunUntil([&](const nlohmann::json&) { return EpochsShipped() >= 3; });
  EXPECT_EQ(code, kExitOk);
  const std::vector<std::string> events = host_.qemu.Events();
  EXPECT_EQ(std::count(events.begin(), events.end(), "launch"), 1) << "the resumed QEMU is the one checkpointed";
  EXPECT_EQ(host_.qemu.colo_socket, dir_ / "colo.sock");
  EXPECT_EQ(host_.qemu.colo_checkpoint_ms, 30);
  EXPECT_EQ(host_.qemu.precopy_shared_files.at(qemu::kMainRamBlock), options_.replica_path)
      << "the replica the VM runs on is the RAM the new standby is seeded from";
  std::lock_guard<std::mutex> lock(ship_log_.mu);
  EXPECT_EQ(ship_log_.term, 5u) << "epochs go out under the term the witness granted";
  EXPECT_TRUE(ship_log_.started);
  ASSERT_GE(ship_log_.submitted.size(), 3u);
  EXPECT_EQ(ship_log_.submitted[0], 1u);
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL)) << "shut down, the VM goes with the role";
}

TEST_F(StandbyRoleTest, ReprotectionWaitsUntilTheOtherHostIsHeardAgain) {
  EnableReprotection();
  active_guard_.SetPeerAlive(false);
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  int turns_active = 0;
  std::thread role([&] { Run(); });
  ASSERT_TRUE(WaitUntil([&] {
    auto status = ReadStatusFile(dir_.path());
    return status.ok() && status->value("reprotect", "") == "waiting for the other host" && ++turns_active >= 3;
  }));
  {
    std::lock_guard<std::mutex> lock(host_.qemu.mu);
    EXPECT_TRUE(host_.qemu.colo_socket.empty()) << "no checkpoints while nobody can take them";
  }
  active_guard_.SetPeerAlive(true);
  EXPECT_TRUE(WaitUntil([&] { return EpochsShipped() >= 1; })) << "the other host is back: re-protect";
  shutdown_.Request();
  role.join();
  EXPECT_EQ(host_.qemu.colo_socket, dir_ / "colo.sock");
}

TEST_F(StandbyRoleTest, ReprotectedOutputIsHeldAgainOnceTheNewStandbyHoldsACopy) {
  EnableReprotection();
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  ship_log_.standby_connected = true;
  RunUntil([&](const nlohmann::json&) { return EpochsShipped() >= 3; });
  const std::vector<std::string> events = host_.qemu.Events();
  const size_t resume = IndexOf(events, "failover resume");
  const size_t pass_on = IndexOf(events, "console:pass on"), pass_off = IndexOf(events, "console:pass off");
  ASSERT_LT(pass_on, resume) << "right after the failover nothing can overtake the resumed VM";
  ASSERT_LT(pass_off, events.size()) << "a new standby means output waits for its acks again";
  EXPECT_GT(pass_off, resume);
  EXPECT_LT(IndexOf(events, "console:boundary 0"), events.size());
}

TEST_F(StandbyRoleTest, FailedReprotectionLeavesColoAndTheVmGoesOnUnprotected) {
  EnableReprotection();
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  host_.qemu.before_checkpoint = [](int n) {
    return n == 2 ? Status::Closed("COLO stream broke") : Status::Ok();
  };
  // With re-protection the promoted host says "active" only once the re-protection ended.
  const int code = RunUntil([&](const nlohmann::json& s) { return s.value("state", "") == "active"; });
  EXPECT_EQ(code, kExitOk);
  EXPECT_EQ(EpochsShipped(), 1u) << "checkpoint 2 broke the stream";
  const std::vector<std::string> events = host_.qemu.Events();
  const size_t left = IndexOf(events, "qmp x-colo-lost-heartbeat");
  ASSERT_LT(left, events.size()) << "QEMU's COLO must be told the replication is gone";
  std::string last_pass;
  for (const std::string& e : events) {
    if (e.rfind("console:pass ", 0) == 0) last_pass = e;
  }
  EXPECT_EQ(last_pass, "console:pass on") << "unprotected again: output leaves at once";
}

TEST_F(StandbyRoleTest, ReprotectingHostSupersededByANewerTermStopsAndKillsTheVm) {
  EnableReprotection();
  receiver_.Applied(Epoch(7));
  promotion_.Promote(5);
  host_.qemu.on_resume_vm = [&](int n) {
    if (n == 2) active_guard_.Supersede();
  };
  std::thread role([&] { EXPECT_EQ(Run(), kExitSuperseded); });
  role.join();
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL));
  EXPECT_EQ(IndexOf(host_.qemu.Events(), "qmp x-colo-lost-heartbeat"), host_.qemu.Events().size())
      << "a superseded VM must never be let go on";
}

}  // namespace
}  // namespace tandem::roles
