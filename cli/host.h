// What both roles do with the host: directories, the guest's QEMU, heartbeat links, shutdown signals.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "cli/config.h"
#include "heartbeat/heartbeat.h"
#include "qemu-integration/qemu_args.h"
#include "qemu-integration/qemu_process.h"
#include "qemu-integration/qmp.h"
#include "replicator/transport.h"

namespace tandem::cli {

Status MakeDirs(const std::string& path);

// The VmConfig of this host's QEMU, with its sockets and logs under `state_dir`.
qemu::VmConfig MakeVmConfig(const Config& config, const std::string& state_dir, const std::string& ram_path);

struct RunningQemu {
  std::unique_ptr<qemu::QemuProcess> process;
  std::unique_ptr<qemu::QmpClient> qmp;
};
// Spawns QEMU for `vm` (log in <state_dir>/qemu.log) and connects to its QMP socket.
Result<RunningQemu> LaunchQemu(const qemu::VmConfig& vm, qemu::QemuRole role, const std::string& state_dir);

// Heartbeat options for this host: links pair up by position between [primary] and [standby].
// The configured replication engine (validated with the config: auto, io_uring, epoll/poll).
replicator::IoEngine ParseIoEngine(const std::string& name);

heartbeat::HeartbeatOptions MakeHeartbeatOptions(const Config& config, bool primary_side);

// SIGINT/SIGTERM handling without async-signal hazards: the signals are blocked in every thread and one thread
// waits for them. Call Install() first thing in main, before any thread starts.
class ShutdownSignal {
 public:
  static void Install();
  static bool Requested();
  // Runs `on_signal` (once, from the signal thread) when SIGINT or SIGTERM arrives.
  static void OnSignal(void (*on_signal)(void*), void* arg);
};

}  // namespace tandem::cli
