#include "cli/guard.h"

#include <chrono>
#include <cinttypes>

#include "cli/host.h"
#include "common/log.h"
#include "heartbeat/witness_client.h"

namespace tandem::cli {

Result<std::unique_ptr<heartbeat::LeaseAuthority>> MakeLeaseAuthority(const Config& config, const std::string& node,
                                                                       Clock* clock) {
  if (!config.HasWitness()) return std::unique_ptr<heartbeat::LeaseAuthority>();
  heartbeat::WitnessClientOptions options;
  options.witness_address = config.witness_address;
  options.psk = config.psk;
  options.vm = config.vm_name;
  options.node = node;
  auto client = std::make_unique<heartbeat::WitnessClient>(options, clock);
  TANDEM_RETURN_IF_ERROR(client->Start().WithContext("witness client"));
  return std::unique_ptr<heartbeat::LeaseAuthority>(std::move(client));
}

heartbeat::ArbiterOptions MakeArbiterOptions(const Config& config) {
  auto policy = heartbeat::ParseTwoHostPolicy(config.two_host_policy);  // validated with the config
  return heartbeat::MakeArbiterOptions(config.HasWitness(),
                                       policy.ok() ? policy.value() : heartbeat::TwoHostPolicy::kNeverPromote,
                                       config.lease_ms, config.promise_ms, config.heartbeat_interval_ms);
}

nlohmann::json GuardStatusJson(const heartbeat::GuardStatus& s) {
  return {{"state", s.state},
          {"reason", s.reason},
          {"alarm", s.alarm},
          {"term", s.term},
          {"lease_valid_ms", s.lease_valid_ms},
          {"standby_support_ms", s.support_valid_ms},
          {"witness", {{"configured", s.witness_configured},
                       {"reachable", s.witness_reachable},
                       {"last_deny", s.last_deny}}}};
}

VmGuard::VmGuard(const Config& config, std::unique_ptr<heartbeat::LeaseAuthority> authority,
                 heartbeat::HeartbeatService* heartbeats, Clock* clock, uint64_t term,
                 std::optional<heartbeat::LeaseReply> grant)
    : authority_(std::move(authority)),
      clock_(clock),
      guard_(MakeArbiterOptions(config), config.heartbeat_interval_ms, heartbeats, authority_.get(), clock,
             config.HasWitness() ? term : std::max<uint64_t>(term, 1), std::move(grant)) {
  guard_.OnDecision([this](const heartbeat::PrimaryDecision& d) { Act(d); });
}

VmGuard::~VmGuard() { Stop(); }

Status VmGuard::Start() { return guard_.Start(); }

void VmGuard::Stop() {
  guard_.Stop();
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  cv_.notify_all();
}

void VmGuard::AttachVm(qemu::QmpClient* qmp) {
  std::lock_guard<std::mutex> lock(mu_);
  qmp_ = qmp;
  if (decision_.action == heartbeat::PrimaryAction::kFence || decision_.action == heartbeat::PrimaryAction::kSuperseded) {
    vm_stopped_by_us_ = qmp_->Execute("stop", nlohmann::json::object(), 1000).ok();
  }
}

bool VmGuard::WaitRunnable(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock<std::mutex> lock(mu_);
  while (decision_.action != heartbeat::PrimaryAction::kRun) {
    if (stopped_ || decision_.action == heartbeat::PrimaryAction::kSuperseded || ShutdownSignal::Requested() ||
        std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    cv_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
  }
  return true;
}

bool VmGuard::superseded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return decision_.action == heartbeat::PrimaryAction::kSuperseded;
}

uint64_t VmGuard::term() const {
  std::lock_guard<std::mutex> lock(mu_);
  return decision_.term;
}

void VmGuard::Act(const heartbeat::PrimaryDecision& d) {
  using heartbeat::PrimaryAction;
  std::lock_guard<std::mutex> lock(mu_);
  decision_ = d;
  if (d.action == PrimaryAction::kRun && qmp_ && vm_stopped_by_us_) {
    Status st = qmp_->Execute("cont", nlohmann::json::object(), 1000).status();
    TLOG_WARN("guard", "UN-FENCED after %.1f ms at term %" PRIu64 ": VM continues (%s)",
              (clock_->NowNanos() - fenced_at_ns_) / 1e6, d.term, st.ok() ? "cont ok" : st.ToString().c_str());
    vm_stopped_by_us_ = false;
  } else if (d.action == PrimaryAction::kFence || d.action == PrimaryAction::kSuperseded) {
    fenced_at_ns_ = clock_->NowNanos();
    Status st = qmp_ ? qmp_->Execute("stop", nlohmann::json::object(), 1000).status()
                     : Status::Aborted("QEMU not started yet; it will be stopped when it is");
    if (qmp_ && st.ok()) vm_stopped_by_us_ = true;
    TLOG_ERROR("guard", "%s at term %" PRIu64 ": %s; VM paused (%s)",
               d.action == PrimaryAction::kFence ? "FENCED" : "SUPERSEDED: this host must never run the VM again",
               d.term, d.reason, st.ok() ? "QMP stop ok" : st.ToString().c_str());
  }
  cv_.notify_all();
}

}  // namespace tandem::cli
