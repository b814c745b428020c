#include "roles/primary.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <optional>

#include "common/log.h"
#include "metrics/server.h"
#include "roles/control.h"
#include "roles/disk.h"
#include "roles/epoch_interval.h"
#include "roles/guard.h"
#include "roles/libvirt_host.h"
#include "roles/outputs.h"
#include "roles/pause_stats.h"
#include "roles/qemu_host.h"
#include "roles/service_status.h"
#include "roles/status_file.h"
#include "roles/standby.h"
#include "roles/vm_monitor.h"

namespace tandem::roles {
namespace {

// One run of the role. Everything it starts is a member, so every way out tears down the same way (~PrimaryRun).
class PrimaryRun {
 public:
  // `running`: the VM this host already runs (re-protection), or empty to start QEMU.
  PrimaryRun(const PrimaryOptions& options, const PrimaryEnv& env, RunningVm running = {})
      : o_(options),
        env_(env),
        service_(env.notifier, env.clock, options.vm_name),
        own_metrics_(env.metrics ? std::vector<heartbeat::LinkConfig>() : options.heartbeat.links),
        metrics_(env.metrics ? env.metrics : &own_metrics_),
        vm_(running.vm),
        outputs_(running.outputs),
        adopted_(running.vm != nullptr) {
    if (o_.adaptive_epoch) pacer_.emplace(*o_.adaptive_epoch, env.clock);
    metrics_->SetRole(/*primary=*/true);
    metrics_->registry().OnCollect([this] { CollectMetrics(); });
  }
  ~PrimaryRun() {
    // A switchover request waiting for a checkpoint that will not come is answered now (the control thread
    // is joined as control_ goes).
    if (SwitchoverRequested()) AnswerSwitchover("refused: the primary role of VM " + o_.vm_name + " is ending");
    metrics_->registry().OnCollect(nullptr);  // a scrape must not reach for what is going
    env_.guard->AttachVm(nullptr);  // the guard thread must not reach for a QEMU that is going
    if (outputs_) outputs_->StopFollowing();  // it reads the shipper, which goes first
    if (owned_vm_) owned_vm_->Kill(SIGKILL);
    if (adopted_ && colo_started_ && failed_ && vm_->Running()) LeaveColo();
  }
  int Run();

 private:
  int Fail(const char* what, const Status& st);
  Status Protect();  // QEMU, precopy, shipper, CHECKPOINT_READY
  int CheckpointLoop();
  // STATUS= (and a log line when it changed): superseded, fenced, protected or UNPROTECTED, with term and epoch.
  void ReportState(uint64_t epoch, bool fenced);
  nlohmann::json StatusJson(uint64_t epoch, double last_pause_ms) const;
  void PublishStatus(uint64_t epoch, double last_pause_ms) const {
    WriteStatusFile(o_.state_dir, StatusJson(epoch, last_pause_ms)).ok();
  }
  // On the metrics endpoint's thread at every scrape (and at every status file): the figures as of now.
  void CollectMetrics();

  const PrimaryOptions& o_;
  const PrimaryEnv& env_;
  const char* failed_step_ = "";
  ServiceStatus service_;
  RoleMetrics own_metrics_;
  RoleMetrics* metrics_;
  std::atomic<EpochShipping*> shipper_for_metrics_{nullptr};
  std::unique_ptr<CheckpointSource> checkpoints_;
  std::unique_ptr<PrimaryDisk> disk_;  // before vm_: QEMU is killed first, then held writes are failed
  std::atomic<Vm*> vm_for_disk_{nullptr};  // for the disk's early checkpoint request (NBD thread)
  std::unique_ptr<Vm> owned_vm_;
  Vm* vm_ = nullptr;  // owned_vm_, or the VM this host already ran
  std::optional<Shutdown::Hook> stop_vm_on_shutdown_;
  std::unique_ptr<VmMonitor> monitor_;
  std::unique_ptr<EpochShipping> shipper_;
  std::unique_ptr<GuestOutputs> owned_outputs_;
  GuestOutputs* outputs_ = nullptr;  // owned_outputs_, or the running VM's; stops following before shipper_ goes
  const bool adopted_;
  std::optional<CheckpointPacer> pacer_;  // epoch_ms = "auto"
  // What QEMU's x-checkpoint-delay is set to, and the longest an epoch can last.
  int QemuCheckpointDelayMs() const { return pacer_ ? pacer_->qemu_delay_ms() : o_.epoch_ms; }
  int LongestEpochMs() const { return pacer_ ? o_.adaptive_epoch->max_ms : o_.epoch_ms; }
  std::string DescribeInterval() const {
    return pacer_ ? "at " + pacer_->Describe() + " (epoch_ms = auto)" : "every " + std::to_string(o_.epoch_ms) + " ms";
  }
  bool colo_started_ = false;
  bool failed_ = false;

  // `tandem switchover` (control.h): asked on the control thread, carried out by the checkpoint loop at the
  // next checkpoint, while the VM is paused for it.
  std::string OnControlRequest(const std::string& request);
  bool SwitchoverRequested();
  void AnswerSwitchover(const std::string& answer);
  // At checkpoint `number` (submitted, VM paused): hands over once the standby acknowledged it (kExitSwitchedOver),
  // or refuses and returns -1 (the VM resumes here).
  int TrySwitchover(uint64_t number);
  std::mutex switchover_mu_;
  std::condition_variable switchover_cv_;
  bool switchover_requested_ = false;
  std::optional<std::string> switchover_answer_;
  std::unique_ptr<ControlServer> control_;  // last: stops (and answers nobody) before the rest goes

  // A VM this role did not start outlives it: when its checkpoint stream ended early, QEMU's COLO is told the
  // replication is gone so that the VM goes on unprotected instead of waiting in a checkpoint for ever.
  void LeaveColo();
};

void PrimaryRun::LeaveColo() {
  auto left = vm_->Execute("x-colo-lost-heartbeat", nlohmann::json::object(), 2000);
  TLOG_WARN("main", "re-protection of VM %s ended: COLO left (%s), the VM runs UNPROTECTED", o_.vm_name.c_str(),
            left.ok() ? "x-colo-lost-heartbeat ok" : left.status().ToString().c_str());
}

int PrimaryRun::Fail(const char* what, const Status& st) {
  failed_ = true;
  ReportFailure(o_.state_dir, adopted_ ? "re-protection" : "primary", what, st);
  return kExitFailed;
}

int PrimaryRun::Run() {
  RunGuard& guard = *env_.guard;
  // The VM must not run anywhere before this host holds the primary role (a lease and a term from the witness,
  // or the two-host policy): QEMU is started only once the guard says so.
  if (!guard.WaitRunnable(30000)) {
    const nlohmann::json why = guard.StatusJson();
    TLOG_ERROR("guard", "not allowed to run VM %s: %s", o_.vm_name.c_str(), why.dump().c_str());
    WriteStatusFile(o_.state_dir, {{"role", "primary"}, {"state", "failed"}, {"guard", why},
                                   {"error", "no right to run the VM: " + why.value("reason", std::string())}})
        .ok();
    return kExitFailed;
  }
  metrics_->SetTerm(guard.term());
  if (Status st = Protect(); !st.ok()) return Fail(failed_step_, st);
  ReportState(0, /*fenced=*/false);
  PublishStatus(0, 0);
  auto control = ControlServer::Start(ControlSocketIn(o_.state_dir),
                                      [this](const std::string& request) { return OnControlRequest(request); });
  if (!control.ok()) return Fail("control socket", control.status());
  control_ = std::move(control).value();
  service_.Ready();
  return CheckpointLoop();
}

Status PrimaryRun::Protect() {
  const std::string colo_socket = o_.state_dir + "/colo.sock";
  failed_step_ = "COLO socket";
  TANDEM_ASSIGN_OR_RETURN(checkpoints_, env_.host->ListenForCheckpoints(colo_socket));
  // Output commit (output-commit/README.md): the console listens before QEMU connects to it at startup.
  if (!adopted_) {
    failed_step_ = "guest outputs";
    TANDEM_ASSIGN_OR_RETURN(owned_outputs_, OpenGuestOutputs(o_, env_.host, /*with_nic=*/true));
    outputs_ = owned_outputs_.get();
  }
  if (o_.disk && !adopted_) {  // LoadConfig refuses re-protection with a disk
    // Served before QEMU starts (its -blockdev connects at startup). A full open epoch asks QEMU for an early
    // checkpoint (QEMU 7.2 checkpoints at once when x-checkpoint-delay is set while in COLO) instead of letting
    // the guest's I/O wait for the next one.
    failed_step_ = "disk";
    TANDEM_ASSIGN_OR_RETURN(disk_, PrimaryDisk::Start(*o_.disk, DiskSocketIn(o_.state_dir), o_.vm_name, [this] {
      if (pacer_) {
        pacer_->RequestEarly();  // epoch_ms = "auto": the pacer starts every checkpoint (epoch_interval.h)
        TLOG_INFO("disk", "open epoch full (%" PRIu64 " MiB of writes): early checkpoint requested",
                  o_.disk->max_epoch_bytes >> 20);
      } else if (Vm* vm = vm_for_disk_.load(); vm != nullptr) {
        auto asked = vm->Execute("migrate-set-parameters", {{"x-checkpoint-delay", o_.epoch_ms}});
        TLOG_INFO("disk", "open epoch full (%" PRIu64 " MiB of writes): early checkpoint %s", o_.disk->max_epoch_bytes >> 20,
                  asked.ok() ? "requested" : asked.status().ToString().c_str());
      }
    }));
    checkpoints_->OnCheckpointRequest([disk = disk_.get()] { disk->CheckpointRequested(); });
  }
  if (!adopted_) {
    failed_step_ = "primary QEMU";
    TANDEM_ASSIGN_OR_RETURN(owned_vm_, env_.host->Launch(o_.vm, qemu::QemuRole::kPrimary, o_.state_dir));
    vm_ = owned_vm_.get();
    vm_for_disk_ = vm_;
    // A blocked checkpoint read ends when QEMU does.
    stop_vm_on_shutdown_.emplace(env_.shutdown, [vm = vm_] { vm->Kill(SIGTERM); });
  }

  // Initial full copy: QEMU's precopy goes straight into the RAM that seeds every standby (a running VM's is
  // live: it keeps running while QEMU copies it, and QEMU pauses it for the last pass).
  const int64_t precopy_start = env_.clock->NowNanos();
  failed_step_ = "start COLO";
  TANDEM_RETURN_IF_ERROR(vm_->StartColoMigration(colo_socket, QemuCheckpointDelayMs()));
  colo_started_ = true;
  env_.guard->AttachVm(vm_);
  monitor_ = std::make_unique<VmMonitor>(vm_, o_.reset_guest_on_crash);
  failed_step_ = "QEMU did not connect";
  TANDEM_RETURN_IF_ERROR(checkpoints_->Accept(10000));
  failed_step_ = "precopy";
  // Into GuestRam: the main RAM block is QEMU's own file (no copy of it), the small blocks are copied.
  TANDEM_ASSIGN_OR_RETURN(qemu::Precopy precopy,
                          checkpoints_->ReceivePrecopy({{qemu::kMainRamBlock, o_.vm.ram_path}}));
  precopy.descriptor.vm_name = o_.vm_name;
  uint64_t ram_bytes = 0;
  for (const auto& block : precopy.descriptor.ram_blocks) ram_bytes += block.size_bytes;
  TLOG_INFO("colo", "precopy complete: %zu RAM blocks, %" PRIu64 " MiB, device state %zu bytes, %.1f ms",
            precopy.descriptor.ram_blocks.size(), ram_bytes >> 20, precopy.device_state.size(),
            (env_.clock->NowNanos() - precopy_start) / 1e6);

  // The VM stays stopped until CHECKPOINT_READY: what it wrote so far belongs to the precopy, epoch 0.
  outputs_->OnEpochBoundary(0);
  failed_step_ = "start shipper";
  shipper_ = env_.make_shipper(env_.guard->term(), disk_ ? disk_->image() : nullptr);
  TANDEM_RETURN_IF_ERROR(
      shipper_->Start(precopy.descriptor, std::move(precopy.ram), std::move(precopy.device_state)));
  shipper_for_metrics_ = shipper_.get();
  outputs_->Follow([shipper = shipper_.get()] { return shipper->stats(); }, 1);
  failed_step_ = "CHECKPOINT_READY";
  TANDEM_RETURN_IF_ERROR(checkpoints_->SendCheckpointReady());
  if (pacer_) pacer_->Started();
  metrics_->SetEpochInterval(pacer_ ? pacer_->interval_ms() : o_.epoch_ms);
  TLOG_INFO("main", "VM %s protected: checkpoint %s to standby %s", o_.vm_name.c_str(), DescribeInterval().c_str(),
            o_.ship.standby_address.c_str());
  return Status::Ok();
}

int PrimaryRun::CheckpointLoop() {
  RunGuard& guard = *env_.guard;
  Clock* clock = env_.clock;
  EpochCsv csv(o_.state_dir + "/epochs.csv");
  PauseWindow window;
  int64_t window_start = clock->NowNanos();
  int64_t next_monitor_ns = 0;
  for (uint64_t number = 1;; ++number) {
    // Fed by this loop itself: a checkpoint loop stuck anywhere (QEMU's stream, the shipper, the guard) stops
    // feeding it and systemd kills the role, whose heartbeats would otherwise keep the standby from taking over.
    service_.Watchdog();
    if (pacer_) {
      Status triggered = pacer_->WaitAndTrigger(
          [&] {
            service_.Watchdog();
            return env_.shutdown->Requested();
          },
          [&](int delay_ms) {
            return vm_->Execute("migrate-set-parameters", {{"x-checkpoint-delay", delay_ms}}).status();
          });
      // QEMU's backstop timer still checkpoints; a QEMU that is gone shows in ReceiveCheckpoint.
      if (!triggered.ok()) TLOG_WARN("epoch", "checkpoint %" PRIu64 " not triggered: %s", number, triggered.ToString().c_str());
    }
    std::unique_ptr<replicator::Epoch> epoch = shipper_->Borrow();
    epoch->Reset(number, /*full=*/false);
    qemu::CheckpointTiming timing;
    // Ten epochs' time (epoch_ms = "auto": of the interval the checkpoint was just asked at).
    const int checkpoint_timeout_ms = std::max(5000, (pacer_ ? pacer_->interval_ms() : o_.epoch_ms) * 10);
    if (Status st = checkpoints_->ReceiveCheckpoint(epoch.get(), checkpoint_timeout_ms, &timing); !st.ok()) {
      if (env_.shutdown->Requested()) return kExitOk;
      return Fail(vm_->Running() ? "checkpoint stream broke" : "primary QEMU exited", st);
    }
    // The VM is stopped for checkpoint `number` until ResumeVm: the output boundary goes here, never later, and
    // so does the disk's: every write the guest was told completed is in this epoch or an earlier one
    // (disk/README.md, claim A).
    outputs_->OnEpochBoundary(number);
    if (disk_) {
      if (Status st = disk_->CloseEpoch(number, &epoch->disk_writes()); !st.ok()) return Fail("disk epoch", st);
    }
    const uint64_t pages = epoch->pages().size(), page_bytes = epoch->page_bytes();
    const size_t device_bytes = epoch->device_state().size();
    // Submit blocks only when the standby is max_in_flight epochs behind: the VM then stays paused, which is
    // the backpressure that keeps a slow standby from falling further behind.
    shipper_->Submit(std::move(epoch));
    // A fenced primary keeps the VM inside COLO's own pause: QEMU resumes it only after VMSTATE_LOADED.
    bool fenced = false;
    while (!guard.WaitRunnable(200)) {
      if (guard.superseded() || env_.shutdown->Requested()) break;
      fenced = true;
      service_.Watchdog();
      ReportState(number, fenced);
      monitor_->Poll();
      PublishStatus(number, 0);
    }
    if (guard.superseded()) {
      outputs_->DropUnreleased();  // the new primary's output is the world's now
      ReportState(number, false);
      PublishStatus(number, 0);
      TLOG_ERROR("main", "superseded: killing this host's copy of VM %s (it must never run again here)",
                 o_.vm_name.c_str());
      return kExitSuperseded;
    }
    if (env_.shutdown->Requested()) return kExitOk;
    if (SwitchoverRequested()) {
      if (const int handed_over = TrySwitchover(number); handed_over >= 0) return handed_over;
    }
    if (Status resumed = checkpoints_->ResumeVm(); !resumed.ok()) return Fail("VMSTATE_LOADED", resumed);
    const int64_t pause_ns = clock->NowNanos() - timing.request_ns;
    guard.SetLastEpoch(number);
    metrics_->OnCheckpoint(number, pause_ns);
    window.Add(pages, page_bytes + device_bytes, pause_ns);
    if (pacer_ && !fenced) {  // a fenced wait is not what a checkpoint costs
      const replicator::ShipperStats ship = shipper_->stats();
      const double wire_ratio = ship.raw_bytes_sent > 0 ? double(ship.bytes_sent) / double(ship.raw_bytes_sent) : 1.0;
      const bool changed = pacer_->Observe(pause_ns, page_bytes + device_bytes, wire_ratio, ship.link_bytes_per_s);
      metrics_->SetEpochInterval(pacer_->interval_ms());
      if (changed) {
        TLOG_INFO("epoch", "epoch interval now %s", pacer_->Describe().c_str());
        PublishStatus(number, pause_ns / 1e6);
      }
    }
    TLOG_DEBUG("epoch", "epoch %" PRIu64 " pages=%" PRIu64 " bytes=%" PRIu64 " device=%zu pause_ms=%.2f", number,
               pages, page_bytes, device_bytes, pause_ns / 1e6);
    csv.Add(number, pages, page_bytes, device_bytes, pause_ns);
    const int64_t now = clock->NowNanos();
    if (now >= next_monitor_ns || fenced) {
      monitor_->Poll();
      ReportState(number, false);
      next_monitor_ns = now + 250'000'000;
    }
    if (now - window_start >= 1'000'000'000) {
      const replicator::ShipperStats ship = shipper_->stats();
      TLOG_INFO("epoch",
                "epochs %" PRIu64 "..%" PRIu64 ": pause avg %.2f ms max %.2f ms, %.0f KiB/epoch, acked %" PRIu64 "%s",
                number - window.epochs + 1, number, window.average_ms(), window.max_ns / 1e6, window.kib_per_epoch(),
                ship.last_acked, ship.standby_connected ? "" : " [UNPROTECTED: no standby]");
      PublishStatus(number, pause_ns / 1e6);
      csv.Flush();
      window = PauseWindow();
      window_start = now;
    }
  }
}

std::string PrimaryRun::OnControlRequest(const std::string& request) {
  if (request != "switchover") return "error: unknown request '" + request + "' (known: switchover)";
  std::unique_lock<std::mutex> lock(switchover_mu_);
  if (switchover_requested_) return "refused: a switchover is already under way";
  switchover_requested_ = true;
  switchover_answer_.reset();
  // Answered at the next checkpoint; bounded in case the checkpoint loop is stuck (then the watchdog acts).
  const int wait_ms = 2 * LongestEpochMs() + 2 * std::max(2000, o_.ship.io_timeout_ms);
  if (!switchover_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [&] { return switchover_answer_.has_value(); })) {
    switchover_requested_ = false;
    return "refused: no checkpoint came within " + std::to_string(wait_ms) + " ms";
  }
  switchover_requested_ = false;
  return *switchover_answer_;
}

bool PrimaryRun::SwitchoverRequested() {
  std::lock_guard<std::mutex> lock(switchover_mu_);
  return switchover_requested_ && !switchover_answer_;
}

void PrimaryRun::AnswerSwitchover(const std::string& answer) {
  std::lock_guard<std::mutex> lock(switchover_mu_);
  switchover_answer_ = answer;
  switchover_cv_.notify_all();
}

int PrimaryRun::TrySwitchover(uint64_t number) {
  // The VM is paused for checkpoint `number` and stays so: once the standby holds this epoch, nothing the VM did
  // is missing there, and it never runs here again (QEMU is killed as the role ends, before its heartbeats stop,
  // so the standby's promotion can never overlap a VM running here).
  // A standby still settling its resync holds this epoch as a resume point once it acknowledges it.
  if (const replicator::ShipperStats ship = shipper_->stats(); !ship.standby_connected && !ship.standby_link_up) {
    AnswerSwitchover("refused: no standby holds a copy of VM " + o_.vm_name + ": it keeps running here");
    return -1;
  }
  const int timeout_ms = std::max(2000, o_.ship.io_timeout_ms);
  const int64_t deadline = env_.clock->NowNanos() + int64_t(timeout_ms) * 1'000'000;
  // Protected as of `number`: acknowledged, and (a resync settled by then) a resume point there.
  for (replicator::ShipperStats ship = shipper_->stats(); ship.last_acked < number || !ship.standby_connected;
       ship = shipper_->stats()) {
    if (env_.clock->NowNanos() >= deadline || env_.shutdown->Requested() || env_.guard->superseded()) {
      AnswerSwitchover("refused: the standby did not acknowledge epoch " + std::to_string(number) + " within " +
                       std::to_string(timeout_ms) + " ms: VM " + o_.vm_name + " keeps running here");
      return -1;
    }
    service_.Watchdog();
    env_.clock->SleepNanos(1'000'000);
  }
  outputs_->OnShipperStats(shipper_->stats());  // release what epoch `number` wrote, before the VM goes
  char answer[200];
  snprintf(answer, sizeof(answer),
           "ok: the standby holds epoch %" PRIu64 " of VM %s and resumes it from there; this host stops running it",
           number, o_.vm_name.c_str());
  TLOG_WARN("main", "switchover: %s", answer);
  service_.Set(LogLevel::kWarn, "SWITCHED OVER: the standby runs the VM from the final epoch",
               "term " + std::to_string(env_.guard->term()) + ", final epoch " + std::to_string(number));
  WriteStatusFile(o_.state_dir, {{"role", "primary"}, {"state", "switched over"}, {"vm", o_.vm_name},
                                 {"final_epoch", number}, {"term", env_.guard->term()}})
      .ok();
  AnswerSwitchover(answer);
  return kExitSwitchedOver;
}

void PrimaryRun::ReportState(uint64_t epoch, bool fenced) {
  const replicator::ShipperStats ship = shipper_->stats();
  char progress[160];
  snprintf(progress, sizeof(progress), "term %" PRIu64 ", epoch %" PRIu64 ", acked %" PRIu64, env_.guard->term(), epoch,
           ship.last_acked);
  if (env_.guard->superseded()) {
    service_.Set(LogLevel::kError, "SUPERSEDED: a newer term runs the VM elsewhere, this copy is killed", progress);
  } else if (fenced) {
    service_.Set(LogLevel::kWarn, "FENCED: VM paused, this host has no right to run it now", progress);
  } else if (ship.standby_connected) {
    service_.Set(LogLevel::kInfo, "protected: the standby holds a copy", progress);
  } else {
    service_.Set(LogLevel::kWarn, "UNPROTECTED: no standby holds a copy", progress);
  }
}

nlohmann::json PrimaryRun::StatusJson(uint64_t epoch, double last_pause_ms) const {
  const nlohmann::json guard_status = env_.guard->StatusJson();
  const replicator::ShipperStats ship = shipper_->stats();
  const heartbeat::PeerStatus peer = env_.guard->peer();
  return {{"role", "primary"},
          {"state", guard_status["state"]},
          {"vm", o_.vm_name},
          {"pid", int(getpid())},
          {"qemu_pid", int(vm_->pid())},
          {"term", guard_status["term"]},
          {"guard", guard_status},
          {"vm_liveness", monitor_->StatusJson()},
          {"epoch", epoch},
          {"last_pause_ms", last_pause_ms},
          {"epoch_interval", DescribeInterval()},
          {"protected", ship.standby_connected},
          {"standby", {{"connected", ship.standby_connected},
                       {"last_acked", ship.last_acked},
                       {"epochs_sent", ship.epochs_sent},
                       {"bytes_sent", ship.bytes_sent},
                       {"resyncs", ship.resyncs},
                       {"catch_ups", ship.catch_ups},
                       {"epochs_merged", ship.epochs_merged},
                       {"compression", ship.compression},
                       {"compression_changes", ship.compression_changes},
                       {"last_error", ship.last_error}}},
          {"outputs", outputs_->StatusJson()},
          {"disk", disk_ ? disk_->StatusJson() : nlohmann::json(nullptr)},
          {"peer", {{"alive", peer.alive}, {"links", PeerLinksJson(peer)}}},
          {"metrics", metrics_->Json()}};
}

void PrimaryRun::CollectMetrics() {
  metrics_->SetTerm(env_.guard->term());
  metrics_->SetPeer(env_.guard->peer());
  if (EpochShipping* shipper = shipper_for_metrics_.load(); shipper != nullptr) {
    metrics_->SetShipper(shipper->stats(), env_.clock->NowNanos());
  }
}

}  // namespace

int RunPrimaryRole(const PrimaryOptions& options, const PrimaryEnv& env) {
  PrimaryRun run(options, env);
  return run.Run();
}

int ReprotectRunningVm(const PrimaryOptions& options, const PrimaryEnv& env, RunningVm running) {
  PrimaryRun run(options, env, running);
  return run.Run();
}

namespace {

// The guard's first word on a (re)started primary. A VM the witness says another host holds under a valid lease
// is not this host's to run: with re-protection this host rejoins as that host's standby (`*rejoin`), else it
// says so and fails. This host's own earlier process holding the lease (a fast restart) is refused too: waiting
// for that lease to run out and registering would cold-boot the guest over the standby's copy, while the
// standby takes over once it runs out; started again after that, this host rejoins.
enum class FirstWord { kRun, kRejoin, kExit };

FirstWord AwaitFirstWord(VmGuard& guard, const PrimaryOptions& options, Shutdown* shutdown, int* exit_code) {
  for (int waited_ms = 0; waited_ms < 30000; waited_ms += 100) {
    if (guard.WaitRunnable(100)) return FirstWord::kRun;
    if (shutdown->Requested()) {
      *exit_code = kExitOk;
      return FirstWord::kExit;
    }
    if (guard.superseded()) return FirstWord::kRun;  // RunPrimaryRole reports it
    const heartbeat::GuardStatus status = guard.status();
    if (status.held_by.empty()) continue;
    char why[256];
    if (status.held_by == options.heartbeat.node_name) {
      snprintf(why, sizeof(why),
               "this host's previous tandem process still holds the lease of term %" PRIu64
               ": not starting a second copy (the standby takes over when the lease runs out; start this role "
               "again after that and it rejoins as the standby)",
               status.held_term);
    } else if (options.rejoin_as_standby) {
      TLOG_WARN("main", "VM %s runs on %s at term %" PRIu64 ": this host lost its term while it was away and "
                        "rejoins as the standby",
                options.vm_name.c_str(), status.held_by.c_str(), status.held_term);
      return FirstWord::kRejoin;
    } else {
      snprintf(why, sizeof(why),
               "VM runs on %s at term %" PRIu64 ": this host lost its term (set primary.replication to have it "
               "rejoin as the standby by itself)",
               status.held_by.c_str(), status.held_term);
    }
    TLOG_ERROR("guard", "not running VM %s: %s", options.vm_name.c_str(), why);
    WriteStatusFile(options.state_dir, {{"role", "primary"}, {"state", "failed"}, {"guard", guard.StatusJson()},
                                        {"error", why}})
        .ok();
    *exit_code = kExitFailed;
    return FirstWord::kExit;
  }
  return FirstWord::kRun;  // RunPrimaryRole waits once more and reports why not
}

int RunPrimaryHere(const PrimaryOptions& options, Shutdown* shutdown, ServiceNotifier* notifier, bool* rejoin) {
  Clock* clock = SystemClock();
  if (Status st = EnsurePrivateDir(options.state_dir); !st.ok()) {
    TLOG_ERROR("main", "state dir: %s", st.ToString().c_str());
    return kExitFailed;
  }
  RoleMetrics metrics(options.heartbeat.links);
  metrics.SetRole(/*primary=*/true);
  metrics::MetricsServer metrics_server;  // after `metrics`: stopped before the figures it serves go
  if (Status st = StartMetricsEndpoint(options.metrics_address, &metrics, &metrics_server); !st.ok()) {
    ReportFailure(options.state_dir, "primary", "metrics endpoint", st);
    return kExitFailed;
  }
  heartbeat::HeartbeatService heartbeats(options.heartbeat, clock);
  heartbeats.OnPeerLost([] { TLOG_WARN("heartbeat", "standby lost on every link: the VM runs UNPROTECTED"); });
  if (Status st = heartbeats.Start(); !st.ok()) {
    TLOG_ERROR("heartbeat", "%s", st.ToString().c_str());
    return kExitFailed;
  }
  auto authority = MakeLeaseAuthority(options.witness, clock);
  if (!authority.ok()) {
    TLOG_ERROR("guard", "%s", authority.status().ToString().c_str());
    return kExitFailed;
  }
  VmGuard guard(options.arbiter, options.heartbeat.interval_ms, std::move(authority).value(), &heartbeats, shutdown,
                clock);
  if (Status st = guard.Start(); !st.ok()) {
    TLOG_ERROR("guard", "%s", st.ToString().c_str());
    return kExitFailed;
  }
  int exit_code = kExitOk;
  switch (AwaitFirstWord(guard, options, shutdown, &exit_code)) {
    case FirstWord::kRun: break;
    case FirstWord::kRejoin: *rejoin = true; return kExitOk;
    case FirstWord::kExit: return exit_code;
  }
  // Created only once this host may run the VM: a host that rejoins keeps its old RAM file for the standby.
  auto ram_file = CreateGuestMemoryFile(options.vm.ram_path, options.vm.memory_mb << 20);
  if (!ram_file.ok()) {
    ReportFailure(options.state_dir, "primary", "guest RAM file", ram_file.status());
    return kExitFailed;
  }
  QemuHost qemu_host;
  std::optional<LibvirtHost> libvirt_host;
  if (options.libvirt) libvirt_host.emplace(*options.libvirt);
  VmHost* host = libvirt_host ? static_cast<VmHost*>(&*libvirt_host) : &qemu_host;
  PrimaryEnv env{clock, host, &guard, shutdown, [&](uint64_t term, disk::BlockDevice* disk) {
                   replicator::ShipperOptions ship = options.ship;
                   ship.term = term;
                   ship.disk = disk;
                   return std::unique_ptr<EpochShipping>(std::make_unique<Shipper>(ship, clock));
                 },
                 notifier, &metrics};
  const int code = RunPrimaryRole(options, env);
  if ((code == kExitSuperseded || code == kExitSwitchedOver) && options.rejoin_as_standby) {
    // The VM runs (or is about to run) on the other host and this copy was killed: this host becomes its
    // standby, and its RAM file the replica the resync starts from.
    ram_file->Keep();
    *rejoin = true;
  }
  return code == kExitSwitchedOver ? kExitOk : code;
}

}  // namespace

int RunPrimary(const PrimaryOptions& options, Shutdown* shutdown, ServiceNotifier* notifier) {
  SetLogTag("primary");
  bool rejoin = false;
  // Everything of the primary (heartbeat sockets, witness client, guard) is gone before the standby starts.
  const int code = RunPrimaryHere(options, shutdown, notifier, &rejoin);
  if (!rejoin || shutdown->Requested()) return code;
  return RunStandby(*options.rejoin_as_standby, shutdown, notifier);
}

}  // namespace tandem::roles
