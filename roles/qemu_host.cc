#include "roles/qemu_host.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "common/fd.h"
#include "common/log.h"
#include "output-commit/console_commit.h"
#include "output-commit/nic_commit.h"
#include "output-commit/qemu_options.h"
#include "qemu-integration/colo_endpoint.h"
#include "qemu-integration/qemu_process.h"
#include "qemu-integration/qmp.h"
#include "qemu-integration/resume.h"
#include "roles/qmp_vm.h"

namespace tandem::roles {
namespace {

class QemuVm final : public QmpVm {
 public:
  QemuVm(std::unique_ptr<qemu::QemuProcess> process, std::unique_ptr<qemu::QmpClient> qmp)
      : QmpVm(std::move(qmp)), process_(std::move(process)) {}
  ~QemuVm() override { process_->Kill(SIGKILL); }

  pid_t pid() const override { return process_->pid(); }
  bool Running() override { return process_->Running(); }
  void Kill(int sig) override { process_->Kill(sig); }
  Status Resume(const std::string& stream, const std::string& incoming_socket, int timeout_ms) override {
    return qemu::ResumeStandbyQemu(*qmp_, stream, incoming_socket, timeout_ms);
  }

 private:
  std::unique_ptr<qemu::QemuProcess> process_;
};

class ColoCheckpoints final : public CheckpointSource {
 public:
  explicit ColoCheckpoints(std::unique_ptr<qemu::ColoEndpoint> endpoint) : endpoint_(std::move(endpoint)) {}
  Status Accept(int timeout_ms) override { return endpoint_->Accept(timeout_ms); }
  Result<qemu::Precopy> ReceivePrecopy(const std::map<std::string, std::string>& shared_files) override {
    return endpoint_->ReceivePrecopyGuestRam(shared_files);
  }
  Status SendCheckpointReady() override { return endpoint_->SendCheckpointReady(); }
  Status ReceiveCheckpoint(replicator::Epoch* epoch, int timeout_ms, qemu::CheckpointTiming* timing) override {
    return endpoint_->ReceiveCheckpoint(epoch, timeout_ms, timing);
  }
  Status ResumeVm() override { return endpoint_->ResumeVm(); }
  void OnCheckpointRequest(std::function<void()> hook) override { endpoint_->OnCheckpointRequest(std::move(hook)); }

 private:
  std::unique_ptr<qemu::ColoEndpoint> endpoint_;
};

}  // namespace

Result<std::unique_ptr<Vm>> QemuHost::Launch(const qemu::VmConfig& vm, qemu::QemuRole role,
                                             const std::string& state_dir) {
  TANDEM_RETURN_IF_ERROR(qemu::ValidateVmConfig(vm));
  ::unlink(vm.qmp_socket.c_str());
  std::vector<std::string> argv = qemu::BuildQemuArgs(vm, role);
  TANDEM_ASSIGN_OR_RETURN(std::string binary, qemu::FindQemuBinary());
  argv.insert(argv.begin(), binary);
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<qemu::QemuProcess> process,
                          qemu::QemuProcess::Spawn(argv, state_dir + "/qemu.log"));
  TLOG_INFO("qemu", "started %s QEMU pid %d (log %s/qemu.log)", role == qemu::QemuRole::kPrimary ? "primary" : "standby",
            int(process->pid()), state_dir.c_str());
  auto qmp = qemu::QmpClient::Connect(vm.qmp_socket, 10000);
  if (!qmp.ok()) {
    process->Kill(SIGKILL);
    return qmp.status().WithContext("QEMU did not open its QMP socket (see " + state_dir + "/qemu.log)");
  }
  return std::unique_ptr<Vm>(std::make_unique<QemuVm>(std::move(process), std::move(qmp).value()));
}

Result<std::unique_ptr<CheckpointSource>> QemuHost::ListenForCheckpoints(const std::string& unix_socket) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<qemu::ColoEndpoint> endpoint, qemu::ColoEndpoint::Listen(unix_socket));
  return std::unique_ptr<CheckpointSource>(std::make_unique<ColoCheckpoints>(std::move(endpoint)));
}

Result<std::unique_ptr<OutputChannel>> QemuHost::OpenConsole(const std::string& state_dir, const std::string& log) {
  output_commit::ConsoleOptions options;
  options.socket_path = output_commit::PathsIn(state_dir).console_socket;
  options.log_path = log;
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<output_commit::ConsoleOutputCommit> console,
                          output_commit::ConsoleOutputCommit::Create(std::move(options), SystemClock()));
  console->Start();
  return WrapHeldOutput(std::move(console));
}

Result<std::unique_ptr<OutputChannel>> QemuHost::OpenNic(const NicOptions& nic, const std::string& state_dir) {
  const output_commit::OutputPaths paths = output_commit::PathsIn(state_dir);
  output_commit::NicOptions options;
  options.socket_path = paths.nic_socket;
  options.qemu_socket_path = paths.nic_qemu_socket;
  options.limits = nic.limits;
  TANDEM_ASSIGN_OR_RETURN(options.outside, output_commit::OpenTap(nic.tap));
  TANDEM_RETURN_IF_ERROR(output_commit::BringUpTap(nic.tap, nic.bridge));
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<output_commit::NicOutputCommit> channel,
                          output_commit::NicOutputCommit::Create(std::move(options), SystemClock()));
  channel->Start();
  TLOG_INFO("output", "NIC on TAP %s%s%s: guest frames held until the standby has their epoch", nic.tap.c_str(),
            nic.bridge.empty() ? "" : " in bridge ", nic.bridge.c_str());
  return WrapHeldOutput(std::move(channel));
}

Result<RemoveOnExit> CreateGuestMemoryFile(const std::string& path, uint64_t bytes) {
  TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, CreatePrivateFile(path, bytes));
  return RemoveOnExit(path);
}

Result<RemoveOnExit> KeepOrCreateGuestMemoryFile(const std::string& path, uint64_t bytes, bool* kept) {
  TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, KeepOrCreatePrivateFile(path, bytes, kept));
  return RemoveOnExit(path);
}

}  // namespace tandem::roles
