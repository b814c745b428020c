// Fakes of the roles' host seams (roles/vm_host.h, replication.h, arbitration.h): a scripted QEMU with its
// checkpoint stream, a shipper and receiver that record, guards the test drives. Real: the roles' code, their
// files (status.json, epochs.csv), the RamImage and the resume stream.
#pragma once

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "common/env.h"
#include "disk/block_device.h"
#include "qemu-integration/resume.h"
#include "roles/arbitration.h"
#include "roles/replication.h"
#include "roles/vm_host.h"

namespace tandem::roles::testing {

inline replicator::VmDescriptor SmallVm() {
  replicator::VmDescriptor descriptor;
  descriptor.ram_blocks = {{"mem", 16 * replicator::kPageSize}};
  descriptor.qemu_configuration = std::string("\x07\x00\x00\x00\x04" "pc", 7);
  return descriptor;
}

// What one scripted QEMU did and what it will do, shared by its Vm and CheckpointSource (which the role owns
// and destroys).
struct FakeQemu {
  std::mutex mu;
  std::condition_variable cv;
  // Script
  Status launch_error;
  bool exits_at_start = false;
  Status resume_error;
  int checkpoints = 3;  // then the stream waits for the VM to die
  // Before checkpoint n (1-based) is handed out; a non-ok Status breaks the stream there.
  std::function<Status(int n)> before_checkpoint = [](int) { return Status::Ok(); };
  std::function<void(int n)> on_resume_vm = [](int) {};
  FakeClock* clock = nullptr;
  // Record
  bool launched = false;
  qemu::QemuRole role = qemu::QemuRole::kPrimary;
  bool running = false;
  std::vector<int> signals;
  std::vector<std::string> qmp_commands;
  // Every x-checkpoint-delay set while QEMU ran (each asks QEMU 7.2 for a checkpoint at once): when, and the value.
  std::vector<std::pair<int64_t, int>> checkpoint_delays_set;
  std::string colo_socket;
  std::map<std::string, std::string> precopy_shared_files;  // what the primary said QEMU keeps its RAM in
  int colo_checkpoint_ms = 0;
  int handed_out = 0, resumed = 0;
  std::string resume_stream, resume_socket;
  // The order of what the role did to the VM and its outputs: "launch", "resume <n>" (VMSTATE_LOADED of
  // checkpoint n), "<channel>:boundary <n>", "<channel>:release <n>", "<channel>:drop", "<channel>:pass on|off",
  // "<channel>:open", "failover resume", "qmp <command>".
  std::vector<std::string> events;
  Status console_error, nic_error;
  std::string console_log;  // what OpenConsole was given

  std::vector<std::string> Events() {
    std::lock_guard<std::mutex> lock(mu);
    return events;
  }

  bool Killed(int sig) {
    std::lock_guard<std::mutex> lock(mu);
    return std::find(signals.begin(), signals.end(), sig) != signals.end();
  }
};

class FakeVm final : public Vm {
 public:
  explicit FakeVm(FakeQemu* q) : q_(q) {}
  ~FakeVm() override { Kill(SIGKILL); }
  pid_t pid() const override { return 4242; }
  bool Running() override {
    std::lock_guard<std::mutex> lock(q_->mu);
    return q_->running;
  }
  void Kill(int sig) override {
    std::lock_guard<std::mutex> lock(q_->mu);
    q_->signals.push_back(sig);
    q_->running = false;
    q_->cv.notify_all();
  }
  Result<nlohmann::json> Execute(const std::string& command, const nlohmann::json& arguments, int) override {
    std::lock_guard<std::mutex> lock(q_->mu);
    q_->qmp_commands.push_back(command);
    if (command == "migrate-set-parameters" && arguments.contains("x-checkpoint-delay")) {
      q_->checkpoint_delays_set.push_back({q_->clock->NowNanos(), arguments["x-checkpoint-delay"].get<int>()});
    }
    q_->events.push_back("qmp " + command);
    return nlohmann::json::object();
  }
  Result<std::vector<nlohmann::json>> TakeEvents() override { return std::vector<nlohmann::json>(); }
  Status StartColoMigration(const std::string& unix_socket, int checkpoint_ms) override {
    std::lock_guard<std::mutex> lock(q_->mu);
    q_->colo_socket = unix_socket;
    q_->colo_checkpoint_ms = checkpoint_ms;
    return Status::Ok();
  }
  Status Resume(const std::string& stream, const std::string& incoming_socket, int) override {
    std::lock_guard<std::mutex> lock(q_->mu);
    q_->resume_stream = stream;
    q_->resume_socket = incoming_socket;
    q_->events.push_back("failover resume");
    return q_->resume_error;
  }

 private:
  FakeQemu* q_;
};

class FakeCheckpoints final : public CheckpointSource {
 public:
  explicit FakeCheckpoints(FakeQemu* q) : q_(q) {}
  Status Accept(int) override { return Status::Ok(); }
  // The fake VM's blocks are not QEMU's: `shared_files` is recorded, and its RAM is copies.
  Result<qemu::Precopy> ReceivePrecopy(const std::map<std::string, std::string>& shared_files) override {
    {
      std::lock_guard<std::mutex> lock(q_->mu);
      q_->precopy_shared_files = shared_files;
    }
    qemu::Precopy precopy;
    precopy.descriptor = SmallVm();
    precopy.device_state = {1, 2, 3};
    TANDEM_ASSIGN_OR_RETURN(precopy.ram, replicator::GuestRam::Open(precopy.descriptor, {}));
    return precopy;
  }
  Status SendCheckpointReady() override { return Status::Ok(); }
  Status ReceiveCheckpoint(replicator::Epoch* epoch, int timeout_ms, qemu::CheckpointTiming* timing) override {
    int n;
    {
      std::unique_lock<std::mutex> lock(q_->mu);
      n = q_->handed_out + 1;
      if (n > q_->checkpoints) {  // QEMU goes quiet until it is killed
        q_->cv.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return !q_->running; });
        return q_->running ? Status::Timeout("no checkpoint") : Status::Closed("QEMU exited");
      }
    }
    TANDEM_RETURN_IF_ERROR(q_->before_checkpoint(n));
    if (on_request_) on_request_();  // CHECKPOINT_REQUEST
    std::lock_guard<std::mutex> lock(q_->mu);
    if (!q_->running) return Status::Closed("QEMU exited");
    q_->handed_out = n;
    timing->request_ns = q_->clock->NowNanos();
    uint8_t* page = epoch->PageBuffer(0, uint64_t(n % 16) * replicator::kPageSize);
    std::fill(page, page + replicator::kPageSize, uint8_t(n));
    epoch->device_state() = {uint8_t(n)};
    return Status::Ok();
  }
  void OnCheckpointRequest(std::function<void()> hook) override { on_request_ = std::move(hook); }
  Status ResumeVm() override {
    int n;
    {
      std::lock_guard<std::mutex> lock(q_->mu);
      n = ++q_->resumed;
      q_->events.push_back("resume " + std::to_string(n));
      q_->clock->Advance(2'000'000);  // every pause lasts 2 ms
    }
    q_->on_resume_vm(n);
    return Status::Ok();
  }

 private:
  FakeQemu* q_;
  std::function<void()> on_request_;
};

// An output channel that records what the role asked of it into FakeQemu::events.
class FakeChannel final : public OutputChannel {
 public:
  FakeChannel(FakeQemu* q, std::string name) : q_(q), name_(std::move(name)) { Record("open"); }
  Status OnEpochBoundary(uint64_t epoch) override {
    Record("boundary " + std::to_string(epoch));
    return Status::Ok();
  }
  void ReleaseThrough(uint64_t acked) override { Record("release " + std::to_string(acked)); }
  uint64_t DropUnreleased() override {
    Record("drop");
    return 0;
  }
  void SetPassThrough(bool on) override { Record(on ? "pass on" : "pass off"); }
  output_commit::OutputStats stats() const override { return {}; }

 private:
  void Record(const std::string& what) {
    std::lock_guard<std::mutex> lock(q_->mu);
    q_->events.push_back(name_ + ":" + what);
  }
  FakeQemu* q_;
  std::string name_;
};

class FakeHost final : public VmHost {
 public:
  FakeQemu qemu;
  qemu::VmConfig launched_config;

  Result<std::unique_ptr<Vm>> Launch(const qemu::VmConfig& vm, qemu::QemuRole role, const std::string&) override {
    std::lock_guard<std::mutex> lock(qemu.mu);
    if (!qemu.launch_error.ok()) return qemu.launch_error;
    qemu.launched = true;
    qemu.role = role;
    qemu.running = !qemu.exits_at_start;
    qemu.events.push_back("launch");
    launched_config = vm;
    return std::unique_ptr<Vm>(std::make_unique<FakeVm>(&qemu));
  }
  Result<std::unique_ptr<CheckpointSource>> ListenForCheckpoints(const std::string&) override {
    return std::unique_ptr<CheckpointSource>(std::make_unique<FakeCheckpoints>(&qemu));
  }
  Result<std::unique_ptr<OutputChannel>> OpenConsole(const std::string&, const std::string& log) override {
    {
      std::lock_guard<std::mutex> lock(qemu.mu);
      if (!qemu.console_error.ok()) return qemu.console_error;
      qemu.console_log = log;
    }
    return std::unique_ptr<OutputChannel>(std::make_unique<FakeChannel>(&qemu, "console"));
  }
  Result<std::unique_ptr<OutputChannel>> OpenNic(const NicOptions&, const std::string&) override {
    {
      std::lock_guard<std::mutex> lock(qemu.mu);
      if (!qemu.nic_error.ok()) return qemu.nic_error;
    }
    return std::unique_ptr<OutputChannel>(std::make_unique<FakeChannel>(&qemu, "nic"));
  }
};

// Records what the primary hands it.
struct ShipperLog {
  std::mutex mu;
  uint64_t term = 0;
  bool started = false, destroyed = false;
  replicator::VmDescriptor descriptor;
  bool got_ram = false;
  std::vector<uint8_t> device_state;
  std::vector<uint64_t> submitted;
  std::vector<std::vector<uint8_t>> disk_writes;  // each submitted epoch's DISK_WRITES payload
  disk::BlockDevice* disk = nullptr;               // what make_shipper was given
  // What stats() reports: the test moves the standby's acks.
  uint64_t last_acked = 0;
  bool standby_connected = true;
  bool ack_on_submit = false;  // the standby acknowledges every epoch at once
  void Ack(uint64_t epoch) {
    std::lock_guard<std::mutex> lock(mu);
    last_acked = epoch;
  }
};

class FakeShipper final : public EpochShipping {
 public:
  explicit FakeShipper(ShipperLog* log) : log_(log) {}
  ~FakeShipper() override {
    std::lock_guard<std::mutex> lock(log_->mu);
    log_->destroyed = true;
  }
  Status Start(const replicator::VmDescriptor& descriptor, std::unique_ptr<replicator::GuestRam> ram,
               std::vector<uint8_t> device_state) override {
    std::lock_guard<std::mutex> lock(log_->mu);
    log_->started = true;
    log_->descriptor = descriptor;
    log_->got_ram = ram != nullptr;
    log_->device_state = std::move(device_state);
    return Status::Ok();
  }
  std::unique_ptr<replicator::Epoch> Borrow() override { return std::make_unique<replicator::Epoch>(); }
  void Submit(std::unique_ptr<replicator::Epoch> epoch) override {
    std::lock_guard<std::mutex> lock(log_->mu);
    log_->submitted.push_back(epoch->number());
    log_->disk_writes.push_back(epoch->disk_writes());
    if (log_->ack_on_submit) log_->last_acked = epoch->number();
  }
  replicator::ShipperStats stats() const override {
    std::lock_guard<std::mutex> lock(log_->mu);
    replicator::ShipperStats stats;
    stats.last_acked = log_->last_acked;
    stats.standby_connected = log_->standby_connected;
    return stats;
  }

 private:
  ShipperLog* log_;
};

// The arbiter's decision as the test sets it.
class FakeGuard final : public RunGuard {
 public:
  explicit FakeGuard(uint64_t term) : term_(term) {}
  void SetRunnable(bool runnable) {
    std::lock_guard<std::mutex> lock(mu_);
    runnable_ = runnable;
    cv_.notify_all();
  }
  void Supersede() {
    std::lock_guard<std::mutex> lock(mu_);
    superseded_ = true;
    runnable_ = false;
    cv_.notify_all();
  }
  void NeverRunnable() {  // WaitRunnable gives up at once instead of after its timeout
    std::lock_guard<std::mutex> lock(mu_);
    denied_ = true;
    runnable_ = false;
  }
  bool runnable() const {
    std::lock_guard<std::mutex> lock(mu_);
    return runnable_;
  }
  Vm* attached() const {
    std::lock_guard<std::mutex> lock(mu_);
    return vm_;
  }
  bool ever_attached() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ever_attached_;
  }
  uint64_t last_epoch() const {
    std::lock_guard<std::mutex> lock(mu_);
    return last_epoch_;
  }

  void AttachVm(Vm* vm) override {
    std::lock_guard<std::mutex> lock(mu_);
    vm_ = vm;
    ever_attached_ |= vm != nullptr;
  }
  bool WaitRunnable(int timeout_ms) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (denied_) return false;
    return cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return runnable_ || superseded_; }) &&
           !superseded_;
  }
  bool superseded() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return superseded_;
  }
  uint64_t term() const override { return term_; }
  void SetLastEpoch(uint64_t epoch) override {
    std::lock_guard<std::mutex> lock(mu_);
    last_epoch_ = epoch;
  }
  nlohmann::json StatusJson() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return {{"state", superseded_ ? "superseded" : runnable_ ? "running" : "fenced"}, {"term", term_},
            {"reason", denied_ ? "no lease" : ""}};
  }
  heartbeat::PeerStatus peer() const override {
    std::lock_guard<std::mutex> lock(mu_);
    heartbeat::PeerStatus peer;
    peer.alive = peer_alive_;
    return peer;
  }
  void SetPeerAlive(bool alive) {
    std::lock_guard<std::mutex> lock(mu_);
    peer_alive_ = alive;
  }

 private:
  const uint64_t term_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool runnable_ = true, superseded_ = false, denied_ = false, ever_attached_ = false, peer_alive_ = false;
  Vm* vm_ = nullptr;
  uint64_t last_epoch_ = 0;
};

}  // namespace tandem::roles::testing
