// tandem-record-colo-stream: boots a VM as a COLO primary with tandem's ColoEndpoint as its migration target,
// tees every byte QEMU sends to a file (precopy + N checkpoints), and prints what it saw as one JSON line.
// Driven by scripts/record-colo-stream, which compresses the result into tests/qemu/data/.
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "common/env.h"
#include "common/fd.h"
#include "qemu-integration/colo_endpoint.h"
#include "qemu-integration/qemu_args.h"
#include "qemu-integration/qemu_process.h"
#include "qemu-integration/qmp.h"

namespace tandem::qemu {
namespace {

int Usage() {
  fprintf(stderr,
          "usage: tandem-record-colo-stream --kernel ELF --out FILE [--memory-mb 16] [--append ARGS]\n"
          "                                 [--checkpoints 2] [--checkpoint-ms 200] [--accel kvm] [--wait-boot 1|0]\n"
          "--wait-boot 0 starts COLO while the guest is still booting (checkpoints then carry zero pages too)\n");
  return 2;
}

int Fail(const char* what, const Status& st) {
  fprintf(stderr, "record-colo-stream: %s: %s\n", what, st.ToString().c_str());
  return 1;
}

int Main(int argc, char** argv) {
  std::string kernel, out, append = "pages=64 rate=2000", accel = "kvm";
  uint64_t memory_mb = 16;
  int checkpoints = 2, checkpoint_ms = 200, wait_boot = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) return Usage();
    std::string v = argv[++i];
    if (a == "--kernel") kernel = v;
    else if (a == "--out") out = v;
    else if (a == "--append") append = v;
    else if (a == "--accel") accel = v;
    else if (a == "--memory-mb") memory_mb = std::strtoull(v.c_str(), nullptr, 10);
    else if (a == "--checkpoints") checkpoints = std::atoi(v.c_str());
    else if (a == "--checkpoint-ms") checkpoint_ms = std::atoi(v.c_str());
    else if (a == "--wait-boot") wait_boot = std::atoi(v.c_str());
    else return Usage();
  }
  if (kernel.empty() || out.empty() || checkpoints < 0) return Usage();

  char tmpl[] = "/tmp/tandem-record.XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return Fail("mkdtemp", Status::FromErrno("mkdtemp", errno));
  const std::string dir = tmpl;
  VmConfig vm;
  vm.name = "record";
  vm.memory_mb = memory_mb;
  vm.accel = accel;
  vm.kernel = kernel;
  vm.append = append;
  vm.ram_path = dir + "/ram";
  vm.qmp_socket = dir + "/qmp.sock";
  vm.serial_log = dir + "/serial.log";
  auto cleanup = [&] {
    for (const char* f : {"/ram", "/qmp.sock", "/serial.log", "/qemu.log", "/colo.sock"}) ::unlink((dir + f).c_str());
    ::rmdir(dir.c_str());
  };
  int rc = [&]() -> int {
    if (Status st = ValidateVmConfig(vm); !st.ok()) return Fail("VM config", st);
    auto binary = FindQemuBinary();
    if (!binary.ok()) return Fail("QEMU", binary.status());
    std::vector<std::string> args = BuildQemuArgs(vm, QemuRole::kPrimary);
    args.insert(args.begin(), *binary);
    auto endpoint = ColoEndpoint::Listen(dir + "/colo.sock");
    if (!endpoint.ok()) return Fail("listen", endpoint.status());
    auto process = QemuProcess::Spawn(args, dir + "/qemu.log");
    if (!process.ok()) return Fail("spawn QEMU", process.status());
    auto qmp = QmpClient::Connect(vm.qmp_socket, 10000);
    if (!qmp.ok()) return Fail("QMP", qmp.status());
    // Let the guest boot and start dirtying its pages before the precopy (its first status line says so).
    bool booted = !wait_boot;
    for (int i = 0; i < 200 && !booted; ++i) {
      usleep(50 * 1000);
      FILE* f = fopen(vm.serial_log.c_str(), "r");
      if (f == nullptr) continue;
      char line[256];
      while (!booted && fgets(line, sizeof(line), f) != nullptr) booted = strncmp(line, "counter=", 8) == 0;
      fclose(f);
    }
    if (!booted) return Fail("guest", Status::Timeout("no counter= line on the guest's serial port within 10 s"));
    UniqueFd record(::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!record.valid()) return Fail("open output", Status::FromErrno(out, errno));
    (*endpoint)->SetRecordFd(record.get());
    if (Status st = StartColoMigration(**qmp, dir + "/colo.sock", checkpoint_ms); !st.ok()) return Fail("COLO", st);
    if (Status st = (*endpoint)->Accept(10000); !st.ok()) return Fail("accept", st);
    Clock* clock = SystemClock();
    const int64_t t0 = clock->NowNanos();
    auto precopy = (*endpoint)->ReceivePrecopyImage();
    if (!precopy.ok()) return Fail("precopy", precopy.status());
    const replicator::VmDescriptor& descriptor = precopy->descriptor;
    const std::vector<uint8_t>& device_state = precopy->device_state;
    nlohmann::json report;
    report["precopy_ms"] = (clock->NowNanos() - t0) / 1e6;
    report["precopy_pages"] = (*endpoint)->precopy().pages;
    report["precopy_filled_pages"] = (*endpoint)->precopy().filled_pages;
    report["device_state_bytes"] = device_state.size();
    report["vmdesc_bytes"] = descriptor.qemu_vmdesc_json.size();
    for (const auto& b : descriptor.ram_blocks) report["blocks"].push_back({{"name", b.name}, {"size", b.size_bytes}});
    if (Status s = (*endpoint)->SendCheckpointReady(); !s.ok()) return Fail("ready", s);
    replicator::Epoch epoch;
    for (int i = 1; i <= checkpoints; ++i) {
      epoch.Reset(uint64_t(i), false);
      CheckpointTiming timing;
      if (Status s = (*endpoint)->ReceiveCheckpoint(&epoch, 10000, &timing); !s.ok()) return Fail("checkpoint", s);
      if (Status s = (*endpoint)->ResumeVm(); !s.ok()) return Fail("resume VM", s);
      const int64_t loaded = clock->NowNanos();
      report["checkpoints"].push_back({{"pages", (*endpoint)->last_checkpoint().pages},
                                       {"filled_pages", (*endpoint)->last_checkpoint().filled_pages},
                                       {"device_state_bytes", epoch.device_state().size()},
                                       {"pause_ms", (loaded - timing.request_ns) / 1e6},
                                       {"receive_ms", (timing.loaded_ready_ns - timing.reply_ns) / 1e6}});
    }
    (*process)->Kill(SIGKILL);
    (void)(*process)->Wait(5000);
    printf("%s\n", report.dump().c_str());
    return 0;
  }();
  cleanup();
  return rc;
}

}  // namespace
}  // namespace tandem::qemu

int main(int argc, char** argv) { return tandem::qemu::Main(argc, argv); }
