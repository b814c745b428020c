#include "roles/guard.h"

#include <chrono>
#include <cinttypes>

#include "common/log.h"

namespace tandem::roles {

Result<std::unique_ptr<heartbeat::LeaseAuthority>> MakeLeaseAuthority(
    const std::optional<heartbeat::WitnessClientOptions>& witness, Clock* clock) {
  if (!witness) return std::unique_ptr<heartbeat::LeaseAuthority>();
  auto client = std::make_unique<heartbeat::WitnessClient>(*witness, clock);
  TANDEM_RETURN_IF_ERROR(client->Start().WithContext("witness client"));
  return std::unique_ptr<heartbeat::LeaseAuthority>(std::move(client));
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
                       {"last_deny", s.last_deny},
                       {"held_by", s.held_by},
                       {"held_term", s.held_term}}}};
}

VmGuard::VmGuard(const heartbeat::ArbiterOptions& options, int interval_ms,
                 std::unique_ptr<heartbeat::LeaseAuthority> authority, heartbeat::HeartbeatService* heartbeats,
                 Shutdown* shutdown, Clock* clock, uint64_t term, std::optional<heartbeat::LeaseReply> grant)
    : authority_(std::move(authority)),
      heartbeats_(heartbeats),
      shutdown_(shutdown),
      clock_(clock),
      guard_(options, interval_ms, heartbeats, authority_.get(), clock,
             authority_ ? term : std::max<uint64_t>(term, 1), std::move(grant)) {
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

void VmGuard::AttachVm(Vm* vm) {
  std::lock_guard<std::mutex> lock(mu_);
  vm_ = vm;
  if (vm_ && (decision_.action == heartbeat::PrimaryAction::kFence ||
              decision_.action == heartbeat::PrimaryAction::kSuperseded)) {
    vm_stopped_by_us_ = vm_->Execute("stop", nlohmann::json::object(), 1000).ok();
  }
}

bool VmGuard::WaitRunnable(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock<std::mutex> lock(mu_);
  while (decision_.action != heartbeat::PrimaryAction::kRun) {
    if (stopped_ || decision_.action == heartbeat::PrimaryAction::kSuperseded || shutdown_->Requested() ||
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
  if (d.action == PrimaryAction::kRun && vm_ && vm_stopped_by_us_) {
    Status st = vm_->Execute("cont", nlohmann::json::object(), 1000).status();
    TLOG_WARN("guard", "UN-FENCED after %.1f ms at term %" PRIu64 ": VM continues (%s)",
              (clock_->NowNanos() - fenced_at_ns_) / 1e6, d.term, st.ok() ? "cont ok" : st.ToString().c_str());
    vm_stopped_by_us_ = false;
  } else if (d.action == PrimaryAction::kFence || d.action == PrimaryAction::kSuperseded) {
    fenced_at_ns_ = clock_->NowNanos();
    Status st = vm_ ? vm_->Execute("stop", nlohmann::json::object(), 1000).status()
                    : Status::Aborted("QEMU not started yet; it will be stopped when it is");
    if (vm_ && st.ok()) vm_stopped_by_us_ = true;
    TLOG_ERROR("guard", "%s at term %" PRIu64 ": %s; VM paused (%s)",
               d.action == PrimaryAction::kFence ? "FENCED" : "SUPERSEDED: this host must never run the VM again",
               d.term, d.reason, st.ok() ? "QMP stop ok" : st.ToString().c_str());
  }
  cv_.notify_all();
}

StandbyArbitration::StandbyArbitration(const heartbeat::ArbiterOptions& options, int interval_ms,
                                       heartbeat::HeartbeatService* heartbeats, Shutdown* shutdown, Clock* clock)
    : options_(options), interval_ms_(interval_ms), heartbeats_(heartbeats), shutdown_(shutdown), clock_(clock) {
  heartbeats_->OnPeerLost([this] {
    std::lock_guard<std::mutex> lock(mu_);
    peer_lost_ns_ = clock_->NowNanos();
    cv_.notify_all();
  });
}

// The heartbeats' peer-loss callback points here: they stop first.
StandbyArbitration::~StandbyArbitration() {
  if (guard_) guard_->Stop();
  heartbeats_->Stop();
}

Status StandbyArbitration::Start(std::unique_ptr<heartbeat::LeaseAuthority> authority) {
  authority_ = std::move(authority);
  guard_ = std::make_unique<heartbeat::StandbyGuard>(options_, interval_ms_, heartbeats_, authority_.get(), clock_);
  guard_->OnDecision([this](const heartbeat::StandbyDecision& d) {
    if (d.action != heartbeat::StandbyAction::kPromote) return;
    std::lock_guard<std::mutex> lock(mu_);
    promoted_ = true;
    cv_.notify_all();
  });
  return guard_->Start();
}

void StandbyArbitration::SetResumePoint(bool ready, uint64_t last_applied_epoch) {
  guard_->SetResumePoint(ready, last_applied_epoch);
}

bool StandbyArbitration::WaitPromoted(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return promoted_ || woken_; });
  woken_ = false;
  return promoted_;
}

void StandbyArbitration::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  woken_ = true;
  cv_.notify_all();
}

nlohmann::json StandbyArbitration::StatusJson() const {
  return GuardStatusJson(guard_->status());
}

PromotionDecision StandbyArbitration::Decision() {
  const heartbeat::StandbyDecision decision = guard_->decision();
  grant_ = guard_->grant();
  guard_->Stop();
  std::lock_guard<std::mutex> lock(mu_);
  return {decision.term, decision.reason, peer_lost_ns_};
}

Result<std::unique_ptr<RunGuard>> StandbyArbitration::BecomePrimary(const PromotionDecision& decision,
                                                                    uint64_t last_epoch) {
  auto guard = std::make_unique<VmGuard>(options_, interval_ms_, std::move(authority_), heartbeats_, shutdown_,
                                         clock_, decision.term, grant_);
  TANDEM_RETURN_IF_ERROR(guard->Start());
  guard->SetLastEpoch(last_epoch);
  return std::unique_ptr<RunGuard>(std::move(guard));
}

}  // namespace tandem::roles
