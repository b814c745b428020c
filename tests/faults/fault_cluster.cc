#include "tests/faults/fault_cluster.h"

#include "tests/support/text_file.h"
#include "tests/support/toml_overlay.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

namespace tandem::faults {
namespace {

using ::tandem::testing::ReadWholeFile;
using ::tandem::testing::Tail;
using ::tandem::testing::OverlayToml;

constexpr int kHeartbeatPort = 7101;
constexpr int kReplicationPort = 7400;
constexpr int kWitnessPort = 7200;
constexpr const char* kRoles[] = {"witness", "standby", "primary"};

int RoleIndex(const std::string& role) {
  for (int i = 0; i < 3; ++i) {
    if (role == kRoles[i]) return i;
  }
  return -1;
}

Host RoleHost(const std::string& role) {
  return role == "primary" ? Host::kPrimary : role == "standby" ? Host::kStandby : Host::kWitness;
}

std::string Endpoint(Host host, Link link, int port) { return NetLab::Address(host, link) + ":" + std::to_string(port); }

}  // namespace


FaultCluster::FaultCluster(ClusterOptions options) : options_(std::move(options)) {
  // Debug knob: exercise the harness against a tandem without a witness.
  if (const char* w = std::getenv("TANDEM_FAULT_WITNESS"); w && std::string(w) == "0") options_.witness = false;
  auto lab = NetLab::Create(TANDEM_FAULT_RELAY);
  if (!lab.ok()) {
    init_ = lab.status();
    return;
  }
  lab_ = std::move(lab).value();
  dir_ = lab_->dir();
  vm_name_ = "flt" + std::to_string(getpid()) + "-" + dir_.substr(dir_.size() - 6);
  for (const char* role : kRoles) std::filesystem::create_directories(StateDir(role));
  if (options_.relay) {
    // Both directions of every heartbeat link, the replication stream and the witness.
    for (Link l : {Link::kData0, Link::kData1}) {
      for (Host h : {Host::kPrimary, Host::kStandby}) {
        if (auto r = lab_->AddRelayRoute(Proto::kUdp, h, l, kHeartbeatPort); !r.ok()) init_ = r.status();
      }
    }
    if (auto r = lab_->AddRelayRoute(Proto::kTcp, Host::kStandby, Link::kData0, kReplicationPort); !r.ok()) {
      init_ = r.status();
    }
    if (options_.witness) {
      if (auto r = lab_->AddRelayRoute(Proto::kUdp, Host::kWitness, Link::kMgmt, kWitnessPort); !r.ok()) {
        init_ = r.status();
      }
    }
    if (init_.ok()) init_ = lab_->StartRelay();
  }
  WriteConfig();
  monitor_ = std::make_unique<InvariantMonitor>(std::vector<MonitoredRole>{
      {"primary", StateDir("primary") + "/observer.qmp", StateDir("primary") + "/status.json"},
      {"standby", StateDir("standby") + "/observer.qmp", StateDir("standby") + "/status.json"},
      // The witness's persisted term for this VM (its state file).
      {"witness", "", StateDir("witness") + "/witness.json", "/vms/" + vm_name_ + "/term", "/vms/" + vm_name_ + "/holder"}});
  monitor_->Start();
}

void FaultCluster::WriteConfig() {
  // Every value here is an address, a path or a word without quotes or backslashes: quoting is enough.
  auto q = [](const std::string& s) { return "\"" + s + "\""; };
  std::ostringstream conf;
  // The observer QMP socket is relative: each role's QEMU runs in its state dir (the cwd we give tandem), so the
  // same qemu_extra yields one socket per role.
  conf << "[vm]\nname = " << q(vm_name_) << "\nmemory_mb = 32\naccel = \"kvm\"\nkernel = " << q(TANDEM_TEST_GUEST)
       << "\nappend = \"pages=64 rate=2000\"\nepoch_ms = " << options_.epoch_ms << "\nmemory_dir = " << q(MemoryDir())
       << "\nqemu_extra = [\"-qmp\", \"unix:observer.qmp,server=on,wait=off\"]\n\n"
       << "[primary]\nstate_dir = " << q(StateDir("primary")) << "\nheartbeat = ["
       << q(Endpoint(Host::kPrimary, Link::kData0, kHeartbeatPort)) << ", "
       << q(Endpoint(Host::kPrimary, Link::kData1, kHeartbeatPort)) << "]\n\n"
       << "[standby]\nstate_dir = " << q(StateDir("standby"))
       << "\nreplication = " << q(Endpoint(Host::kStandby, Link::kData0, kReplicationPort))
       << "\nheartbeat = [" << q(Endpoint(Host::kStandby, Link::kData0, kHeartbeatPort)) << ", "
       << q(Endpoint(Host::kStandby, Link::kData1, kHeartbeatPort)) << "]\n\n"
       << "[heartbeat]\ninterval_ms = " << options_.interval_ms << "\ntimeout_ms = " << options_.timeout_ms
       << "\npsk = " << q("fault-lab-test-key-" + vm_name_) << "\n\n";
  if (options_.witness) {
    conf << "[witness]\naddress = " << q(Endpoint(Host::kWitness, Link::kMgmt, kWitnessPort))
         << "\nstate_dir = " << q(StateDir("witness")) << "\nlease_ms = " << options_.lease_ms
         << "\npromise_ms = " << options_.promise_ms << "\n\n";
  }
  std::ofstream(config_path()) << OverlayToml(conf.str(), options_.extra_config);
}

FaultCluster::~FaultCluster() {
  if (monitor_) monitor_->Stop();
  if (lab_) {
    for (const char* role : {"primary", "standby"}) {
      nlohmann::json s = StatusOf(role);
      if (s.is_object() && s.contains("qemu_pid") && s["qemu_pid"].is_number()) lab_->Adopt(s["qemu_pid"].get<int>());
    }
  }
  lab_.reset();  // kills every process in the lab, deletes the namespaces and (unless kept) the directory
  std::filesystem::remove_all(MemoryDir());
}

pid_t FaultCluster::Start(const std::string& role) {
  const int index = RoleIndex(role);
  if (index < 0) return -1;
  // A restarted role must not be judged by the status its previous incarnation left behind.
  std::filesystem::remove(StateDir(role) + "/status.json");
  auto pid = lab_->Spawn(RoleHost(role), {TANDEM_BINARY, role, "--config", config_path()}, dir_ + "/" + role + ".log",
                         StateDir(role));
  if (!pid.ok()) {
    std::ofstream(dir_ + "/" + role + ".log", std::ios::app) << "[fault test] " << pid.status().ToString() << "\n";
    return -1;
  }
  pids_[index] = *pid;
  return *pid;
}

std::string FaultCluster::Exited(const std::string& role) {
  const pid_t p = pid(role);
  return p > 0 ? lab_->ExitDescription(p) : std::string();
}

bool FaultCluster::StartProtected(uint64_t epochs, std::string* why) {
  // Waits for `pred` on `role`'s status, giving up early when one of the started roles' tandem exited.
  auto wait = [&](const std::string& role, int timeout_ms, const std::function<bool(const nlohmann::json&)>& pred) {
    for (int waited = 0; waited < timeout_ms; waited += 100) {
      if (WaitFor(role, 100, pred)) return true;
      for (const char* r : kRoles) {
        if (std::string how = Exited(r); !how.empty()) {
          *why = std::string("tandem ") + r + " " + how + " (see its log)";
          return false;
        }
      }
    }
    return false;
  };
  if (options_.witness) {
    if (Start("witness") < 0) return *why = "cannot start the witness", false;
    // The witness has nothing to wait for; give it a moment to bind before the hosts talk to it.
    for (int i = 0; i < 50 && Log("witness").empty() && StatusOf("witness").is_null(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (Start("standby") < 0) return *why = "cannot start the standby", false;
  if (!wait("standby", 20000, [](const nlohmann::json& s) { return s.value("state", "") == "standby"; })) {
    if (why->empty()) *why = "the standby did not reach state standby";
    return false;
  }
  if (Start("primary") < 0) return *why = "cannot start the primary", false;
  if (!wait("standby", 40000, [&](const nlohmann::json& s) { return s.value("last_applied", uint64_t(0)) >= epochs; })) {
    if (why->empty()) *why = "epochs did not reach the standby";
    return false;
  }
  for (int i = 0; i < 200; ++i) {
    const MonitorReport r = monitor_->Report();
    if (r.role("primary")->running_samples > 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return *why = "the monitor never saw the primary's VM running (observer QMP socket?)", false;
}

pid_t FaultCluster::pid(const std::string& role) const {
  const int index = RoleIndex(role);
  return index < 0 ? -1 : pids_[index];
}

void FaultCluster::Kill9(const std::string& role) {
  const int index = RoleIndex(role);
  if (index < 0) return;
  nlohmann::json s = StatusOf(role);
  pid_t qemu = s.is_object() && s.contains("qemu_pid") && s["qemu_pid"].is_number() ? s["qemu_pid"].get<int>() : -1;
  // Both at once, as when a host dies: QEMU first so that tandem cannot notice and react in between.
  if (qemu > 0) {
    lab_->Adopt(qemu);
    kill(qemu, SIGKILL);
  }
  if (pids_[index] > 0) lab_->Kill(pids_[index]);  // SIGKILL and reap
  if (qemu > 0) lab_->Kill(qemu);                  // already dead: waits until it is gone
  pids_[index] = -1;
}

nlohmann::json FaultCluster::StatusOf(const std::string& role) const {
  auto parsed = nlohmann::json::parse(ReadWholeFile(StateDir(role) + "/status.json"), nullptr, false);
  return parsed.is_discarded() ? nlohmann::json() : parsed;
}

std::string FaultCluster::State(const std::string& role) const {
  nlohmann::json s = StatusOf(role);
  return s.is_object() ? s.value("state", std::string()) : std::string();
}

bool FaultCluster::WaitFor(const std::string& role, int timeout_ms,
                           const std::function<bool(const nlohmann::json&)>& pred) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    nlohmann::json s = StatusOf(role);
    if (s.is_object() && pred(s)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string FaultCluster::Log(const std::string& role) const { return ReadWholeFile(dir_ + "/" + role + ".log"); }
std::string FaultCluster::Serial(const std::string& role) const {
  return ReadWholeFile(StateDir(role) + "/serial.log");
}

std::string FaultCluster::Diagnostics() const {
  if (!lab_) return "\n(no lab)";
  std::string out = "\n--- lab dir " + dir_ + " (TANDEM_KEEP_TEST_DIRS=1 keeps it) ---\n";
  if (monitor_) out += monitor_->Report().Summary();
  for (const char* role : kRoles) {
    out += std::string("--- ") + role + " log (tail) ---\n" + Tail(Log(role), 30);
    out += std::string("--- ") + role + " status ---\n" + ReadWholeFile(StateDir(role) + "/status.json") + "\n";
  }
  for (const char* role : {"primary", "standby"}) {
    out += std::string("--- ") + role + " qemu.log (tail) ---\n" + Tail(ReadWholeFile(StateDir(role) + "/qemu.log"), 5);
    out += std::string("--- ") + role + " serial (tail) ---\n" + Tail(Serial(role), 3);
  }
  return out;
}

ScenarioRecord::~ScenarioRecord() {
  const char* path = std::getenv("TANDEM_FAULT_RESULTS");
  const bool skipped = ::testing::Test::IsSkipped();
  // Destroyed by an exception escaping the test body: gtest records that failure only after we are gone.
  const bool failed = ::testing::Test::HasFailure() || std::uncaught_exceptions() > 0;
  nlohmann::json line = {{"scenario", name},
                         {"passed", !failed && !skipped},
                         {"skipped", skipped},
                         {"split_brain", split_brain},
                         {"false_failover", false_failover ? 1 : 0},
                         {"term_regressions", term_regressions},
                         {"detect_ms", detect_ms >= 0 ? nlohmann::json(detect_ms) : nlohmann::json()},
                         {"failover_ms", failover_ms >= 0 ? nlohmann::json(failover_ms) : nlohmann::json()}};
  for (auto& [k, v] : extra.items()) line[k] = v;
  const std::string text = line.dump() + "\n";
  fprintf(stderr, "[fault result] %s", text.c_str());
  if (!path || !*path) return;
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  ssize_t w = ::write(fd, text.data(), text.size());
  (void)w;
  ::close(fd);
}

}  // namespace tandem::faults
