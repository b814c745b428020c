// The arbitration interfaces (arbitration.h) over heartbeat::PrimaryGuard / StandbyGuard, the heartbeat service
// and the lease authority. VmGuard acts on the VM: QMP `stop` when support is lost, `cont` when it comes back at
// the same term, a final stop when a newer term exists elsewhere.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/status.h"
#include "heartbeat/guard.h"
#include "heartbeat/heartbeat.h"
#include "heartbeat/lease.h"
#include "heartbeat/witness_client.h"
#include "roles/arbitration.h"
#include "roles/shutdown.h"

namespace tandem::roles {

// The witness client `witness` names (started), or nullptr in two-host mode.
Result<std::unique_ptr<heartbeat::LeaseAuthority>> MakeLeaseAuthority(
    const std::optional<heartbeat::WitnessClientOptions>& witness, Clock* clock);
nlohmann::json GuardStatusJson(const heartbeat::GuardStatus& status);

class VmGuard final : public RunGuard {
 public:
  // `term` 0: register with the witness (fresh start). A promoted standby passes its granted term and the grant.
  // `authority` null: two-host mode. `heartbeats` (started) and `shutdown` must outlive the guard.
  VmGuard(const heartbeat::ArbiterOptions& options, int interval_ms,
          std::unique_ptr<heartbeat::LeaseAuthority> authority, heartbeat::HeartbeatService* heartbeats,
          Shutdown* shutdown, Clock* clock, uint64_t term = 0,
          std::optional<heartbeat::LeaseReply> grant = std::nullopt);
  ~VmGuard() override;

  Status Start();
  void Stop();

  void AttachVm(Vm* vm) override;
  bool WaitRunnable(int timeout_ms) override;
  bool superseded() const override;
  uint64_t term() const override;
  void SetLastEpoch(uint64_t epoch) override { guard_.SetLastEpoch(epoch); }
  nlohmann::json StatusJson() const override { return GuardStatusJson(guard_.status()); }
  heartbeat::PeerStatus peer() const override { return heartbeats_->peer(); }
  heartbeat::GuardStatus status() const { return guard_.status(); }

 private:
  void Act(const heartbeat::PrimaryDecision& decision);  // on the guard thread

  std::unique_ptr<heartbeat::LeaseAuthority> authority_;
  heartbeat::HeartbeatService* heartbeats_;
  Shutdown* shutdown_;
  Clock* clock_;
  heartbeat::PrimaryGuard guard_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  heartbeat::PrimaryDecision decision_;
  Vm* vm_ = nullptr;
  bool vm_stopped_by_us_ = false;
  int64_t fenced_at_ns_ = 0;
};

class StandbyArbitration final : public Promotion {
 public:
  // Registers for the heartbeats' peer loss: construct before heartbeats->Start(). `heartbeats` must outlive
  // this; the destructor stops them (their callback points here).
  StandbyArbitration(const heartbeat::ArbiterOptions& options, int interval_ms,
                     heartbeat::HeartbeatService* heartbeats, Shutdown* shutdown, Clock* clock);
  ~StandbyArbitration() override;
  Status Start(std::unique_ptr<heartbeat::LeaseAuthority> authority);

  void SetResumePoint(bool ready, uint64_t last_applied_epoch) override;
  bool WaitPromoted(int timeout_ms) override;
  void Wake() override;
  nlohmann::json StatusJson() const override;
  heartbeat::PeerStatus peer() const override { return heartbeats_->peer(); }
  PromotionDecision Decision() override;
  Result<std::unique_ptr<RunGuard>> BecomePrimary(const PromotionDecision& decision, uint64_t last_epoch) override;

 private:
  const heartbeat::ArbiterOptions options_;
  const int interval_ms_;
  heartbeat::HeartbeatService* heartbeats_;
  Shutdown* shutdown_;
  Clock* clock_;
  std::unique_ptr<heartbeat::LeaseAuthority> authority_;
  std::unique_ptr<heartbeat::StandbyGuard> guard_;
  std::optional<heartbeat::LeaseReply> grant_;  // the witness's GRANT of our PROMOTE

  std::mutex mu_;
  std::condition_variable cv_;
  bool promoted_ = false;
  bool woken_ = false;
  int64_t peer_lost_ns_ = 0;
};

}  // namespace tandem::roles
