// The primary's right to run its VM, kept by one thread: it renews the lease with the witness (or runs on the
// two-host policy), feeds the heartbeat view of the standby to the PrimaryArbiter (heartbeat/arbiter.h) and acts
// on its decisions: QMP `stop` when support is lost (fence), `cont` when it comes back at the same term, and a
// final stop when a newer term exists elsewhere (superseded). The checkpoint loop asks WaitRunnable() before it
// lets QEMU resume the VM after a checkpoint, so a fenced VM also stays paused inside COLO's own pause.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/config.h"
#include "common/env.h"
#include "common/status.h"
#include "heartbeat/arbiter.h"
#include "heartbeat/heartbeat.h"
#include "heartbeat/lease.h"
#include "qemu-integration/qmp.h"

namespace tandem::cli {

// The lease authority the configuration names (the UDP witness), or nullptr in two-host mode.
Result<std::unique_ptr<heartbeat::LeaseAuthority>> MakeLeaseAuthority(const Config& config, const std::string& node,
                                                                       Clock* clock);
heartbeat::ArbiterOptions MakeArbiterOptions(const Config& config);

class PrimaryGuard {
 public:
  // `term` 0: register with the witness (fresh start). A promoted standby passes its granted term and the GRANT.
  PrimaryGuard(const Config& config, std::unique_ptr<heartbeat::LeaseAuthority> authority,
               heartbeat::HeartbeatService* heartbeats, Clock* clock, uint64_t term = 0,
               const heartbeat::LeaseReply* grant = nullptr);
  ~PrimaryGuard();

  void Start();
  void Stop();

  // From now on, fencing acts on this VM (QMP stop/cont). `qmp` must outlive the guard or be detached.
  void AttachVm(qemu::QmpClient* qmp);
  // Blocks while the VM may not run. True once it may; false when superseded, on shutdown or after timeout_ms.
  bool WaitRunnable(int timeout_ms);
  bool superseded() const;
  uint64_t term() const;
  // For status.json: "state" (acquiring|running|fenced|superseded), term, lease and witness details, alarm.
  nlohmann::json StatusJson() const;

 private:
  void Loop();
  void Act(const heartbeat::PrimaryDecision& decision);

  const Config& config_;
  std::unique_ptr<heartbeat::LeaseAuthority> authority_;
  heartbeat::HeartbeatService* heartbeats_;
  Clock* clock_;
  heartbeat::PrimaryArbiter arbiter_;
  std::thread thread_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  heartbeat::PrimaryDecision decision_;
  qemu::QmpClient* qmp_ = nullptr;
  bool vm_stopped_by_us_ = false;
  int64_t fenced_at_ns_ = 0;
};

}  // namespace tandem::cli
