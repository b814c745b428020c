#include "tests/integration/cluster.h"

#include "tests/support/free_port.h"
#include "tests/support/text_file.h"
#include "tests/support/toml_overlay.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>
#include <thread>

extern char** environ;

namespace tandem::testing {

Cluster::Cluster(const std::string& extra_config, int epoch_ms) {
  char tmpl[] = "/tmp/tandem-it.XXXXXX";
  dir_ = mkdtemp(tmpl);
  const std::string name = "it" + std::to_string(getpid()) + "-" + dir_.substr(dir_.size() - 6);
  std::ostringstream conf;
  conf << "[vm]\nname = \"" << name << "\"\nmemory_mb = 32\naccel = \"kvm\"\nkernel = \"" << TANDEM_TEST_GUEST
       << "\"\nappend = \"pages=64 rate=2000\"\nepoch_ms = " << epoch_ms << "\nmemory_dir = \"" << memory_dir()
       << "\"\n\n"
       << "[primary]\nstate_dir = \"" << dir_ << "/primary\"\nheartbeat = [\"127.0.0.1:" << FreePort(SOCK_DGRAM)
       << "\", \"127.0.0.2:" << FreePort(SOCK_DGRAM) << "\"]\n\n"
       << "[standby]\nstate_dir = \"" << dir_ << "/standby\"\nreplication = \"127.0.0.1:" << FreePort(SOCK_STREAM)
       << "\"\nheartbeat = [\"127.0.0.1:" << FreePort(SOCK_DGRAM) << "\", \"127.0.0.2:" << FreePort(SOCK_DGRAM)
       << "\"]\n\n"
       << "[heartbeat]\ninterval_ms = 10\ntimeout_ms = 80\npsk = \"integration-test-key-" << name << "\"\n\n"
       << "[witness]\naddress = \"127.0.0.1:" << FreePort(SOCK_DGRAM) << "\"\nstate_dir = \"" << dir_
       << "/witness\"\n";
  std::ofstream(config_path()) << OverlayToml(conf.str(), extra_config);
  // The third vote: without it the standby may not promote (the default two-host policy never does).
  Spawn("witness");
}

Cluster::~Cluster() {
  for (const char* role : {"primary", "standby"}) {  // their QEMUs: children of tandem, killed by pid too
    nlohmann::json s = Status(role);
    if (s.is_object() && s.contains("qemu_pid")) spawned_.push_back(s["qemu_pid"].get<int>());
  }
  for (pid_t pid : spawned_) kill(pid, SIGKILL);
  for (pid_t pid : spawned_) waitpid(pid, nullptr, WNOHANG);
  if (!std::getenv("TANDEM_KEEP_TEST_DIRS")) std::filesystem::remove_all(dir_);
  std::filesystem::remove_all(memory_dir());
}

pid_t Cluster::Spawn(const std::string& role) {
  // A restarted role must not be judged by the status its previous incarnation left behind.
  std::filesystem::remove(dir_ + "/" + role + "/status.json");
  const std::string log = dir_ + "/" + role + ".log";
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  std::string binary = TANDEM_BINARY, config = config_path();
  char* argv[] = {binary.data(), const_cast<char*>(role.c_str()), const_cast<char*>("--config"), config.data(),
                  nullptr};
  pid_t pid = -1;
  posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  spawned_.push_back(pid);
  return pid;
}

pid_t Cluster::StartStandby() { return Spawn("standby"); }
pid_t Cluster::StartPrimary() { return Spawn("primary"); }

nlohmann::json Cluster::Status(const std::string& role) const {
  auto parsed = nlohmann::json::parse(ReadWholeFile(dir_ + "/" + role + "/status.json"), nullptr, false);
  return parsed.is_discarded() ? nlohmann::json() : parsed;
}

bool Cluster::WaitFor(const std::string& role, int timeout_ms,
                      const std::function<bool(const nlohmann::json&)>& pred) const {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    nlohmann::json s = Status(role);
    if (s.is_object() && pred(s)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

uint64_t Cluster::StatusNumber(const std::string& role, const char* key) const {
  nlohmann::json s = Status(role);
  return s.is_object() && s.contains(key) && s[key].is_number() ? s[key].get<uint64_t>() : 0;
}

std::string Cluster::Serial(const std::string& role) const { return ReadWholeFile(dir_ + "/" + role + "/serial.log"); }
std::string Cluster::Log(const std::string& role) const { return ReadWholeFile(dir_ + "/" + role + ".log"); }

std::string Cluster::TcgColoHang() const {
  static const std::regex tcg(R"(accel\s*=\s*["']tcg["'])");
  if (!std::regex_search(ReadWholeFile(config_path()), tcg)) return "";
  for (const char* role : {"primary", "standby"}) {
    const std::string log = Log(role);
    // Inside a checkpoint (after CHECKPOINT_REQUEST): QEMU stopped the VM and never sent its state. Not
    // "waiting for CHECKPOINT_REQUEST: ...", which is a checkpoint nobody started (tandem's trigger, QEMU's timer).
    const size_t at = log.find("Timeout: checkpoint: QEMU sent nothing for");
    if (at == std::string::npos) continue;
    const size_t start = log.rfind('\n', at) + 1;  // npos + 1 == 0: the first line
    return std::string(role) + ": " + log.substr(start, log.find('\n', at) - start);
  }
  return "";
}

std::vector<CounterLine> Cluster::Counters(const std::string& role) const {
  static const std::regex line(R"(counter=(\d+) (ok|INVARIANT BROKEN))");
  std::vector<CounterLine> out;
  const std::string text = Serial(role);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), line); it != std::sregex_iterator(); ++it) {
    out.push_back({std::stoull((*it)[1]), (*it)[2] == "ok"});
  }
  return out;
}

void Cluster::Kill9(pid_t pid) {
  kill(pid, SIGKILL);
  for (pid_t p : spawned_) {
    if (p == pid) waitpid(pid, nullptr, 0);
  }
}

std::string Cluster::Diagnostics() const {
  std::string out;
  for (const char* role : {"primary", "standby"}) {
    out += std::string("\n--- ") + role + " log (tail) ---\n" + Tail(Log(role), 25);
    out += std::string("--- ") + role + " serial (tail) ---\n" + Tail(Serial(role), 5);
  }
  out += "--- witness log (tail) ---\n" + Tail(Log("witness"), 10);
  return out;
}

}  // namespace tandem::testing
