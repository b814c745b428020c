#include "roles/standby.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>

#include "common/log.h"
#include "metrics/server.h"
#include "qemu-integration/resume.h"
#include "roles/disk.h"
#include "roles/guard.h"
#include "roles/outputs.h"
#include "roles/qemu_host.h"
#include "roles/service_status.h"
#include "roles/status_file.h"
#include "roles/vm_monitor.h"

namespace tandem::roles {
namespace {

// One run of the role. Everything it starts is a member, so every way out tears down the same way (~StandbyRun).
class StandbyRun {
 public:
  StandbyRun(const StandbyOptions& options, const StandbyEnv& env)
      : o_(options),
        env_(env),
        service_(env.notifier, env.clock, options.vm_name),
        own_metrics_(env.metrics ? std::vector<heartbeat::LinkConfig>() : options.heartbeat.links),
        metrics_(env.metrics ? env.metrics : &own_metrics_) {
    metrics_->SetRole(/*primary=*/false);
    metrics_->registry().OnCollect([this] { CollectMetrics(); });
  }
  ~StandbyRun() {
    metrics_->registry().OnCollect(nullptr);  // a scrape must not reach for what is going
    if (guard_) guard_->AttachVm(nullptr);
    guard_.reset();
    if (vm_) vm_->Kill(SIGKILL);
  }
  int Run();

 private:
  int Fail(const char* what, const Status& st) {
    ReportFailure(o_.state_dir, "standby", what, st);
    return kExitFailed;
  }
  int Failover();
  // The promoted host as the primary of the VM it resumed (options.reprotect); returns as ReprotectRunningVm.
  int Reprotect();
  nlohmann::json StatusJson(const char* state, const replicator::ReceiverStats& stats,
                            const heartbeat::PeerStatus& peer) const;

  // STATUS= (and a log line when it changed) while this host is the standby.
  void ReportStandbyState(const replicator::ReceiverStats& stats, const nlohmann::json& term);

  // On the metrics endpoint's thread at every scrape (and at every status file): the figures as of now.
  void CollectMetrics();

  const StandbyOptions& o_;
  const StandbyEnv& env_;
  ServiceStatus service_;
  RoleMetrics own_metrics_;
  RoleMetrics* metrics_;
  std::atomic<uint64_t> term_{0};        // for CollectMetrics: set by the role's thread
  std::atomic<bool> promoted_{false};
  std::unique_ptr<Vm> vm_;
  std::unique_ptr<RunGuard> guard_;  // once promoted
  std::unique_ptr<GuestOutputs> outputs_;
};

int StandbyRun::Run() {
  // The warm QEMU's console chardev connects once, at startup: the console listens first. The NIC waits for the
  // failover (README.md of output-commit/).
  auto outputs = OpenGuestOutputs(o_, env_.host, /*with_nic=*/false);
  if (!outputs.ok()) return Fail("guest outputs", outputs.status());
  outputs_ = std::move(outputs).value();
  auto vm = env_.host->Launch(o_.vm, qemu::QemuRole::kStandby, o_.state_dir);
  if (!vm.ok()) return Fail("standby QEMU", vm.status());
  vm_ = std::move(vm).value();
  TLOG_INFO("main", "standby for VM %s ready: replication on %s, replica %s, warm standby QEMU pid %d, %s",
            o_.vm_name.c_str(), o_.receive.listen_address.c_str(), o_.replica_path.c_str(), int(vm_->pid()),
            o_.arbitration.c_str());

  // Replicate until the arbiter promotes this host: the primary lost on every link, our promise to it run out,
  // and the witness granted a new term (or the two-host policy allows it).
  Promotion& promotion = *env_.promotion;
  const Shutdown::Hook wake_on_shutdown(env_.shutdown, [&promotion] { promotion.Wake(); });
  uint64_t reported_applied = 0;
  ReportStandbyState(env_.receiver->stats(), promotion.StatusJson()["term"]);
  service_.Ready();
  while (!env_.shutdown->Requested()) {
    // Fed by this loop itself: it is the one that must notice the promotion and fail over.
    service_.Watchdog();
    // A promotion wakes this at once; otherwise status is published five times a second.
    if (promotion.WaitPromoted(200)) return env_.shutdown->Requested() ? kExitOk : Failover();
    const replicator::ReceiverStats stats = env_.receiver->stats();
    // Applied epochs are no resume point while a live resync settles (replicator/FORMAT.md, "live"): promoted
    // then, there would be nothing consistent to resume.
    const std::optional<replicator::ResumePoint> point = env_.receiver->resume_point();
    promotion.SetResumePoint(point.has_value(), point ? point->epoch : 0);
    if (!vm_->Running()) {
      return Fail("standby QEMU", Status::Aborted("the warm standby QEMU exited: no failover possible"));
    }
    if (stats.last_applied >= reported_applied + 100) {  // a progress line every 100 epochs
      TLOG_INFO("epoch", "applied up to epoch %" PRIu64 " (last apply %.2f ms, %" PRIu64 " rejected)",
                stats.last_applied, stats.last_apply_ms, stats.epochs_rejected);
      reported_applied = stats.last_applied;
    }
    nlohmann::json status = StatusJson("standby", stats, promotion.peer());
    status["resume_epoch"] = point ? nlohmann::json(point->epoch) : nlohmann::json(nullptr);
    status["guard"] = promotion.StatusJson();
    status["term"] = status["guard"]["term"];
    if (status["term"].is_number_integer()) term_ = status["term"].get<uint64_t>();
    status["metrics"] = metrics_->Json();
    ReportStandbyState(stats, status["term"]);
    WriteStatusFile(o_.state_dir, status).ok();
  }
  return kExitOk;
}

void StandbyRun::ReportStandbyState(const replicator::ReceiverStats& stats, const nlohmann::json& term) {
  char progress[160];
  snprintf(progress, sizeof(progress), "term %" PRIu64 ", applied epoch %" PRIu64,
           term.is_number_integer() ? term.get<uint64_t>() : 0, stats.last_applied);
  if (!stats.primary_connected) {
    service_.Set(LogLevel::kWarn,
                 stats.epochs_applied > 0 ? "standby: primary NOT connected, holding the last complete epoch"
                                          : "standby: waiting for the primary, no copy of the VM yet",
                 progress);
  } else if (stats.epochs_applied > 0) {
    service_.Set(LogLevel::kInfo, "standby: protecting the VM, replica in sync", progress);
  } else {
    service_.Set(LogLevel::kInfo, "standby: primary connected, first sync running", progress);
  }
}

int StandbyRun::Failover() {
  const PromotionDecision decision = env_.promotion->Decision();
  // After Stop() the replica and its device state are final: nothing is half applied.
  env_.receiver->Stop();
  if (Status st = env_.receiver->RecoverDisk(); !st.ok()) return Fail("disk recovery", st);
  const std::optional<replicator::ResumePoint> point = env_.receiver->resume_point();
  if (!point) return Fail("resume", Status::Aborted("promoted without a complete epoch to resume from"));
  TLOG_WARN("failover", "promoted to term %" PRIu64 " (%s): resuming VM %s from epoch %" PRIu64,
            decision.term, decision.reason.c_str(), o_.vm_name.c_str(), point->epoch);
  // The old primary is superseded and no other copy can resume from an older epoch: this host's output leaves
  // at once (pass-through), on its own TAP.
  if (o_.outputs.nic) {
    auto nic = env_.host->OpenNic(*o_.outputs.nic, o_.state_dir);
    if (!nic.ok()) return Fail("NIC", nic.status());
    outputs_->Add("nic", std::move(nic).value());
  }
  outputs_->PassThrough();
  const std::string stream = qemu::BuildResumeStream(point->descriptor, point->device_state);
  if (Status st = vm_->Resume(stream, o_.state_dir + "/incoming.sock", 10000); !st.ok()) return Fail("resume", st);
  if (o_.outputs.nic) {
    // The switches learn the MAC's new port: QEMU's RARPs, and the guest's gratuitous ARPs (virtio-net).
    auto announced = vm_->Execute("announce-self", {{"initial", 50}, {"max", 550}, {"rounds", 5}, {"step", 100}});
    if (!announced.ok()) {
      TLOG_WARN("failover", "announce-self failed (the network learns the VM's new port from its next frame): %s",
                announced.status().ToString().c_str());
    }
  }
  const double resume_ms = (env_.clock->NowNanos() - decision.peer_lost_ns) / 1e6;
  TLOG_WARN("failover", "VM %s RUNNING on this host from epoch %" PRIu64 ": resume_ms=%.1f (heartbeat loss detected -> guest running), now unprotected",
            o_.vm_name.c_str(), point->epoch, resume_ms);

  // This host is the primary now: it keeps the lease like any primary (the new term travels in its heartbeats
  // at once, so an old primary that can still hear us stands down) and fences if it loses it.
  auto guard = env_.promotion->BecomePrimary(decision, point->epoch);
  if (!guard.ok()) return Fail("primary guard", guard.status());
  term_ = decision.term;
  promoted_ = true;
  metrics_->SetRole(/*primary=*/true);
  guard_ = std::move(guard).value();
  guard_->AttachVm(vm_.get());
  VmMonitor monitor(vm_.get(), o_.reset_guest_on_crash);
  char progress[160];
  snprintf(progress, sizeof(progress), "term %" PRIu64 ", resumed from epoch %" PRIu64 " in %.1f ms", decision.term,
           point->epoch, resume_ms);
  // Re-protection starts once the other host is back (its heartbeats): checkpoints before that would pause the
  // VM for nobody, and a standby that connects right after the precopy settles on the first checkpoints.
  bool reprotect_pending = o_.reprotect.has_value();
  if (reprotect_pending) {
    TLOG_WARN("main", "VM %s will be re-protected to %s once the other host's tandem is back",
              o_.vm_name.c_str(), o_.reprotect->ship.standby_address.c_str());
  }
  while (!env_.shutdown->Requested() && vm_->Running() && !guard_->superseded()) {
    if (reprotect_pending && guard_->peer().alive) {
      reprotect_pending = false;  // once per failover
      const int code = Reprotect();
      if (code == kExitSuperseded || code == kExitSwitchedOver || env_.shutdown->Requested()) return code;
      // The re-protection failed (logged): the VM goes on unprotected, its output leaves at once.
      guard_->AttachVm(vm_.get());
      outputs_->PassThrough();
      continue;
    }
    service_.Watchdog();
    monitor.Poll();
    const nlohmann::json guard_status = guard_->StatusJson();
    nlohmann::json status = StatusJson("active", env_.receiver->stats(), guard_->peer());
    status["state"] = guard_status["state"] == "running" ? "active" : guard_status["state"];
    status["term"] = decision.term;
    status["guard"] = guard_status;
    status["vm_liveness"] = monitor.StatusJson();
    status["resumed_epoch"] = point->epoch;
    status["resume_ms"] = resume_ms;
    status["outputs"] = outputs_->StatusJson();
    status["reprotect"] = reprotect_pending ? "waiting for the other host" : o_.reprotect ? "ended" : "off";
    status["metrics"] = metrics_->Json();
    WriteStatusFile(o_.state_dir, status).ok();
    if (status["state"] == "active") {
      service_.Set(LogLevel::kWarn, "ACTIVE: VM running on this host after a failover, UNPROTECTED", progress);
    } else {
      service_.Set(LogLevel::kWarn, "promoted but " + status.value("state", std::string("?")) + ": VM paused", progress);
    }
    env_.shutdown->WaitFor(200);
  }
  if (guard_->superseded()) {
    service_.Set(LogLevel::kError, "SUPERSEDED: a newer term runs the VM elsewhere, this copy is killed", progress);
  }
  return kExitOk;
}

int StandbyRun::Reprotect() {
  PrimaryOptions primary;
  static_cast<RoleOptions&>(primary) = o_;
  primary.epoch_ms = o_.reprotect->epoch_ms;
  primary.adaptive_epoch = o_.reprotect->adaptive_epoch;
  primary.ship = o_.reprotect->ship;
  // The primary role says at what interval it checkpoints once it protects the VM.
  TLOG_WARN("main", "re-protecting VM %s: the other host is back; shipping to %s", o_.vm_name.c_str(),
            primary.ship.standby_address.c_str());
  // The primary role's figures go to this role's endpoint while it runs; this role's own afterwards.
  const PrimaryEnv env{env_.clock,    env_.host,     guard_.get(), env_.shutdown, env_.make_reprotect_shipper,
                       env_.notifier, metrics_};
  const int code = ReprotectRunningVm(primary, env, {vm_.get(), outputs_.get()});
  metrics_->registry().OnCollect([this] { CollectMetrics(); });
  return code;
}

void StandbyRun::CollectMetrics() {
  const replicator::ReceiverStats stats = env_.receiver->stats();
  metrics_->SetReceiver(stats, env_.clock->NowNanos());
  // A promoted standby runs the VM alone: nothing protects it until a new standby is set up by hand.
  metrics_->SetProtected(!promoted_ && stats.primary_connected && stats.has_resume_point);
  metrics_->SetTerm(term_);
  metrics_->SetPeer(env_.promotion->peer());
}

nlohmann::json StandbyRun::StatusJson(const char* state, const replicator::ReceiverStats& recv,
                                      const heartbeat::PeerStatus& peer) const {
  return {{"role", "standby"},
          {"state", state},
          {"vm", o_.vm_name},
          {"pid", int(getpid())},
          {"qemu_pid", int(vm_->pid())},
          {"replica", o_.replica_path},
          {"last_applied", recv.last_applied},
          {"epochs_applied", recv.epochs_applied},
          {"epochs_rejected", recv.epochs_rejected},
          {"last_apply_ms", recv.last_apply_ms},
          {"primary_connected", recv.primary_connected},
          {"last_error", recv.last_error},
          {"disk", o_.disk ? nlohmann::json{{"writes_applied", recv.disk_writes_applied},
                                            {"bytes_applied", recv.disk_bytes_applied},
                                            {"needs_recovery", recv.disk_needs_recovery}}
                           : nlohmann::json(nullptr)},
          {"peer", {{"alive", peer.alive}, {"ever_heard", peer.ever_heard}, {"links", PeerLinksJson(peer)}}}};
}

}  // namespace

int RunStandbyRole(const StandbyOptions& options, const StandbyEnv& env) {
  StandbyRun run(options, env);
  return run.Run();
}

namespace {
int RunStandbyOnce(const StandbyOptions& options, Shutdown* shutdown, ServiceNotifier* notifier);
}

int RunStandby(const StandbyOptions& options, Shutdown* shutdown, ServiceNotifier* notifier) {
  for (;;) {
    // Everything of one run (receiver, heartbeats, guard, QEMU) is gone before the next starts.
    const int code = RunStandbyOnce(options, shutdown, notifier);
    if (code != kExitSwitchedOver) return code;
    if (shutdown->Requested()) return kExitOk;
    // This host re-protected the VM after a failover and has now handed it back: it is the standby again.
    TLOG_WARN("main", "VM %s switched over to the other host: this host is its standby again", options.vm_name.c_str());
  }
}

namespace {

int RunStandbyOnce(const StandbyOptions& options, Shutdown* shutdown, ServiceNotifier* notifier) {
  SetLogTag("standby");
  Clock* clock = SystemClock();
  auto fail = [&](const char* what, const Status& st) {
    ReportFailure(options.state_dir, "standby", what, st);
    return kExitFailed;
  };
  if (Status st = EnsurePrivateDir(options.state_dir); !st.ok()) return fail("state dir", st);
  RoleMetrics metrics(options.heartbeat.links);
  metrics.SetRole(/*primary=*/false);
  metrics::MetricsServer metrics_server;  // after `metrics`: stopped before the figures it serves go
  if (Status st = StartMetricsEndpoint(options.metrics_address, &metrics, &metrics_server); !st.ok()) {
    return fail("metrics endpoint", st);
  }
  // A replica left by a killed standby, or the RAM file of this host's killed primary (it rejoins), is kept:
  // the primary then sends only the pages whose hash differs (replicator/FORMAT.md, PAGE_HASHES).
  bool kept = false;
  auto replica_file = KeepOrCreateGuestMemoryFile(options.replica_path, options.replica_bytes, &kept);
  if (!replica_file.ok()) return fail("replica", replica_file.status());  // a kept one is logged
  // The disk's journaled copy is opened (and a crash's leftovers finished) before anything can apply to it,
  // and served before the warm QEMU starts (its -blockdev connects at startup).
  std::unique_ptr<StandbyDisk> disk;
  replicator::ReceiverOptions receive = options.receive;
  if (options.disk) {
    auto opened = StandbyDisk::Open(*options.disk, DiskSocketIn(options.state_dir), options.vm_name);
    if (!opened.ok()) return fail("disk", opened.status());
    disk = std::move(opened).value();
    receive.disk = disk->replica();
  }
  Receiver receiver(receive, clock);
  if (Status st = receiver.Start(); !st.ok()) return fail("replication listener", st);
  heartbeat::HeartbeatService heartbeats(options.heartbeat, clock);
  StandbyArbitration arbitration(options.arbiter, options.heartbeat.interval_ms, &heartbeats, shutdown, clock);
  if (Status st = heartbeats.Start(); !st.ok()) return fail("heartbeat", st);
  auto authority = MakeLeaseAuthority(options.witness, clock);
  if (!authority.ok()) return fail("witness", authority.status());
  if (Status st = arbitration.Start(std::move(authority).value()); !st.ok()) return fail("standby guard", st);
  QemuHost host;
  StandbyEnv env{clock, &host, &receiver, &arbitration, shutdown, notifier, &metrics, nullptr};
  if (options.reprotect) {
    env.make_reprotect_shipper = [&options, clock](uint64_t term, disk::BlockDevice* image) {
      replicator::ShipperOptions ship = options.reprotect->ship;
      ship.term = term;
      ship.disk = image;
      return std::unique_ptr<EpochShipping>(std::make_unique<Shipper>(ship, clock));
    };
  }
  return RunStandbyRole(options, env);
}

}  // namespace

}  // namespace tandem::roles
