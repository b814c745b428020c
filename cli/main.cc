// tandem: fault tolerance for a QEMU/KVM VM on two hosts. See README.md.
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli/config.h"
#include "cli/options.h"
#include "common/log.h"
#include "heartbeat/witness.h"
#include "qemu-integration/qemu_process.h"
#include "roles/primary.h"
#include "roles/qemu_host.h"
#include "roles/standby.h"
#include "roles/status_file.h"

namespace tandem::cli {
namespace {

constexpr const char* kUsage = R"(usage: tandem <command> --config FILE [options]

commands:
  primary     run the protected VM here and replicate it to the standby
  standby     keep a replica of the VM and resume it when the primary is lost
  witness     run the witness (the third vote: grants the primary role as a lease with a term)
  qemu-args   print the QEMU command line tandem uses (--role primary|standby)
  status      show the state of the roles on this host (--json for machine output)

options:
  --config FILE   the shared configuration file (see README.md)
  --verbose       per-epoch debug logs
)";

struct Args {
  std::string command, config, role = "primary";
  bool json = false, verbose = false;
};

bool ParseArgs(int argc, char** argv, Args* args) {
  if (argc < 2) return false;
  args->command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) {
      args->config = argv[++i];
    } else if (a == "--role" && i + 1 < argc) {
      args->role = argv[++i];
    } else if (a == "--json") {
      args->json = true;
    } else if (a == "--verbose") {
      args->verbose = true;
    } else {
      fprintf(stderr, "tandem: unknown option %s\n", a.c_str());
      return false;
    }
  }
  return !args->config.empty();
}

std::string ShellQuote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") ==
                        std::string::npos) {
    return s;
  }
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int QemuArgs(const Config& config, const std::string& role) {
  if (role != "primary" && role != "standby") {
    fprintf(stderr, "tandem: --role must be primary or standby\n");
    return 2;
  }
  const qemu::QemuRole qemu_role = role == "primary" ? qemu::QemuRole::kPrimary : qemu::QemuRole::kStandby;
  const qemu::VmConfig vm = MakeVmConfig(config, qemu_role);
  if (Status st = qemu::ValidateVmConfig(vm); !st.ok()) {
    fprintf(stderr, "tandem: %s\n", st.ToString().c_str());
    return 1;
  }
  auto binary = qemu::FindQemuBinary();
  std::string line = binary.ok() ? binary.value() : "qemu-system-x86_64";
  for (const std::string& a : qemu::BuildQemuArgs(vm, qemu_role)) {
    line += " " + ShellQuote(a);
  }
  printf("%s\n", line.c_str());
  return 0;
}

int RunWitness(const Config& config) {
  SetLogTag("witness");
  if (!config.HasWitness() && config.witness_listen.empty()) {
    fprintf(stderr, "tandem: witness.address (or witness.listen) is not set: this configuration has no witness\n");
    return 1;
  }
  if (Status st = EnsurePrivateDir(config.witness_state_dir); !st.ok()) {
    fprintf(stderr, "tandem: %s\n", st.ToString().c_str());
    return 1;
  }
  heartbeat::WitnessOptions options;
  options.listen_address = config.witness_listen.empty() ? config.witness_address : config.witness_listen;
  options.psk = config.psk;
  options.state_path = config.witness_state_dir + "/witness.json";
  options.lease_ms = config.lease_ms;
  if (Status st = heartbeat::RunWitnessDaemon(options); !st.ok()) {
    TLOG_ERROR("witness", "%s", st.ToString().c_str());
    return 1;
  }
  return 0;
}

int ShowStatus(const Config& config, bool json) {
  nlohmann::json all = nlohmann::json::object();
  for (const auto& [role, dir] : {std::pair{"primary", config.primary_state_dir}, {"standby", config.standby_state_dir}}) {
    auto status = roles::ReadStatusFile(dir);
    all[role] = status.ok() ? status.value() : nlohmann::json{{"state", "not running here"}};
    // A status file outlives a killed process: say so instead of showing its last state as current.
    if (all[role].contains("pid") && kill(all[role]["pid"].get<int>(), 0) != 0 && errno == ESRCH) {
      all[role]["state"] = "DEAD (pid " + all[role]["pid"].dump() + " gone; last state " +
                           all[role].value("state", std::string("?")) + ")";
      all[role].erase("peer");
    }
  }
  // Guest memory still on this host: in use by a running role, or left behind by one that was killed.
  nlohmann::json memory_files = nlohmann::json::array();
  for (const FileOnDisk& file : ListFiles(config.memory_dir, config.MemoryFilePrefix())) {
    memory_files.push_back({{"path", file.path}, {"bytes", file.bytes}});
  }
  if (json) {
    all["memory_files"] = memory_files;
    printf("%s\n", all.dump(2).c_str());
    return 0;
  }
  printf("VM %s\n", config.vm_name.c_str());
  printf("%-8s %-12s %-5s %-9s %-8s %-6s %-22s %s\n", "ROLE", "STATE", "TERM", "PROTECTED", "EPOCH", "PEER",
         "WITNESS", "DETAIL");
  for (const auto& [role, s] : all.items()) {
    auto get = [&](const char* key) { return s.contains(key) ? s[key].dump() : std::string("-"); };
    const nlohmann::json guard = s.value("guard", nlohmann::json::object());
    std::string peer = s.contains("peer") ? (s["peer"].value("alive", false) ? "alive" : "lost") : "-";
    std::string epoch = role == "primary" ? get("epoch") : get("last_applied");
    std::string witness = "-";
    if (guard.contains("witness")) {
      const auto& w = guard["witness"];
      witness = !w.value("configured", false) ? "none (two-host)"
                : w.value("reachable", false) ? "reachable" : "UNREACHABLE";
      if (guard.value("lease_valid_ms", int64_t(-1)) >= 0) {
        witness += " lease " + std::to_string(guard["lease_valid_ms"].get<int64_t>()) + "ms";
      }
    }
    std::string detail = s.contains("error") ? s["error"].get<std::string>()
                         : role == "primary" ? "acked " + (s.contains("standby") ? s["standby"]["last_acked"].dump() : "-")
                                             : "rejected " + get("epochs_rejected");
    if (s.contains("resume_ms")) detail += " resume_ms " + get("resume_ms");
    if (s.contains("standby") && s["standby"].contains("compression")) {
      detail += ", compression " + s["standby"]["compression"].get<std::string>();
    }
    if (!guard.value("alarm", std::string()).empty()) detail += " ALARM: " + guard["alarm"].get<std::string>();
    printf("%-8s %-12s %-5s %-9s %-8s %-6s %-22s %s\n", role.c_str(), s.value("state", "?").c_str(), get("term").c_str(),
           role == "primary" ? (s.value("protected", false) ? "yes" : "NO") : "-", epoch.c_str(), peer.c_str(),
           witness.c_str(), detail.c_str());
    if (s.contains("peer") && s["peer"].contains("links")) {
      for (const auto& link : s["peer"]["links"]) {
        printf("         link %s -> %s: %s, rtt %.2f ms, loss %.0f%%\n", link.value("local", "").c_str(),
               link.value("peer", "").c_str(), link.value("up", false) ? "up" : "DOWN", link.value("rtt_ms", 0.0),
               100 * link.value("loss", 0.0));
      }
    }
  }
  for (const auto& file : memory_files) {
    printf("memory file %s: %.1f MiB\n", file["path"].get<std::string>().c_str(),
           file["bytes"].get<uint64_t>() / 1048576.0);
  }
  return 0;
}

int Main(int argc, char** argv) {
  Args args;
  if (!ParseArgs(argc, argv, &args)) {
    fputs(kUsage, stderr);
    return 2;
  }
  auto config = LoadConfig(args.config);
  if (!config.ok()) {
    fprintf(stderr, "tandem: %s\n", config.status().ToString().c_str());
    return 1;
  }
  if (args.verbose) SetLogLevel(LogLevel::kDebug);
  if (args.command == "primary" || args.command == "standby") {
    // Everything the roles and their QEMU create (sockets, logs, status) is for this user only; the directories
    // are private too (common/SECURITY.md), this is the second wall.
    umask(077);
    static roles::Shutdown shutdown;  // lives as long as the signal thread
    roles::RequestShutdownOnSignals(&shutdown);
    return args.command == "primary" ? roles::RunPrimary(MakePrimaryOptions(*config), &shutdown)
                                     : roles::RunStandby(MakeStandbyOptions(*config), &shutdown);
  }
  if (args.command == "witness") return RunWitness(*config);
  if (args.command == "qemu-args") return QemuArgs(*config, args.role);
  if (args.command == "status") return ShowStatus(*config, args.json);
  fputs(kUsage, stderr);
  return 2;
}

}  // namespace
}  // namespace tandem::cli

int main(int argc, char** argv) { return tandem::cli::Main(argc, argv); }
