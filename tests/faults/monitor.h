// The invariants of issue 4, checked continuously while a fault scenario runs:
//   1. at no instant are two VMs of the same protected VM running unpaused (no split brain);
//   2. no role's term ever goes backwards.
//
// One thread per QEMU polls its own QMP connection (an observer socket, not tandem's) with query-status every
// poll_ms and drains STOP/RESUME/SHUTDOWN events; one thread reads each role's status.json ("term", "state").
//
// Counting split brain without false positives from polling skew: a sample k of QEMU X says "running" at some
// instant in [sent_k, received_k]. Two consecutive running samples of X with no STOP/SHUTDOWN event between them
// prove X ran throughout [received_{k-1}, sent_k] (QEMU emits an event on every stop, and an event emitted before a
// command always precedes that command's reply on the socket). A running sample of the other QEMU whose whole
// [sent, received] lies inside such a proven interval of X is an instant where both ran: one split-brain count.
// Samples where both merely looked running (the other's latest sample running, unproven) are counted apart.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace tandem::faults {

struct MonitoredRole {
  std::string name;         // "primary", "standby", "witness"
  std::string qmp_socket;   // observer QMP socket of its QEMU ("" for a role without a VM, e.g. the witness)
  std::string status_file;  // its status.json ("" when none)
  // Where the term and the state are in that file (JSON pointers).
  std::string term_pointer = "/term";
  std::string state_pointer = "/state";
};

struct RoleReport {
  std::string name;
  uint64_t samples = 0, running_samples = 0, connects = 0;
  double first_running_ms = 0, last_running_ms = 0;  // realtime ms of samples that saw it running (0: never)
  std::vector<double> resume_events_ms;              // QMP RESUME event timestamps (realtime ms)
  uint64_t stop_events = 0, shutdown_events = 0;
  uint64_t max_term = 0, term_regressions = 0;
  std::vector<std::pair<double, std::string>> states;  // (realtime ms, "state") on every change of status.json
  std::string last_status;                             // the last status.json text that parsed
};

struct MonitorReport {
  uint64_t split_brain = 0;       // proven instants with two QEMUs running (see above)
  uint64_t looked_both_running = 0;  // unproven: a running sample while the other's latest was running
  std::string first_violation;    // human description of the first split brain or term regression
  std::vector<RoleReport> roles;

  const RoleReport* role(const std::string& name) const;
  uint64_t term_regressions() const;
  // One line per role for failure messages.
  std::string Summary() const;
};

class InvariantMonitor {
 public:
  explicit InvariantMonitor(std::vector<MonitoredRole> roles, int poll_ms = 5);
  ~InvariantMonitor();  // Stop()s
  InvariantMonitor(const InvariantMonitor&) = delete;
  InvariantMonitor& operator=(const InvariantMonitor&) = delete;

  void Start();
  void Stop();
  MonitorReport Report() const;

 private:
  struct Sample {
    double sent_ms, received_ms;
    bool counted = false;
  };
  struct RoleState {
    MonitoredRole spec;
    RoleReport report;
    // Proven continuous running interval [since_ms, until_ms] (valid when streak).
    bool streak = false;
    double since_ms = 0, until_ms = 0;
    bool last_running = false;  // latest sample
    std::deque<Sample> recent_running;  // running samples of the last few seconds
    std::string last_state;
    uint64_t last_term = 0;
  };
  void PollQmp(size_t index);
  void PollStatus();
  // Under mu_: role `index` just proved [since, until]; count the other roles' running samples inside it.
  void CheckOverlap(size_t index);

  const int poll_ms_;
  mutable std::mutex mu_;
  std::vector<RoleState> roles_;
  uint64_t split_brain_ = 0, looked_both_ = 0;
  std::string first_violation_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace tandem::faults
