// tandem: fault tolerance for a QEMU/KVM VM on two hosts. See README.md.
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "config/config.h"
#include "cli/options.h"
#include "common/env.h"
#include "common/log.h"
#include "common/systemd_notifier.h"
#include "heartbeat/witness.h"
#include "libvirt/connection.h"
#include "libvirt/domain_xml.h"
#include "metrics/server.h"
#include "qemu-integration/qemu_process.h"
#include "roles/control.h"
#include "roles/primary.h"
#include "roles/qemu_host.h"
#include "roles/standby.h"
#include "roles/status_report.h"
#include "roles/witness_metrics.h"

namespace tandem::cli {
namespace {

std::string ShellQuote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") ==
                        std::string::npos) {
    return s;
  }
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

int QemuArgs(const Config& config, const std::string& role) {  // role: "primary" or "standby" (checked by CLI11)
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

// The protected domain XML for [libvirt] domain (README.md, "libvirt"): printed, or defined with --apply.
int LibvirtXml(const Config& config, bool apply) {
  if (!config.Libvirt()) {
    fprintf(stderr, "tandem: the configuration names no libvirt domain ([libvirt] domain)\n");
    return 1;
  }
  auto conn = libvirt::Connection::Open(config.libvirt_uri);
  auto xml = conn.ok() ? conn.value()->DomainXml(config.libvirt_domain) : Result<std::string>(conn.status());
  auto protected_domain =
      xml.ok() ? libvirt::ProtectDomainXml(xml.value(), MakeVmConfig(config, qemu::QemuRole::kPrimary),
                                           config.allow_unprotected_devices)
               : Result<libvirt::ProtectedDomain>(xml.status());
  if (!protected_domain.ok()) {
    fprintf(stderr, "tandem: %s\n", protected_domain.status().ToString().c_str());
    return 1;
  }
  for (const std::string& d : protected_domain->removed) fprintf(stderr, "tandem: removed %s\n", d.c_str());
  for (const std::string& d : protected_domain->unprotected) fprintf(stderr, "tandem: UNPROTECTED %s\n", d.c_str());
  if (!apply) {
    fputs(protected_domain->xml.c_str(), stdout);
    return 0;
  }
  if (Status st = conn.value()->Define(protected_domain->xml); !st.ok()) {
    fprintf(stderr, "tandem: %s\n", st.ToString().c_str());
    return 1;
  }
  fprintf(stderr, "tandem: defined the protected domain %s at %s\n", config.libvirt_domain.c_str(),
          config.libvirt_uri.c_str());
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
  roles::WitnessMetrics metrics;
  metrics::MetricsServer metrics_server;  // after `metrics`: stopped before the figures it serves go
  if (!config.metrics_address.empty()) {
    if (Status st = metrics_server.Start(config.metrics_address, &metrics.registry()); !st.ok()) {
      TLOG_ERROR("witness", "metrics endpoint: %s", st.ToString().c_str());
      return 1;
    }
    TLOG_INFO("metrics", "Prometheus endpoint on %s (port %d): GET /metrics", config.metrics_address.c_str(),
              metrics_server.port());
  }
  const heartbeat::WitnessServingHook serving = [&metrics](const heartbeat::WitnessServer* s) { metrics.Serving(s); };
  if (Status st = heartbeat::RunWitnessDaemon(options, {}, Env::Default(), serving); !st.ok()) {
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

// Exit codes: 0 done (and --help), 1 the command failed (a bad configuration included), 2 a bad command line.
// Asks the primary role running on this host (either host's state_dir: after a failover the VM runs under the
// other section's) to hand the VM to its standby at the next checkpoint; waits for its answer.
int Switchover(const Config& config) {
  std::string last_error;
  for (const std::string* dir : {&config.primary_state_dir, &config.standby_state_dir}) {
    auto answer = roles::AskRole(roles::ControlSocketIn(*dir), "switchover", 120000);
    if (!answer.ok() && answer.status().code() == Status::Code::kNotFound) {
      last_error = answer.status().message();
      continue;
    }
    if (!answer.ok()) {
      fprintf(stderr, "tandem: switchover: %s\n", answer.status().ToString().c_str());
      return 1;
    }
    printf("%s\n", answer->c_str());
    return answer->rfind("ok:", 0) == 0 ? 0 : 1;
  }
  fprintf(stderr, "tandem: switchover: VM %s does not run on this host (%s)\n", config.vm_name.c_str(),
          last_error.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  CLI::App app("tandem: fault tolerance for a QEMU/KVM VM on two hosts (README.md)", "tandem");
  app.require_subcommand(1);
  std::string config_path, role = "primary";
  bool json = false, verbose = false, apply = false;
  auto command = [&](const char* name, const char* description) {
    CLI::App* sub = app.add_subcommand(name, description);
    sub->add_option("--config", config_path, "the configuration file, the same on both hosts (TOML, see "
                                             "tandem.example.toml)")
        ->required()
        ->type_name("FILE");
    sub->add_flag("--verbose", verbose, "per-epoch debug logs");
    return sub;
  };
  command("primary", "run the protected VM here and replicate it to the standby");
  command("standby", "keep a replica of the VM and resume it when the primary is lost");
  command("witness", "run the witness (the third vote: grants the primary role as a lease with a term)");
  command("qemu-args", "print the QEMU command line tandem uses")
      ->add_option("--role", role, "whose QEMU")
      ->check(CLI::IsMember({"primary", "standby"}))
      ->capture_default_str();
  command("libvirt-xml", "print the protected XML of the [libvirt] domain (tandem defines it at every primary start)")
      ->add_flag("--apply", apply, "define it in libvirt now instead of printing it");
  command("status", "show the state of the roles on this host")->add_flag("--json", json, "machine-readable output");
  command("switchover", "move the VM to the standby with no loss (run on the host that runs the VM): at the next "
                        "checkpoint the VM stays paused, and once the standby holds that epoch it resumes it there");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help prints and succeeds; anything else is a usage error
  }
  const std::string name = app.get_subcommands().front()->get_name();

  auto config = tandem::config::LoadConfig(config_path);
  if (!config.ok()) {
    fprintf(stderr, "tandem: %s\n", config.status().ToString().c_str());
    return 1;
  }
  if (verbose) SetLogLevel(LogLevel::kDebug);
  // Under systemd (Type=notify units in systemd/): READY, STATUS and the watchdog; elsewhere it does nothing.
  static SystemdNotifier notifier;
  if (name == "primary" || name == "standby") {
    // Everything the roles and their QEMU create (sockets, logs, status) is for this user only; the directories
    // are private too (common/SECURITY.md), this is the second wall.
    umask(077);
    static roles::Shutdown shutdown;  // lives as long as the signal thread
    roles::RequestShutdownOnSignals(&shutdown);
    return name == "primary" ? roles::RunPrimary(MakePrimaryOptions(*config), &shutdown, &notifier)
                             : roles::RunStandby(MakeStandbyOptions(*config), &shutdown, &notifier);
  }
  if (name == "witness") return RunWitness(*config, &notifier);
  if (name == "qemu-args") return QemuArgs(*config, role);
  if (name == "libvirt-xml") return LibvirtXml(*config, apply);
  if (name == "switchover") return Switchover(*config);
  return ShowStatus(*config, json);
}

}  // namespace
}  // namespace tandem::cli

int main(int argc, char** argv) { return tandem::cli::Main(argc, argv); }
