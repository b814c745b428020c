#include "cli/guard.h"

#include <poll.h>

#include <algorithm>
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
  auto policy = heartbeat::ParseTwoHostPolicy(config.two_host_policy);
  return heartbeat::MakeArbiterOptions(config.HasWitness(),
                                       policy.ok() ? policy.value() : heartbeat::TwoHostPolicy::kNeverPromote,
                                       config.lease_ms, config.promise_ms, config.heartbeat_interval_ms);
}

PrimaryGuard::PrimaryGuard(const Config& config, std::unique_ptr<heartbeat::LeaseAuthority> authority,
                           heartbeat::HeartbeatService* heartbeats, Clock* clock, uint64_t term,
                           const heartbeat::LeaseReply* grant)
    : config_(config),
      authority_(std::move(authority)),
      heartbeats_(heartbeats),
      clock_(clock),
      arbiter_(MakeArbiterOptions(config), config.HasWitness() ? term : std::max<uint64_t>(term, 1)) {
  if (grant != nullptr) arbiter_.OnLeaseReply(*grant);
}

PrimaryGuard::~PrimaryGuard() { Stop(); }

void PrimaryGuard::Start() { thread_ = std::thread([this] { Loop(); }); }

void PrimaryGuard::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void PrimaryGuard::AttachVm(qemu::QmpClient* qmp) {
  std::lock_guard<std::mutex> lock(mu_);
  qmp_ = qmp;
  // A fence decided while QEMU was still starting applies now.
  if (decision_.action == heartbeat::PrimaryAction::kFence || decision_.action == heartbeat::PrimaryAction::kSuperseded) {
    vm_stopped_by_us_ = qmp_->Execute("stop", nlohmann::json::object(), 1000).ok();
  }
}

bool PrimaryGuard::WaitRunnable(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (decision_.action == heartbeat::PrimaryAction::kRun) return true;
    if (stop_ || decision_.action == heartbeat::PrimaryAction::kSuperseded || ShutdownSignal::Requested()) {
      return false;
    }
    if (cv_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() + std::chrono::milliseconds(100))) ==
            std::cv_status::timeout &&
        std::chrono::steady_clock::now() >= deadline) {
      return decision_.action == heartbeat::PrimaryAction::kRun;
    }
  }
}

bool PrimaryGuard::superseded() const {
  std::lock_guard<std::mutex> lock(mu_);
  return decision_.action == heartbeat::PrimaryAction::kSuperseded;
}

uint64_t PrimaryGuard::term() const {
  std::lock_guard<std::mutex> lock(mu_);
  return decision_.term;
}

nlohmann::json PrimaryGuard::StatusJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t now = clock_->NowNanos();
  auto remaining_ms = [now](int64_t until) { return until > now ? double(until - now) / 1e6 : 0.0; };
  nlohmann::json status = {{"guard", heartbeat::PrimaryActionName(decision_.action)},
                           {"term", decision_.term},
                           {"reason", decision_.reason},
                           {"alarm", decision_.alarm ? decision_.alarm : ""},
                           {"lease_valid_ms", remaining_ms(arbiter_.lease_valid_until_ns())},
                           {"standby_support_ms", remaining_ms(arbiter_.support_valid_until_ns())}};
  if (decision_.action == heartbeat::PrimaryAction::kSuperseded) {
    status["superseded_by_term"] = arbiter_.superseding_term();
  }
  return status;
}

void PrimaryGuard::Act(const heartbeat::PrimaryDecision& d) {
  using heartbeat::PrimaryAction;
  std::lock_guard<std::mutex> lock(mu_);
  switch (d.action) {
    case PrimaryAction::kAcquire:
      TLOG_INFO("guard", "waiting for the right to run the VM: %s", d.reason);
      break;
    case PrimaryAction::kRun:
      TLOG_INFO("guard", "may run the VM at term %" PRIu64 ": %s", d.term, d.reason);
      if (qmp_ && vm_stopped_by_us_) {
        Status st = qmp_->Execute("cont", nlohmann::json::object(), 1000).status();
        TLOG_WARN("guard", "UN-FENCED after %.1f ms: VM continues (%s)", (clock_->NowNanos() - fenced_at_ns_) / 1e6,
                  st.ok() ? "cont ok" : st.ToString().c_str());
        vm_stopped_by_us_ = false;
      }
      break;
    case PrimaryAction::kFence:
    case PrimaryAction::kSuperseded: {
      fenced_at_ns_ = clock_->NowNanos();
      Status st = qmp_ ? qmp_->Execute("stop", nlohmann::json::object(), 1000).status()
                       : Status::Aborted("QEMU not started yet");
      if (qmp_ && st.ok()) vm_stopped_by_us_ = true;
      if (d.action == PrimaryAction::kFence) {
        TLOG_ERROR("guard", "FENCED at term %" PRIu64 ": %s; VM paused (%s)", d.term, d.reason,
                   st.ok() ? "QMP stop ok" : st.ToString().c_str());
      } else {
        TLOG_ERROR("guard", "SUPERSEDED: term %" PRIu64 " exists elsewhere (%s): this host must never run the VM "
                   "again; VM paused (%s)", arbiter_.superseding_term(), d.reason,
                   st.ok() ? "QMP stop ok" : st.ToString().c_str());
      }
      break;
    }
  }
}

void PrimaryGuard::Loop() {
  const int64_t interval_ns = int64_t(config_.heartbeat_interval_ms) * 1'000'000;
  int64_t next_renew_ns = 0;
  const char* alarm = nullptr;
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
    int64_t now = clock_->NowNanos();
    if (authority_ && arbiter_.should_renew() && now >= next_renew_ns) {
      // A failed send is about this datagram only; the lease simply runs out if none gets through.
      authority_->RequestRenew(arbiter_.renew_term()).ok();
      next_renew_ns = now + interval_ns;
    }
    heartbeat::LeaseReply reply;
    while (authority_ && authority_->PollReply(&reply)) arbiter_.OnLeaseReply(reply);
    const heartbeat::PeerStatus peer = heartbeats_->peer();
    arbiter_.OnPeer(peer.max_term_seen, peer.support_until_ns);
    now = clock_->NowNanos();
    const heartbeat::PrimaryDecision decision = arbiter_.Tick(now);
    if (decision.changed) Act(decision);
    if (decision.alarm != alarm) {
      if (decision.alarm) TLOG_WARN("guard", "ALARM: %s", decision.alarm);
      else TLOG_INFO("guard", "alarm cleared");
      alarm = decision.alarm;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      decision_ = decision;
      cv_.notify_all();
    }
    // Sleep until the next renew, the next validity deadline, or a reply from the authority.
    const int64_t wake = std::min(next_renew_ns, arbiter_.NextDeadline(now));
    const int64_t wait_ns = std::clamp<int64_t>(wake - clock_->NowNanos(), 0, interval_ns);
    pollfd pfd{authority_ ? authority_->wait_fd() : -1, POLLIN, 0};
    const timespec timeout{0, long(wait_ns)};
    ppoll(&pfd, pfd.fd >= 0 ? 1 : 0, &timeout, nullptr);
  }
}

}  // namespace tandem::cli
