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
#include "common/systemd_notifier.h"
#include "heartbeat/witness.h"
#include "qemu-integration/qemu_process.h"
#include "roles/primary.h"
#include "roles/qemu_host.h"
#include "roles/standby.h"
#include "roles/status_report.h"

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

int RunWitness(const Config& config, ServiceNotifier* notifier) {
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
  options.notifier = notifier;
  if (Status st = heartbeat::RunWitnessDaemon(options); !st.ok()) {
    TLOG_ERROR("witness", "%s", st.ToString().c_str());
    return 1;
  }
  return 0;
}

int ShowStatus(const Config& config, bool json) {
  const nlohmann::json status = roles::CollectStatus({config.primary_state_dir, config.standby_state_dir,
                                                      config.memory_dir, config.MemoryFilePrefix()});
  fputs(json ? (status.dump(2) + "\n").c_str() : roles::FormatStatus(config.vm_name, status).c_str(), stdout);
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
  // Under systemd (Type=notify units in systemd/): READY, STATUS and the watchdog; elsewhere it does nothing.
  static SystemdNotifier notifier;
  if (args.command == "primary" || args.command == "standby") {
    // Everything the roles and their QEMU create (sockets, logs, status) is for this user only; the directories
    // are private too (common/SECURITY.md), this is the second wall.
    umask(077);
    static roles::Shutdown shutdown;  // lives as long as the signal thread
    roles::RequestShutdownOnSignals(&shutdown);
    return args.command == "primary" ? roles::RunPrimary(MakePrimaryOptions(*config), &shutdown, &notifier)
                                     : roles::RunStandby(MakeStandbyOptions(*config), &shutdown, &notifier);
  }
  if (args.command == "witness") return RunWitness(*config, &notifier);
  if (args.command == "qemu-args") return QemuArgs(*config, args.role);
  if (args.command == "status") return ShowStatus(*config, args.json);
  fputs(kUsage, stderr);
  return 2;
}

}  // namespace
}  // namespace tandem::cli

int main(int argc, char** argv) { return tandem::cli::Main(argc, argv); }
