// What the primary role does with the arbiter's decisions for its VM. heartbeat::PrimaryGuard keeps the lease and
// decides (run / fence / superseded); this adapter acts on the VM: QMP `stop` when support is lost, `cont` when
// it comes back at the same term, a final stop when a newer term exists elsewhere. The checkpoint loop asks
// WaitRunnable() before it lets QEMU resume the VM after a checkpoint, so a fenced VM also stays paused inside
// COLO's own checkpoint pause.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "cli/config.h"
#include "common/env.h"
#include "common/status.h"
#include "heartbeat/guard.h"
#include "heartbeat/heartbeat.h"
#include "heartbeat/lease.h"
#include "qemu-integration/qmp.h"

namespace tandem::cli {

// The lease authority the configuration names (the UDP witness), or nullptr in two-host mode.
Result<std::unique_ptr<heartbeat::LeaseAuthority>> MakeLeaseAuthority(const Config& config, const std::string& node,
                                                                       Clock* clock);
heartbeat::ArbiterOptions MakeArbiterOptions(const Config& config);
nlohmann::json GuardStatusJson(const heartbeat::GuardStatus& status);

class VmGuard {
 public:
  // `term` 0: register with the witness (fresh start). A promoted standby passes its granted term and the grant.
  VmGuard(const Config& config, std::unique_ptr<heartbeat::LeaseAuthority> authority,
          heartbeat::HeartbeatService* heartbeats, Clock* clock, uint64_t term = 0,
          std::optional<heartbeat::LeaseReply> grant = std::nullopt);
  ~VmGuard();

  Status Start();
  void Stop();

  // From now on, fencing acts on this VM. A fence decided while QEMU was starting applies at once.
  void AttachVm(qemu::QmpClient* qmp);
  // Blocks while the VM may not run. True once it may; false when superseded, on shutdown or after timeout_ms.
  bool WaitRunnable(int timeout_ms);
  bool superseded() const;
  uint64_t term() const;
  void SetLastEpoch(uint64_t epoch) { guard_.SetLastEpoch(epoch); }
  // "state" (acquire|run|fence|superseded) with term, lease and witness details, for status.json.
  nlohmann::json StatusJson() const { return GuardStatusJson(guard_.status()); }

 private:
  void Act(const heartbeat::PrimaryDecision& decision);  // on the guard thread

  std::unique_ptr<heartbeat::LeaseAuthority> authority_;
  Clock* clock_;
  heartbeat::PrimaryGuard guard_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  heartbeat::PrimaryDecision decision_;
  qemu::QmpClient* qmp_ = nullptr;
  bool vm_stopped_by_us_ = false;
  int64_t fenced_at_ns_ = 0;
};

}  // namespace tandem::cli
