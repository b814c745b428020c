// The primary role: runs the protected VM's QEMU in COLO checkpoint mode with tandem as its migration target,
// turns every checkpoint into an epoch, lets the VM resume as soon as the epoch is whole in local memory, and
// ships it to the standby behind the VM's back.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "cli/guard.h"
#include "cli/host.h"
#include "cli/roles.h"
#include "cli/status_file.h"
#include "cli/vm_monitor.h"
#include "common/env.h"
#include "common/log.h"
#include "qemu-integration/colo_endpoint.h"
#include "replicator/shipper.h"

namespace tandem::cli {
namespace {

// Pause statistics over a reporting window (the VM is stopped from CHECKPOINT_REQUEST to VMSTATE_LOADED).
struct PauseWindow {
  uint64_t epochs = 0, pages = 0, bytes = 0;
  int64_t total_ns = 0, max_ns = 0;
  void Add(uint64_t epoch_pages, uint64_t epoch_bytes, int64_t pause_ns) {
    ++epochs, pages += epoch_pages, bytes += epoch_bytes, total_ns += pause_ns;
    max_ns = std::max(max_ns, pause_ns);
  }
};

nlohmann::json PrimaryStatus(const Config& config, const VmGuard& guard, const VmMonitor& vm, pid_t qemu_pid,
                             const replicator::ShipperStats& ship, const heartbeat::PeerStatus& peer,
                             uint64_t epoch, double last_pause_ms) {
  const nlohmann::json guard_status = guard.StatusJson();
  const std::string state = guard_status["state"].get<std::string>();
  nlohmann::json links = nlohmann::json::array();
  for (const auto& link : peer.links) {
    links.push_back({{"local", link.local_address}, {"peer", link.peer_address}, {"up", link.up},
                     {"rtt_ms", link.rtt_ms}, {"loss", link.loss}});
  }
  return {{"role", "primary"},
          {"state", state},
          {"vm", config.vm_name},
          {"pid", int(getpid())},
          {"qemu_pid", int(qemu_pid)},
          {"term", guard_status["term"]},
          {"guard", guard_status},
          {"vm_liveness", vm.StatusJson()},
          {"epoch", epoch},
          {"last_pause_ms", last_pause_ms},
          {"protected", ship.standby_connected},
          {"standby", {{"connected", ship.standby_connected},
                       {"last_acked", ship.last_acked},
                       {"epochs_sent", ship.epochs_sent},
                       {"bytes_sent", ship.bytes_sent},
                       {"resyncs", ship.resyncs},
                       {"catch_ups", ship.catch_ups},
                       {"epochs_merged", ship.epochs_merged},
                       {"compression", ship.compression},
                       {"compression_changes", ship.compression_changes},
                       {"last_error", ship.last_error}}},
          {"peer", {{"alive", peer.alive}, {"links", links}}}};
}

void KillQemuOnSignal(void* arg) { static_cast<qemu::QemuProcess*>(arg)->Kill(SIGTERM); }

}  // namespace

int RunPrimary(const Config& config) {
  SetLogTag("primary");
  Clock* clock = SystemClock();
  const std::string& dir = config.primary_state_dir;
  if (Status st = MakeDirs(dir); !st.ok()) {
    TLOG_ERROR("main", "%s", st.ToString().c_str());
    return 1;
  }
  const std::string colo_socket = dir + "/colo.sock";
  const std::string ram_path = "/dev/shm/tandem-" + config.vm_name + "-primary.ram";
  ::unlink(ram_path.c_str());

  heartbeat::HeartbeatService heartbeats(MakeHeartbeatOptions(config, /*primary_side=*/true), clock);
  heartbeats.OnPeerLost([] { TLOG_WARN("heartbeat", "standby lost on every link: the VM runs UNPROTECTED"); });
  if (Status st = heartbeats.Start(); !st.ok()) {
    TLOG_ERROR("heartbeat", "%s", st.ToString().c_str());
    return 1;
  }
  auto authority = MakeLeaseAuthority(config, "primary", clock);
  if (!authority.ok()) {
    TLOG_ERROR("guard", "%s", authority.status().ToString().c_str());
    return 1;
  }
  // The VM must not run anywhere before this host holds the primary role (a lease and a term from the
  // witness, or the two-host policy): QEMU is started only once the guard says so.
  VmGuard guard(config, std::move(authority).value(), &heartbeats, clock);
  if (Status st = guard.Start(); !st.ok()) {
    TLOG_ERROR("guard", "%s", st.ToString().c_str());
    return 1;
  }
  if (!guard.WaitRunnable(30000)) {
    const nlohmann::json why = guard.StatusJson();
    TLOG_ERROR("guard", "not allowed to run VM %s: %s", config.vm_name.c_str(), why.dump().c_str());
    WriteStatusFile(dir, {{"role", "primary"}, {"state", "failed"}, {"guard", why},
                          {"error", "no right to run the VM: " + why.value("reason", std::string())}}).ok();
    return 1;
  }
  const uint64_t term = guard.term();

  auto endpoint = qemu::ColoEndpoint::Listen(colo_socket);
  if (!endpoint.ok()) {
    TLOG_ERROR("colo", "%s", endpoint.status().ToString().c_str());
    return 1;
  }
  auto qemu = LaunchQemu(MakeVmConfig(config, dir, ram_path), qemu::QemuRole::kPrimary, dir);
  if (!qemu.ok()) {
    TLOG_ERROR("qemu", "%s", qemu.status().ToString().c_str());
    return 1;
  }
  qemu::QemuProcess& process = *qemu->process;
  ShutdownSignal::OnSignal(KillQemuOnSignal, &process);
  auto fail = [&](const char* what, const Status& st) {
    TLOG_ERROR("main", "%s: %s", what, st.ToString().c_str());
    WriteStatusFile(dir, {{"role", "primary"}, {"state", "failed"}, {"error", st.ToString()}}).ok();
    guard.Stop();  // it may hold the QMP client that dies with `qemu`
    process.Kill(SIGKILL);
    return 1;
  };

  // Initial full copy: QEMU's precopy goes straight into the mirror that seeds every standby.
  const int64_t precopy_start = clock->NowNanos();
  if (Status st = qemu::StartColoMigration(*qemu->qmp, colo_socket, config.epoch_ms); !st.ok()) {
    return fail("start COLO", st);
  }
  guard.AttachVm(qemu->qmp.get());
  VmMonitor monitor(config, qemu->qmp.get());
  if (Status st = (*endpoint)->Accept(10000); !st.ok()) return fail("QEMU did not connect", st);
  replicator::VmDescriptor descriptor;
  std::vector<uint8_t> device_state;
  std::unique_ptr<replicator::RamImage> mirror;
  Status precopy = (*endpoint)->ReceivePrecopy(
      [&](const replicator::VmDescriptor& layout) -> Result<replicator::PageSink*> {
        auto image = replicator::RamImage::Create(layout, {});
        if (!image.ok()) return image.status();
        mirror = std::move(image).value();
        return static_cast<replicator::PageSink*>(mirror.get());
      },
      &descriptor, &device_state);
  if (!precopy.ok()) return fail("precopy", precopy);
  descriptor.vm_name = config.vm_name;
  uint64_t ram_bytes = 0;
  for (const auto& block : descriptor.ram_blocks) ram_bytes += block.size_bytes;
  TLOG_INFO("colo", "precopy complete: %zu RAM blocks, %" PRIu64 " MiB, device state %zu bytes, %.1f ms",
            descriptor.ram_blocks.size(), ram_bytes >> 20, device_state.size(),
            (clock->NowNanos() - precopy_start) / 1e6);

  replicator::ShipperOptions ship_options;
  ship_options.standby_address = config.standby_replication;
  ship_options.max_in_flight = config.max_in_flight;
  ship_options.io_timeout_ms = config.io_timeout_ms;
  ship_options.term = term;
  ship_options.io_engine = ParseIoEngine(config.io_engine);
  ship_options.encode_threads = config.encode_threads;
  ship_options.codec.compression = config.compression == "zstd" ? replicator::Compression::kZstd
                                   : config.compression == "none" ? replicator::Compression::kNone
                                                                  : replicator::Compression::kLz4;
  ship_options.codec.zstd_level = config.zstd_level;
  ship_options.codec.lz4_acceleration = config.lz4_acceleration;
  ship_options.adaptive_compression = config.compression == "auto";
  ship_options.debug_die_mid_epoch = config.debug_die_mid_epoch;
  ship_options.debug_corrupt_epoch = config.debug_corrupt_epoch;
  replicator::EpochShipper shipper(ship_options, clock);
  if (Status st = shipper.Start(descriptor, std::move(mirror), std::move(device_state), 0); !st.ok()) {
    return fail("start shipper", st);
  }
  if (Status st = (*endpoint)->SendCheckpointReady(); !st.ok()) return fail("CHECKPOINT_READY", st);
  TLOG_INFO("main", "VM %s protected: checkpoint every %d ms to standby %s", config.vm_name.c_str(),
            config.epoch_ms, config.standby_replication.c_str());

  FILE* csv = fopen((dir + "/epochs.csv").c_str(), "w");
  if (csv) fprintf(csv, "epoch,pages,page_bytes,device_bytes,pause_us\n");
  PauseWindow window;
  int64_t window_start = clock->NowNanos();
  int64_t next_monitor_ns = 0;
  const int checkpoint_timeout_ms = std::max(5000, config.epoch_ms * 10);
  int exit_code = 0;
  for (uint64_t number = 1;; ++number) {
    std::unique_ptr<replicator::Epoch> epoch = shipper.Borrow();
    epoch->Reset(number, /*full=*/false);
    qemu::CheckpointTiming timing;
    Status st = (*endpoint)->ReceiveCheckpoint(epoch.get(), checkpoint_timeout_ms, &timing);
    if (!st.ok()) {
      if (ShutdownSignal::Requested()) break;
      exit_code = fail(process.Running() ? "checkpoint stream broke" : "primary QEMU exited", st);
      break;
    }
    const uint64_t pages = epoch->pages().size(), page_bytes = epoch->page_bytes();
    const size_t device_bytes = epoch->device_state().size();
    // Submit blocks only when the standby is max_in_flight epochs behind: the VM then stays paused, which is
    // the backpressure that keeps a slow standby from falling further behind.
    shipper.Submit(std::move(epoch));
    // A fenced primary keeps the VM inside COLO's own pause: QEMU resumes it only after VMSTATE_LOADED.
    while (!guard.WaitRunnable(200)) {
      if (guard.superseded() || ShutdownSignal::Requested()) break;
      monitor.Poll();
      WriteStatusFile(dir, PrimaryStatus(config, guard, monitor, process.pid(), shipper.stats(), heartbeats.peer(), number,
                                         0)).ok();
    }
    if (guard.superseded()) {
      WriteStatusFile(dir, PrimaryStatus(config, guard, monitor, process.pid(), shipper.stats(), heartbeats.peer(), number,
                                         0)).ok();
      TLOG_ERROR("main", "superseded: killing this host's copy of VM %s (it must never run again here)",
                 config.vm_name.c_str());
      exit_code = 3;
      break;
    }
    if (ShutdownSignal::Requested()) break;
    if (Status resumed = (*endpoint)->ResumeVm(); !resumed.ok()) {
      exit_code = fail("VMSTATE_LOADED", resumed);
      break;
    }
    const int64_t pause_ns = clock->NowNanos() - timing.request_ns;
    guard.SetLastEpoch(number);
    window.Add(pages, page_bytes + device_bytes, pause_ns);
    TLOG_DEBUG("epoch", "epoch %" PRIu64 " pages=%" PRIu64 " bytes=%" PRIu64 " device=%zu pause_ms=%.2f", number,
               pages, page_bytes, device_bytes, pause_ns / 1e6);
    if (csv) fprintf(csv, "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%zu,%" PRId64 "\n", number, pages, page_bytes,
                     device_bytes, pause_ns / 1000);
    const int64_t now = clock->NowNanos();
    if (now >= next_monitor_ns) {
      monitor.Poll();
      next_monitor_ns = now + 250'000'000;
    }
    if (now - window_start >= 1'000'000'000) {
      const replicator::ShipperStats ship = shipper.stats();
      TLOG_INFO("epoch",
                "epochs %" PRIu64 "..%" PRIu64 ": pause avg %.2f ms max %.2f ms, %.0f KiB/epoch, acked %" PRIu64 "%s",
                number - window.epochs + 1, number, window.total_ns / 1e6 / double(window.epochs),
                window.max_ns / 1e6, window.bytes / 1024.0 / double(window.epochs), ship.last_acked,
                ship.standby_connected ? "" : " [UNPROTECTED: no standby]");
      WriteStatusFile(dir, PrimaryStatus(config, guard, monitor, process.pid(), ship, heartbeats.peer(), number,
                                         pause_ns / 1e6))
          .ok();
      if (csv) fflush(csv);
      window = PauseWindow();
      window_start = now;
    }
  }
  if (csv) fclose(csv);
  process.Kill(SIGKILL);
  shipper.Stop();
  guard.Stop();
  heartbeats.Stop();
  return exit_code;
}

}  // namespace tandem::cli
