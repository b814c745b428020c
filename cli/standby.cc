// The standby role: a warm standby QEMU (same options, RAM mapped from the replica file, -incoming defer) and
// the receiver that applies only complete, verified epochs to that replica. When the primary's heartbeats stop
// on every link, the receiver is stopped (no apply in progress, none to come), and the standby QEMU loads the
// last applied epoch's device state and runs.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <condition_variable>
#include <fcntl.h>
#include <mutex>

#include "cli/guard.h"
#include "cli/host.h"
#include "cli/roles.h"
#include "cli/status_file.h"
#include "cli/vm_monitor.h"
#include "common/env.h"
#include "common/fd.h"
#include "common/log.h"
#include "qemu-integration/resume.h"
#include "replicator/receiver.h"

namespace tandem::cli {
namespace {

struct FailoverTrigger {
  std::mutex mu;
  std::condition_variable cv;
  bool promoted = false;
  int64_t detected_ns = 0;
};

void WakeOnSignal(void* arg) {
  auto* trigger = static_cast<FailoverTrigger*>(arg);
  std::lock_guard<std::mutex> lock(trigger->mu);
  trigger->cv.notify_all();
}

// A fresh replica file of the VM's RAM size: the warm standby QEMU maps it before the first epoch arrives.
Status CreateReplicaFile(const std::string& path, uint64_t bytes) {
  ::unlink(path.c_str());
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd.valid()) return Status::FromErrno("create replica " + path, errno);
  if (ftruncate(fd.get(), off_t(bytes)) != 0) return Status::FromErrno("size replica " + path, errno);
  return Status::Ok();
}

nlohmann::json StandbyStatus(const Config& config, const char* state, pid_t qemu_pid,
                             const replicator::ReceiverStats& recv, const heartbeat::PeerStatus& peer) {
  nlohmann::json links = nlohmann::json::array();
  for (const auto& link : peer.links) {
    links.push_back({{"local", link.local_address}, {"peer", link.peer_address}, {"up", link.up},
                     {"rtt_ms", link.rtt_ms}, {"loss", link.loss}});
  }
  return {{"role", "standby"},
          {"state", state},
          {"vm", config.vm_name},
          {"pid", int(getpid())},
          {"qemu_pid", int(qemu_pid)},
          {"replica", config.ReplicaPath()},
          {"last_applied", recv.last_applied},
          {"epochs_applied", recv.epochs_applied},
          {"epochs_rejected", recv.epochs_rejected},
          {"last_apply_ms", recv.last_apply_ms},
          {"primary_connected", recv.primary_connected},
          {"last_error", recv.last_error},
          {"peer", {{"alive", peer.alive}, {"ever_heard", peer.ever_heard}, {"links", links}}}};
}

}  // namespace

int RunStandby(const Config& config) {
  SetLogTag("standby");
  Clock* clock = SystemClock();
  const std::string& dir = config.standby_state_dir;
  const std::string replica = config.ReplicaPath();
  auto fail = [&](const char* what, const Status& st) {
    TLOG_ERROR("main", "%s: %s", what, st.ToString().c_str());
    WriteStatusFile(dir, {{"role", "standby"}, {"state", "failed"}, {"error", st.ToString()}}).ok();
    return 1;
  };
  if (Status st = MakeDirs(dir); !st.ok()) return fail("state dir", st);
  if (Status st = CreateReplicaFile(replica, config.memory_mb << 20); !st.ok()) return fail("replica", st);

  auto qemu = LaunchQemu(MakeVmConfig(config, dir, replica), qemu::QemuRole::kStandby, dir);
  if (!qemu.ok()) return fail("standby QEMU", qemu.status());
  qemu::QemuProcess& process = *qemu->process;

  replicator::ReceiverOptions recv_options;
  recv_options.listen_address = config.standby_replication;
  recv_options.file_backed_blocks = {{qemu::kMainRamBlock, replica}};
  recv_options.expected_vm_name = config.vm_name;
  recv_options.io_engine = ParseIoEngine(config.io_engine);
  recv_options.io_timeout_ms = config.io_timeout_ms;
  recv_options.apply_threads = config.apply_threads;
  replicator::EpochReceiver receiver(recv_options, clock);
  if (Status st = receiver.Start(); !st.ok()) {
    process.Kill(SIGKILL);
    return fail("replication listener", st);
  }

  FailoverTrigger trigger;
  heartbeat::HeartbeatService heartbeats(MakeHeartbeatOptions(config, /*primary_side=*/false), clock);
  heartbeats.OnPeerLost([&trigger, clock] {
    std::lock_guard<std::mutex> lock(trigger.mu);
    trigger.detected_ns = clock->NowNanos();
    trigger.cv.notify_all();
  });
  if (Status st = heartbeats.Start(); !st.ok()) {
    process.Kill(SIGKILL);
    return fail("heartbeat", st);
  }
  auto authority = MakeLeaseAuthority(config, "standby", clock);
  if (!authority.ok()) {
    process.Kill(SIGKILL);
    return fail("witness", authority.status());
  }
  ShutdownSignal::OnSignal(WakeOnSignal, &trigger);
  TLOG_INFO("main", "standby for VM %s ready: replication on %s, replica %s, warm standby QEMU pid %d, %s",
            config.vm_name.c_str(), config.standby_replication.c_str(), replica.c_str(), int(process.pid()),
            config.HasWitness() ? ("witness " + config.witness_address).c_str()
                                : ("NO witness: two-host policy " + config.two_host_policy).c_str());

  // Replicate until the arbiter promotes this host: the primary lost on every link, our promise to it run
  // out, and the witness granted a new term (or the two-host policy allows it).
  heartbeat::StandbyGuard standby_guard(MakeArbiterOptions(config), config.heartbeat_interval_ms, &heartbeats,
                                        authority->get(), clock);
  standby_guard.OnDecision([&trigger](const heartbeat::StandbyDecision& d) {
    if (d.action != heartbeat::StandbyAction::kPromote) return;
    std::lock_guard<std::mutex> lock(trigger.mu);
    trigger.promoted = true;
    trigger.cv.notify_all();
  });
  if (Status st = standby_guard.Start(); !st.ok()) {
    process.Kill(SIGKILL);
    return fail("standby guard", st);
  }
  uint64_t reported_applied = 0;
  while (!ShutdownSignal::Requested()) {
    {
      std::unique_lock<std::mutex> lock(trigger.mu);
      // A promotion wakes this at once; otherwise status is published five times a second.
      if (trigger.cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return trigger.promoted; })) break;
    }
    const replicator::ReceiverStats stats = receiver.stats();
    standby_guard.SetResumePoint(stats.epochs_applied > 0, stats.last_applied);
    if (!process.Running()) {
      standby_guard.Stop();
      receiver.Stop();
      heartbeats.Stop();
      return fail("standby QEMU", Status::Aborted("the warm standby QEMU exited: no failover possible"));
    }
    if (stats.last_applied >= reported_applied + 100) {  // a progress line every 100 epochs
      TLOG_INFO("epoch", "applied up to epoch %" PRIu64 " (last apply %.2f ms, %" PRIu64 " rejected)",
                stats.last_applied, stats.last_apply_ms, stats.epochs_rejected);
      reported_applied = stats.last_applied;
    }
    const heartbeat::GuardStatus guard_status = standby_guard.status();
    nlohmann::json status = StandbyStatus(config, "standby", process.pid(), stats, heartbeats.peer());
    status["term"] = guard_status.term;
    status["guard"] = GuardStatusJson(guard_status);
    WriteStatusFile(dir, status).ok();
  }
  if (ShutdownSignal::Requested()) {
    standby_guard.Stop();
    receiver.Stop();
    heartbeats.Stop();
    process.Kill(SIGKILL);
    return 0;
  }
  const heartbeat::StandbyDecision decision = standby_guard.decision();
  const std::optional<heartbeat::LeaseReply> grant = standby_guard.grant();
  standby_guard.Stop();

  // Failover. After Stop() the replica and its device state are final: nothing is half applied.
  receiver.Stop();
  const int64_t detected_ns = [&] {
    std::lock_guard<std::mutex> lock(trigger.mu);
    return trigger.detected_ns;
  }();
  const uint64_t term = decision.term;
  const replicator::ResumePoint point = *receiver.resume_point();
  TLOG_WARN("failover", "primary lost on every link, promoted to term %" PRIu64 " (%s): resuming VM %s from epoch %" PRIu64,
            term, decision.reason, config.vm_name.c_str(), point.epoch);
  const std::string stream = qemu::BuildResumeStream(point.descriptor, point.device_state);
  if (Status st = qemu::ResumeStandbyQemu(*qemu->qmp, stream, dir + "/incoming.sock", 10000); !st.ok()) {
    process.Kill(SIGKILL);
    heartbeats.Stop();
    return fail("resume", st);
  }
  const double resume_ms = (clock->NowNanos() - detected_ns) / 1e6;
  TLOG_WARN("failover", "VM %s RUNNING on this host from epoch %" PRIu64 ": resume_ms=%.1f (heartbeat loss detected -> guest running), now unprotected",
            config.vm_name.c_str(), point.epoch, resume_ms);

  // This host is the primary now: it keeps the lease like any primary (the new term travels in its heartbeats
  // at once, so an old primary that can still hear us stands down) and fences if it loses it.
  VmGuard guard(config, std::move(authority).value(), &heartbeats, clock, term, grant);
  if (Status st = guard.Start(); !st.ok()) {
    process.Kill(SIGKILL);
    heartbeats.Stop();
    return fail("primary guard", st);
  }
  guard.SetLastEpoch(point.epoch);
  guard.AttachVm(qemu->qmp.get());
  VmMonitor monitor(config, qemu->qmp.get());
  while (!ShutdownSignal::Requested() && process.Running() && !guard.superseded()) {
    monitor.Poll();
    const nlohmann::json guard_status = guard.StatusJson();
    nlohmann::json status = StandbyStatus(config, "active", process.pid(), receiver.stats(), heartbeats.peer());
    status["state"] = guard_status["state"] == "running" ? "active" : guard_status["state"];
    status["term"] = term;
    status["guard"] = guard_status;
    status["vm_liveness"] = monitor.StatusJson();
    status["resumed_epoch"] = point.epoch;
    status["resume_ms"] = resume_ms;
    WriteStatusFile(dir, status).ok();
    std::unique_lock<std::mutex> lock(trigger.mu);
    trigger.cv.wait_for(lock, std::chrono::milliseconds(200));
  }
  guard.Stop();
  heartbeats.Stop();
  if (process.Running()) process.Kill(SIGKILL);
  return 0;
}

}  // namespace tandem::cli
