#include "roles/primary.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <sstream>
#include <thread>

#include "roles/control.h"
#include "roles/status_file.h"
#include "tests/qemu/qemu_test_util.h"
#include "tests/roles/fakes.h"
#include "tests/support/recording_notifier.h"

namespace tandem::roles {
namespace {

using qemu::testing::TempDir;
using testing::FakeGuard;
using testing::FakeHost;
using testing::ShipperLog;

class PrimaryRoleTest : public ::testing::Test {
 protected:
  PrimaryRoleTest() {
    options_.vm_name = "vm7";
    options_.state_dir = dir_.path();
    options_.epoch_ms = 20;
    options_.ship.standby_address = "127.0.0.1:7400";
    host_.qemu.clock = &clock_;
  }

  int Run() {
    PrimaryEnv env{&clock_, &host_, &guard_, &shutdown_, [this](uint64_t term, disk::BlockDevice* disk) {
                     shipped_.term = term;
                     shipped_.disk = disk;
                     return std::unique_ptr<EpochShipping>(std::make_unique<testing::FakeShipper>(&shipped_));
                   },
                   &notifier_, &metrics_};
    return RunPrimaryRole(options_, env);
  }
  // The checkpoint stream ends with a shutdown request after `n` checkpoints.
  void ShutDownAfter(int n) {
    host_.qemu.checkpoints = n + 1;
    host_.qemu.before_checkpoint = [this, n](int k) {
      if (k == n + 1) shutdown_.Request();
      return Status::Ok();
    };
  }
  nlohmann::json StatusFile() {
    auto status = ReadStatusFile(dir_.path());
    return status.ok() ? status.value() : nlohmann::json();
  }

  TempDir dir_;
  FakeClock clock_;
  FakeHost host_;
  FakeGuard guard_{7};
  Shutdown shutdown_;
  ShipperLog shipped_;
  PrimaryOptions options_;
  tandem::testing::RecordingNotifier notifier_;
  RoleMetrics metrics_{{{"127.0.0.1:7101", "127.0.0.1:7201"}}};
};

TEST_F(PrimaryRoleTest, PrecopySeedsTheShipperAndEveryCheckpointIsSubmittedThenResumed) {
  ShutDownAfter(4);
  EXPECT_EQ(Run(), kExitOk);

  EXPECT_EQ(host_.qemu.role, qemu::QemuRole::kPrimary);
  EXPECT_EQ(host_.qemu.colo_socket, dir_ / "colo.sock");
  EXPECT_EQ(host_.qemu.colo_checkpoint_ms, 20);
  EXPECT_TRUE(shipped_.started);
  EXPECT_EQ(shipped_.term, 7u) << "the shipper carries the term the guard granted";
  EXPECT_EQ(shipped_.descriptor.vm_name, "vm7");
  EXPECT_TRUE(shipped_.got_ram);
  // The shipper reads the guest's RAM from the file QEMU keeps it in (no mirror of it).
  EXPECT_EQ(host_.qemu.precopy_shared_files,
            (std::map<std::string, std::string>{{qemu::kMainRamBlock, options_.vm.ram_path}}));
  EXPECT_EQ(shipped_.device_state, (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(shipped_.submitted, (std::vector<uint64_t>{1, 2, 3, 4}));
  EXPECT_EQ(host_.qemu.resumed, 4);
  EXPECT_EQ(guard_.last_epoch(), 4u);
  EXPECT_TRUE(guard_.ever_attached());
  EXPECT_EQ(guard_.attached(), nullptr) << "the guard must let go of the VM before it is destroyed";
  EXPECT_TRUE(host_.qemu.Killed(SIGTERM)) << "the shutdown request ends QEMU (and the blocked checkpoint read)";
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL));
  EXPECT_TRUE(shipped_.destroyed);
}

size_t IndexOf(const std::vector<std::string>& events, const std::string& event) {
  return size_t(std::find(events.begin(), events.end(), event) - events.begin());
}

std::vector<std::string> Matching(const std::vector<std::string>& events, const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& e : events) {
    if (e.rfind(prefix, 0) == 0) out.push_back(e);
  }
  return out;
}

bool WaitForEvent(testing::FakeQemu& qemu, const std::string& event) {
  for (int i = 0; i < 400; ++i) {
    const std::vector<std::string> events = qemu.Events();
    if (std::find(events.begin(), events.end(), event) != events.end()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST_F(PrimaryRoleTest, EpochMsAutoStartsEveryCheckpointItselfOnceTheVmRunsAtTheIntervalItPicks) {
  // Every fake checkpoint pauses the VM 2 ms: at most 5% paused asks for 40 ms, reached from 10 ms by doubling.
  options_.adaptive_epoch = AdaptiveEpochOptions{.min_ms = 10, .max_ms = 400, .start_ms = 10, .max_paused_percent = 5};
  ShutDownAfter(7);
  EXPECT_EQ(Run(), kExitOk);
  EXPECT_EQ(host_.qemu.colo_checkpoint_ms, 800) << "QEMU's own timer is only a backstop (2 x max_ms)";
  const auto& set = host_.qemu.checkpoint_delays_set;
  // One trigger per checkpoint: the 8th is where the shutdown is asked instead.
  ASSERT_EQ(set.size(), 8u);
  std::vector<int64_t> spacing_ms;
  for (size_t i = 0; i < set.size(); ++i) {
    EXPECT_EQ(set[i].second, 800);
    if (i > 0) spacing_ms.push_back((set[i].first - set[i - 1].first) / 1'000'000);
  }
  EXPECT_EQ(spacing_ms, (std::vector<int64_t>{20, 40, 40, 40, 40, 40, 40}));
  // Each trigger comes after the previous checkpoint resumed the VM: none lands inside a checkpoint.
  const std::vector<std::string> events = host_.qemu.Events();
  std::vector<std::string> triggers_and_resumes;
  for (const std::string& e : events) {
    if (e == "qmp migrate-set-parameters" || e.rfind("resume ", 0) == 0) triggers_and_resumes.push_back(e);
  }
  for (size_t i = 0; i + 1 < triggers_and_resumes.size(); ++i) {
    EXPECT_NE(triggers_and_resumes[i] == "qmp migrate-set-parameters",
              triggers_and_resumes[i + 1] == "qmp migrate-set-parameters")
        << "trigger and resume alternate, at " << i;
  }
  EXPECT_NE(StatusFile().value("epoch_interval", "").find("40 ms (paused"), std::string::npos) << StatusFile().dump();
  EXPECT_DOUBLE_EQ(metrics_.Json().value("tandem_epoch_interval_seconds", 0.0), 0.040);
}

TEST_F(PrimaryRoleTest, AFixedEpochMsLeavesTheCheckpointsToQemusTimer) {
  ShutDownAfter(3);
  EXPECT_EQ(Run(), kExitOk);
  EXPECT_EQ(host_.qemu.colo_checkpoint_ms, 20);
  EXPECT_TRUE(host_.qemu.checkpoint_delays_set.empty());
  EXPECT_EQ(StatusFile().value("epoch_interval", ""), "every 20 ms");
  EXPECT_DOUBLE_EQ(metrics_.Json().value("tandem_epoch_interval_seconds", 0.0), 0.020);
}

TEST_F(PrimaryRoleTest, EveryCheckpointMarksItsOutputBoundaryWhileTheVmIsStopped) {
  options_.outputs.nic = NicOptions{"tdtap0", "", {}};
  ShutDownAfter(4);
  EXPECT_EQ(Run(), kExitOk);
  const std::vector<std::string> events = host_.qemu.Events();
  EXPECT_LT(IndexOf(events, "console:open"), IndexOf(events, "launch")) << "QEMU's chardev connects at startup";
  EXPECT_LT(IndexOf(events, "nic:open"), IndexOf(events, "launch"));
  for (const std::string channel : {"console:", "nic:"}) {
    // The precopy is epoch 0: its boundary comes before the VM first runs (CHECKPOINT_READY).
    ASSERT_LT(IndexOf(events, channel + "boundary 0"), IndexOf(events, "resume 1")) << channel;
    for (int n = 1; n <= 4; ++n) {
      const size_t boundary = IndexOf(events, channel + "boundary " + std::to_string(n));
      ASSERT_LT(boundary, events.size()) << channel << n;
      EXPECT_LT(boundary, IndexOf(events, "resume " + std::to_string(n)))
          << channel << n << ": a boundary after VMSTATE_LOADED tags the next epoch's output with this one";
      if (n > 1) {
        EXPECT_GT(boundary, IndexOf(events, "resume " + std::to_string(n - 1))) << channel << n;
      }
    }
  }
}

TEST_F(PrimaryRoleTest, OutputIsReleasedOnlyThroughEpochsTheStandbyAcknowledged) {
  ShutDownAfter(4);
  // The standby acknowledges epoch n once the VM resumed from it; checkpoint n+1 waits for the release.
  host_.qemu.on_resume_vm = [&](int n) { shipped_.Ack(uint64_t(n)); };
  host_.qemu.before_checkpoint = [&, inner = host_.qemu.before_checkpoint](int n) {
    if (n > 1) {
      EXPECT_TRUE(WaitForEvent(host_.qemu, "console:release " + std::to_string(n - 1))) << n;
    }
    return inner(n);
  };
  EXPECT_EQ(Run(), kExitOk);
  const std::vector<std::string> events = host_.qemu.Events();
  const std::vector<std::string> releases = Matching(events, "console:release");
  ASSERT_GE(releases.size(), 3u);
  EXPECT_EQ(IndexOf(events, "console:release 0"), events.size()) << "last_acked 0 is no ack";
  for (const std::string& release : releases) {
    const std::string n = release.substr(std::string("console:release ").size());
    EXPECT_GT(IndexOf(events, release), IndexOf(events, "resume " + n)) << release << " before its ack";
  }
}

TEST_F(PrimaryRoleTest, UnprotectedPrimaryReleasesAtOnceByDefault) {
  shipped_.standby_connected = false;
  ShutDownAfter(2);
  host_.qemu.before_checkpoint = [&, inner = host_.qemu.before_checkpoint](int n) {
    if (n == 2) {
      EXPECT_TRUE(WaitForEvent(host_.qemu, "console:pass on"));
    }
    return inner(n);
  };
  EXPECT_EQ(Run(), kExitOk);
  EXPECT_LT(IndexOf(host_.qemu.Events(), "console:pass on"), host_.qemu.Events().size());
}

TEST_F(PrimaryRoleTest, UnprotectedPrimaryHoldsWhenConfiguredTo) {
  options_.outputs.release_when_unprotected = false;
  shipped_.standby_connected = false;
  ShutDownAfter(2);
  host_.qemu.before_checkpoint = [&, inner = host_.qemu.before_checkpoint](int n) {
    if (n == 2) std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the follower looks many times
    return inner(n);
  };
  EXPECT_EQ(Run(), kExitOk);
  EXPECT_TRUE(Matching(host_.qemu.Events(), "console:pass").empty());
}

TEST_F(PrimaryRoleTest, ConsoleThatCannotListenFailsBeforeQemuStarts) {
  host_.qemu.console_error = Status::IoError("bind console.sock: Address in use");
  EXPECT_EQ(Run(), kExitFailed);
  EXPECT_FALSE(host_.qemu.launched);
  EXPECT_NE(StatusFile().value("error", "").find("console.sock"), std::string::npos) << StatusFile().dump();
}

TEST_F(PrimaryRoleTest, EpochsCsvHasOneLinePerCheckpointWithItsPause) {
  ShutDownAfter(3);
  EXPECT_EQ(Run(), kExitOk);
  std::istringstream csv(qemu::testing::ReadFileOrEmpty(dir_ / "epochs.csv"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(csv, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "epoch,pages,page_bytes,device_bytes,pause_us");
  EXPECT_EQ(lines[1], "1,1,4096,1,2000");
  EXPECT_EQ(lines[3], "3,1,4096,1,2000");
}

TEST_F(PrimaryRoleTest, MetricsCountEveryCheckpointAndItsPause) {
  ShutDownAfter(3);
  EXPECT_EQ(Run(), kExitOk);
  const nlohmann::json m = metrics_.Json();
  EXPECT_EQ(m.value("tandem_role{role=\"primary\"}", -1.0), 1) << m.dump(2);
  EXPECT_EQ(m.value("tandem_role{role=\"standby\"}", -1.0), 0) << m.dump(2);
  EXPECT_EQ(m.value("tandem_term", -1.0), 7) << m.dump(2);
  EXPECT_EQ(m.value("tandem_epochs_total", -1.0), 3) << m.dump(2);
  EXPECT_EQ(m.value("tandem_epoch", -1.0), 3) << m.dump(2);
  EXPECT_EQ(m.value("tandem_checkpoint_pause_seconds_count", -1.0), 3) << m.dump(2);
  EXPECT_NEAR(m.value("tandem_checkpoint_pause_seconds_sum", -1.0), 0.006, 1e-9) << "2 ms each" << m.dump(2);
  const std::string text = metrics_.registry().Render();
  EXPECT_NE(text.find("tandem_checkpoint_pause_seconds_bucket{le=\"0.002\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_heartbeat_rtt_seconds{local=\"127.0.0.1:7101\",peer=\"127.0.0.1:7201\"}"),
            std::string::npos)
      << text;
}

TEST_F(PrimaryRoleTest, FenceHoldsTheVmInsideTheCheckpointPause) {
  ShutDownAfter(4);
  int resumed_while_fenced = 0;
  nlohmann::json status_while_fenced;
  std::thread unfence;
  host_.qemu.before_checkpoint = [&, inner = host_.qemu.before_checkpoint](int n) {
    if (n == 3) {
      guard_.SetRunnable(false);
      unfence = std::thread([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        status_while_fenced = StatusFile();
        guard_.SetRunnable(true);
      });
    }
    return inner(n);
  };
  host_.qemu.on_resume_vm = [&](int) { resumed_while_fenced += guard_.runnable() ? 0 : 1; };
  EXPECT_EQ(Run(), kExitOk);
  unfence.join();
  EXPECT_EQ(resumed_while_fenced, 0) << "VMSTATE_LOADED sent while fenced: the VM ran without the right to";
  EXPECT_EQ(host_.qemu.resumed, 4) << "checkpoint 3 resumes once the fence is lifted";
  EXPECT_EQ(status_while_fenced.value("state", ""), "fenced");
  EXPECT_EQ(status_while_fenced.value("epoch", 0), 3);
}

TEST_F(PrimaryRoleTest, SupersededKillsTheVmAndExitsThree) {
  host_.qemu.checkpoints = 5;
  host_.qemu.before_checkpoint = [&](int n) {
    if (n == 3) guard_.Supersede();
    return Status::Ok();
  };
  host_.qemu.on_resume_vm = [&](int n) { shipped_.Ack(uint64_t(n)); };
  EXPECT_EQ(Run(), kExitSuperseded);
  EXPECT_EQ(host_.qemu.resumed, 2) << "a superseded primary must not resume the VM again";
  const std::vector<std::string> events = host_.qemu.Events();
  const size_t drop = IndexOf(events, "console:drop");
  ASSERT_LT(drop, events.size()) << "a superseded primary's held output must never leave";
  EXPECT_TRUE(Matching(std::vector<std::string>(events.begin() + drop, events.end()), "console:release").empty());
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL));
  EXPECT_EQ(StatusFile().value("state", ""), "superseded");
}

TEST_F(PrimaryRoleTest, BrokenCheckpointStreamReportsFailedAndTearsDown) {
  host_.qemu.checkpoints = 5;
  host_.qemu.before_checkpoint = [](int n) { return n == 3 ? Status::IoError("connection reset") : Status::Ok(); };
  EXPECT_EQ(Run(), kExitFailed);
  const nlohmann::json status = StatusFile();
  EXPECT_EQ(status.value("state", ""), "failed");
  EXPECT_NE(status.value("error", "").find("connection reset"), std::string::npos) << status.dump();
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL));
  EXPECT_TRUE(shipped_.destroyed);
  EXPECT_EQ(guard_.attached(), nullptr);
}

TEST_F(PrimaryRoleTest, WithoutTheRightToRunQemuIsNeverStarted) {
  guard_.NeverRunnable();
  EXPECT_EQ(Run(), kExitFailed);
  EXPECT_FALSE(host_.qemu.launched);
  const nlohmann::json status = StatusFile();
  EXPECT_EQ(status.value("state", ""), "failed");
  EXPECT_EQ(status.value("error", ""), "no right to run the VM: no lease");
}

TEST_F(PrimaryRoleTest, QemuThatCannotStartReportsFailed) {
  host_.qemu.launch_error = Status::NotFound("qemu-system-x86_64");
  EXPECT_EQ(Run(), kExitFailed);
  EXPECT_EQ(StatusFile().value("state", ""), "failed");
  EXPECT_FALSE(shipped_.started);
}


bool StartsWith(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

TEST_F(PrimaryRoleTest, ReadyIsSentOnceWhenTheVmRunsWithItsShipperStarted) {
  ShutDownAfter(5);
  host_.qemu.before_checkpoint = [&, inner = host_.qemu.before_checkpoint](int n) {
    if (n == 1) {
      EXPECT_EQ(notifier_.ready(), 1) << "READY before the first checkpoint: the VM runs, the shipper is started";
      EXPECT_TRUE(shipped_.started);
    }
    return inner(n);
  };
  EXPECT_EQ(Run(), kExitOk);
  EXPECT_EQ(notifier_.ready(), 1);
  const std::vector<std::string> events = notifier_.events();
  ASSERT_GE(events.size(), 2u);
  EXPECT_TRUE(StartsWith(events[0], "STATUS=protected")) << events[0];
  EXPECT_NE(events[0].find("term 7"), std::string::npos) << events[0];
  EXPECT_EQ(events[1], "READY") << "systemctl shows the state as soon as the start completes";
}

TEST_F(PrimaryRoleTest, RoleThatNeverCameUpIsNeverReady) {
  host_.qemu.launch_error = Status::IoError("no qemu-system-x86_64");
  EXPECT_EQ(Run(), kExitFailed);
  guard_.NeverRunnable();
  EXPECT_EQ(Run(), kExitFailed);
  EXPECT_EQ(notifier_.ready(), 0);
}

TEST_F(PrimaryRoleTest, UnprotectedPrimaryIsReadyAndSaysItIsUnprotected) {
  shipped_.standby_connected = false;
  ShutDownAfter(1);
  EXPECT_EQ(Run(), kExitOk);
  EXPECT_EQ(notifier_.ready(), 1) << "no standby is no reason to hold the VM: it runs, explicitly unprotected";
  ASSERT_FALSE(notifier_.statuses().empty());
  EXPECT_TRUE(StartsWith(notifier_.statuses()[0], "UNPROTECTED")) << notifier_.statuses()[0];
}

TEST_F(PrimaryRoleTest, WatchdogIsFedFromEveryTurnOfTheCheckpointLoop) {
  ShutDownAfter(6);
  std::vector<int> fed_before;
  host_.qemu.before_checkpoint = [&, inner = host_.qemu.before_checkpoint](int n) {
    fed_before.push_back(notifier_.watchdogs());
    return inner(n);
  };
  EXPECT_EQ(Run(), kExitOk);
  ASSERT_EQ(fed_before.size(), 7u);
  for (size_t i = 0; i < fed_before.size(); ++i) {
    EXPECT_EQ(fed_before[i], int(i) + 1) << "checkpoint " << i + 1 << ": one feed per turn of the loop";
  }
}

TEST_F(PrimaryRoleTest, StandbyLossIsOneStatusChangeFromProtectedToUnprotected) {
  ShutDownAfter(8);
  host_.qemu.before_checkpoint = [&, inner = host_.qemu.before_checkpoint](int n) {
    if (n == 4) {
      std::lock_guard<std::mutex> lock(shipped_.mu);
      shipped_.standby_connected = false;
    }
    if (n >= 4) clock_.Advance(300'000'000);  // past the 250 ms between state checks
    return inner(n);
  };
  EXPECT_EQ(Run(), kExitOk);
  std::vector<std::string> states;
  for (const std::string& status : notifier_.statuses()) {
    const std::string state = status.substr(0, status.find(" ("));
    if (states.empty() || states.back() != state) states.push_back(state);
  }
  EXPECT_EQ(states, (std::vector<std::string>{"protected: the standby holds a copy",
                                              "UNPROTECTED: no standby holds a copy"}));
}

TEST_F(PrimaryRoleTest, FencedPrimaryFeedsTheWatchdogAndSaysItIsFenced) {
  ShutDownAfter(3);
  std::thread unfence;
  host_.qemu.before_checkpoint = [&, inner = host_.qemu.before_checkpoint](int n) {
    if (n == 2) {
      guard_.SetRunnable(false);
      unfence = std::thread([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(700));
        guard_.SetRunnable(true);
      });
    }
    return inner(n);
  };
  EXPECT_EQ(Run(), kExitOk);
  unfence.join();
  EXPECT_GE(notifier_.watchdogs(), 3 + 2) << "a fenced loop still turns every 200 ms";
  std::vector<std::string> fenced;
  for (const std::string& status : notifier_.statuses()) {
    if (StartsWith(status, "FENCED")) fenced.push_back(status);
  }
  EXPECT_FALSE(fenced.empty());
  ASSERT_FALSE(notifier_.statuses().empty());
  EXPECT_TRUE(StartsWith(notifier_.statuses().back(), "protected")) << "unfenced: back to protected at once";
}

// Checkpoints every 2 ms of real time, for up to 10 s: a client has time to ask between two.
void PacedCheckpoints(testing::FakeQemu* qemu) {
  qemu->checkpoints = 5000;
  qemu->before_checkpoint = [](int) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return Status::Ok();
  };
}

// `tandem switchover` on a thread: waits for the role's control socket, asks, returns the answer.
std::thread AskForSwitchover(const std::string& state_dir, std::string* answer, Shutdown* shutdown_after = nullptr) {
  return std::thread([state_dir, answer, shutdown_after] {
    for (int i = 0; i < 500 && access(ControlSocketIn(state_dir).c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    auto asked = AskRole(ControlSocketIn(state_dir), "switchover", 10000);
    *answer = asked.ok() ? *asked : asked.status().ToString();
    if (shutdown_after) shutdown_after->Request();
  });
}

TEST_F(PrimaryRoleTest, SwitchoverHandsTheVmOverPausedAtACheckpointTheStandbyHolds) {
  PacedCheckpoints(&host_.qemu);
  shipped_.ack_on_submit = true;
  std::string answer;
  std::thread client = AskForSwitchover(dir_.path(), &answer);
  EXPECT_EQ(Run(), kExitSwitchedOver);
  client.join();
  const nlohmann::json status = StatusFile();
  ASSERT_EQ(status.value("state", ""), "switched over") << status.dump();
  const int final_epoch = status.value("final_epoch", 0);
  ASSERT_GE(final_epoch, 1);
  EXPECT_EQ(answer.rfind("ok: the standby holds epoch " + std::to_string(final_epoch) + " of VM vm7", 0), 0u) << answer;
  EXPECT_EQ(host_.qemu.resumed, final_epoch - 1) << "the VM must never run again after the final epoch";
  EXPECT_TRUE(host_.qemu.Killed(SIGKILL));
}

TEST_F(PrimaryRoleTest, SwitchoverWithoutAStandbyIsRefusedAndTheVmKeepsRunning) {
  PacedCheckpoints(&host_.qemu);
  shipped_.standby_connected = false;
  std::string answer;
  std::thread client = AskForSwitchover(dir_.path(), &answer, &shutdown_);
  EXPECT_EQ(Run(), kExitOk);
  client.join();
  EXPECT_EQ(answer.rfind("refused: no standby holds a copy of VM vm7", 0), 0u) << answer;
  EXPECT_EQ(host_.qemu.resumed, host_.qemu.handed_out) << "refused: the VM resumes at that checkpoint";
}

TEST_F(PrimaryRoleTest, SwitchoverTheStandbyDoesNotAcknowledgeIsRefusedAndTheVmResumes) {
  PacedCheckpoints(&host_.qemu);
  std::string answer;
  std::thread client = AskForSwitchover(dir_.path(), &answer, &shutdown_);
  EXPECT_EQ(Run(), kExitOk);
  client.join();
  EXPECT_NE(answer.find("refused: the standby did not acknowledge epoch"), std::string::npos) << answer;
  EXPECT_EQ(host_.qemu.resumed, host_.qemu.handed_out);
}

TEST_F(PrimaryRoleTest, SwitchoverWaitingWhenTheRoleEndsIsRefusedAsItEnds) {
  host_.qemu.checkpoints = 1;  // then QEMU goes quiet: the request waits for a checkpoint that never comes
  std::string answer;
  std::thread client = AskForSwitchover(dir_.path(), &answer);
  std::thread stopper([&] {
    for (int i = 0; i < 500 && access(ControlSocketIn(dir_.path()).c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the request is in
    shutdown_.Request();
  });
  EXPECT_EQ(Run(), kExitOk);
  stopper.join();
  client.join();
  EXPECT_EQ(answer, "refused: the primary role of VM vm7 is ending");
}

TEST_F(PrimaryRoleTest, ControlSocketAnswersAnUnknownRequestWithWhatItKnows) {
  PacedCheckpoints(&host_.qemu);
  std::string answer;
  std::thread client([&] {
    for (int i = 0; i < 500 && access(ControlSocketIn(dir_.path()).c_str(), F_OK) != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    auto asked = AskRole(ControlSocketIn(dir_.path()), "reboot", 5000);
    answer = asked.ok() ? *asked : asked.status().ToString();
    shutdown_.Request();
  });
  EXPECT_EQ(Run(), kExitOk);
  client.join();
  EXPECT_EQ(answer, "error: unknown request 'reboot' (known: switchover)");
}

}  // namespace
}  // namespace tandem::roles
