// A tandem deployment on the fault lab: witness, standby and primary each in their own "host" namespace, real
// tandem processes and real QEMU (bare-metal test guest under KVM), the invariant monitor watching both QEMUs
// through an extra observer QMP socket, and helpers to inject faults and read what every role says.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "tests/faults/lab.h"
#include "tests/support/kvm.h"
#include "tests/faults/monitor.h"

namespace tandem::faults {

// Why KVM cannot run the checkpoint path here ("" when it can): TANDEM_KVM=usable|unusable, else scripts/probe-kvm.
using ::tandem::testing::KvmUnusableReason;

struct ClusterOptions {
  bool witness = true;  // run `tandem witness` on the witness host and configure [witness]
  bool relay = false;   // every cross-host endpoint goes through the lab's relay (delay/jitter scenarios)
  int interval_ms = 10;
  int timeout_ms = 60;
  int promise_ms = 60;
  int lease_ms = 150;
  int epoch_ms = 50;
  std::string extra_config;  // TOML laid over the generated configuration (its keys replace generated ones)
};

class FaultCluster {
 public:
  explicit FaultCluster(ClusterOptions options = {});
  ~FaultCluster();
  FaultCluster(const FaultCluster&) = delete;
  FaultCluster& operator=(const FaultCluster&) = delete;

  // Not ok when the lab could not be built (then nothing else may be called).
  const Status& init_status() const { return init_; }
  NetLab& lab() { return *lab_; }
  InvariantMonitor& monitor() { return *monitor_; }
  const ClusterOptions& options() const { return options_; }
  std::string config_path() const { return dir_ + "/tandem.conf"; }
  std::string dir() const { return dir_; }

  // Start `role` ("witness", "standby", "primary") in its host; returns the tandem pid (or -1, message in log).
  pid_t Start(const std::string& role);
  // Witness (when configured), standby, primary; true once the standby applied `epochs` epochs and the monitor saw
  // the primary's VM running. On false, `why` says what did not happen.
  bool StartProtected(uint64_t epochs, std::string* why);

  // kill -9 the role's tandem and, for primary/standby, its QEMU.
  void Kill9(const std::string& role);
  pid_t pid(const std::string& role) const;

  // <state_dir>/status.json of the role, or null.
  nlohmann::json StatusOf(const std::string& role) const;
  std::string State(const std::string& role) const;  // status "state", "" when none
  bool WaitFor(const std::string& role, int timeout_ms, const std::function<bool(const nlohmann::json&)>& pred) const;
  // "" while the role's tandem runs (or was never started), else how it ended.
  std::string Exited(const std::string& role);
  std::string Log(const std::string& role) const;
  std::string Serial(const std::string& role) const;
  // Tails of every log and serial console plus the monitor summary, for assertion messages.
  std::string Diagnostics() const;

 private:
  std::string StateDir(const std::string& role) const { return dir_ + "/" + role; }
  std::string MemoryDir() const { return "/dev/shm/tandem-test-" + vm_name_; }
  void WriteConfig();

  ClusterOptions options_;
  Status init_;
  std::unique_ptr<NetLab> lab_;
  std::unique_ptr<InvariantMonitor> monitor_;
  std::string dir_, vm_name_;
  pid_t pids_[3] = {-1, -1, -1};  // witness, standby, primary
};

// The JSON line a scenario appends to $TANDEM_FAULT_RESULTS when it ends (pass, fail or skip): one per scenario.
// Declare it first in the test body so it is written after everything else was torn down.
struct ScenarioRecord {
  explicit ScenarioRecord(std::string scenario) : name(std::move(scenario)) {}
  ~ScenarioRecord();
  std::string name;
  uint64_t split_brain = 0, term_regressions = 0;
  bool false_failover = false;
  double detect_ms = -1, failover_ms = -1;  // < 0: not applicable / not measured
  nlohmann::json extra = nlohmann::json::object();
};

}  // namespace tandem::faults
