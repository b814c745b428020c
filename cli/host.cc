#include "cli/host.h"

#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include <cerrno>
#include <mutex>
#include <thread>

#include "common/log.h"

namespace tandem::cli {

Status MakeDirs(const std::string& path) {
  for (size_t pos = 1; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    std::string prefix = path.substr(0, pos);
    if (mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) return Status::FromErrno("mkdir " + prefix, errno);
  }
  return Status::Ok();
}

qemu::VmConfig MakeVmConfig(const Config& config, const std::string& state_dir, const std::string& ram_path) {
  qemu::VmConfig vm;
  vm.name = config.vm_name;
  vm.memory_mb = config.memory_mb;
  vm.vcpus = config.vcpus;
  vm.accel = config.accel;
  vm.machine = config.machine;
  vm.kernel = config.kernel;
  vm.initrd = config.initrd;
  vm.append = config.append;
  vm.ram_path = ram_path;
  vm.qmp_socket = state_dir + "/qmp.sock";
  vm.serial_log = state_dir + "/serial.log";
  vm.extra_args = config.qemu_extra;
  return vm;
}

Result<RunningQemu> LaunchQemu(const qemu::VmConfig& vm, qemu::QemuRole role, const std::string& state_dir) {
  TANDEM_RETURN_IF_ERROR(qemu::ValidateVmConfig(vm));
  ::unlink(vm.qmp_socket.c_str());
  std::vector<std::string> argv = qemu::BuildQemuArgs(vm, role);
  TANDEM_ASSIGN_OR_RETURN(std::string binary, qemu::FindQemuBinary());
  argv.insert(argv.begin(), binary);
  RunningQemu running;
  TANDEM_ASSIGN_OR_RETURN(running.process, qemu::QemuProcess::Spawn(argv, state_dir + "/qemu.log"));
  TLOG_INFO("qemu", "started %s QEMU pid %d (log %s/qemu.log)", role == qemu::QemuRole::kPrimary ? "primary" : "standby",
            int(running.process->pid()), state_dir.c_str());
  auto qmp = qemu::QmpClient::Connect(vm.qmp_socket, 10000);
  if (!qmp.ok()) {
    running.process->Kill(SIGKILL);
    return qmp.status().WithContext("QEMU did not open its QMP socket (see " + state_dir + "/qemu.log)");
  }
  running.qmp = std::move(qmp).value();
  return running;
}

replicator::IoEngine ParseIoEngine(const std::string& name) {
  auto engine = replicator::ParseIoEngine(name);
  return engine.ok() ? engine.value() : replicator::IoEngine::kAuto;
}

heartbeat::HeartbeatOptions MakeHeartbeatOptions(const Config& config, bool primary_side) {
  heartbeat::HeartbeatOptions options;
  options.node_name = primary_side ? "primary" : "standby";
  options.peer_name = primary_side ? "standby" : "primary";
  const auto& local = primary_side ? config.primary_heartbeat : config.standby_heartbeat;
  const auto& peer = primary_side ? config.standby_heartbeat : config.primary_heartbeat;
  for (size_t i = 0; i < local.size(); ++i) options.links.push_back({local[i], peer[i]});
  options.interval_ms = config.heartbeat_interval_ms;
  options.timeout_ms = config.heartbeat_timeout_ms;
  options.psk = config.psk;
  // The standby promises in every heartbeat not to seek promotion before promise_ms after hearing the
  // primary: that promise is what lets a primary cut off from the witness keep running (heartbeat/arbiter.h).
  if (!primary_side) options.promise_ms = config.promise_ms;
  return options;
}

namespace {
std::atomic<bool> g_shutdown{false};
std::mutex g_mu;
void (*g_callback)(void*) = nullptr;
void* g_callback_arg = nullptr;
}  // namespace

void ShutdownSignal::Install() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a peer that vanishes is an error value, not a process kill
  std::thread([set] {
    int sig = 0;
    sigwait(&set, &sig);
    TLOG_WARN("main", "received %s: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    g_shutdown = true;
    std::lock_guard<std::mutex> lock(g_mu);
    if (g_callback) g_callback(g_callback_arg);
  }).detach();
}

bool ShutdownSignal::Requested() { return g_shutdown.load(); }

void ShutdownSignal::OnSignal(void (*on_signal)(void*), void* arg) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_callback = on_signal;
  g_callback_arg = arg;
}

}  // namespace tandem::cli
