#include "roles/outputs.h"

#include <cinttypes>

#include "common/log.h"
#include "roles/vm_host.h"

namespace tandem::roles {
namespace {

class HeldChannel final : public OutputChannel {
 public:
  explicit HeldChannel(std::unique_ptr<output_commit::HeldOutput> output) : output_(std::move(output)) {}
  Status OnEpochBoundary(uint64_t epoch) override { return output_->OnEpochBoundary(epoch); }
  void ReleaseThrough(uint64_t acked) override { output_->ReleaseThrough(acked); }
  uint64_t DropUnreleased() override { return output_->DropUnreleased(); }
  void SetPassThrough(bool on) override { output_->SetPassThrough(on); }
  output_commit::OutputStats stats() const override { return output_->stats(); }

 private:
  std::unique_ptr<output_commit::HeldOutput> output_;
};

}  // namespace

std::unique_ptr<OutputChannel> WrapHeldOutput(std::unique_ptr<output_commit::HeldOutput> output) {
  return std::make_unique<HeldChannel>(std::move(output));
}

GuestOutputs::GuestOutputs(std::string vm_name, bool release_when_unprotected)
    : vm_name_(std::move(vm_name)), release_when_unprotected_(release_when_unprotected) {}

GuestOutputs::~GuestOutputs() { StopFollowing(); }

void GuestOutputs::Add(std::string name, std::unique_ptr<OutputChannel> channel) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pass_through_) channel->SetPassThrough(true);
  channels_.push_back({std::move(name), std::move(channel)});
}

void GuestOutputs::OnEpochBoundary(uint64_t epoch) {
  std::lock_guard<std::mutex> lock(mu_);
  for (Named& c : channels_) {
    if (Status st = c.channel->OnEpochBoundary(epoch); !st.ok()) {
      TLOG_WARN("output", "%s output, boundary of epoch %" PRIu64 ": %s (what it holds leaves later, never early)",
                c.name.c_str(), epoch, st.ToString().c_str());
    }
  }
}

void GuestOutputs::OnShipperStats(const replicator::ShipperStats& stats) {
  std::lock_guard<std::mutex> lock(mu_);
  if (dropped_) return;
  // last_acked is 0 until the standby acknowledged something: the precopy's number too, so the precopy's output
  // waits for the first checkpoint's ack (later, never earlier).
  if (stats.last_acked > released_through_) {
    released_through_ = stats.last_acked;
    for (Named& c : channels_) c.channel->ReleaseThrough(stats.last_acked);
  }
  const bool unprotected = !stats.standby_connected;
  if (unprotected == unprotected_) return;
  unprotected_ = unprotected;
  if (unprotected) {
    if (release_when_unprotected_) {
      TLOG_WARN("output", "no standby: VM %s runs UNPROTECTED and its console/NIC output is released at once "
                "([nic] when_unprotected = release); a failover now may show the world output the resumed VM "
                "never produced", vm_name_.c_str());
      SetPassThroughLocked(true);
    } else {
      TLOG_WARN("output", "no standby: VM %s's console/NIC output stays held until a standby acknowledges "
                "([nic] when_unprotected = hold); its network stalls once the hold queue is full",
                vm_name_.c_str());
    }
  } else {
    TLOG_INFO("output", "standby connected: VM %s's output is held until the standby acknowledges its epoch",
              vm_name_.c_str());
    SetPassThroughLocked(false);
  }
}

void GuestOutputs::SetPassThroughLocked(bool on) {
  if (dropped_ || pass_through_ == on) return;
  pass_through_ = on;
  for (Named& c : channels_) c.channel->SetPassThrough(on);
}

void GuestOutputs::Follow(std::function<replicator::ShipperStats()> stats, int period_ms) {
  StopFollowing();
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }
  follower_ = std::thread([this, stats = std::move(stats), period_ms] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      lock.unlock();
      OnShipperStats(stats());
      lock.lock();
      cv_.wait_for(lock, std::chrono::milliseconds(period_ms), [&] { return stop_; });
    }
  });
}

void GuestOutputs::StopFollowing() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (follower_.joinable()) follower_.join();
}

void GuestOutputs::DropUnreleased() {
  StopFollowing();
  std::lock_guard<std::mutex> lock(mu_);
  dropped_ = true;
  uint64_t dropped = 0;
  for (Named& c : channels_) dropped += c.channel->DropUnreleased();
  TLOG_WARN("output", "superseded: %" PRIu64 " held output records of VM %s dropped (never released)", dropped,
            vm_name_.c_str());
}

void GuestOutputs::PassThrough() {
  std::lock_guard<std::mutex> lock(mu_);
  // Unprotected from here: a standby that later holds a copy (re-protection) turns holding back on.
  unprotected_ = true;
  SetPassThroughLocked(true);
}

nlohmann::json GuestOutputs::StatusJson() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json out = nlohmann::json::object();
  for (const Named& c : channels_) {
    const output_commit::OutputStats s = c.channel->stats();
    out[c.name] = {{"held_records", s.hold.held_records},     {"held_bytes", s.hold.held_bytes},
                   {"released_records", s.hold.released_records}, {"released_bytes", s.hold.released_bytes},
                   {"acked_epoch", s.acked_epoch},              {"pass_through", s.pass_through},
                   {"backpressured", s.backpressured},          {"backpressure_ms", s.backpressure_ns / 1e6},
                   {"sink_errors", s.sink_errors}};
  }
  return out;
}

Result<std::unique_ptr<GuestOutputs>> OpenGuestOutputs(const RoleOptions& options, VmHost* host, bool with_nic) {
  for (const std::string& device : options.unprotected_devices) {
    TLOG_WARN("output", "UNPROTECTED device of VM %s (vm.allow_unprotected_devices = true): %s",
              options.vm_name.c_str(), device.c_str());
  }
  auto outputs = std::make_unique<GuestOutputs>(options.vm_name, options.outputs.release_when_unprotected);
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<OutputChannel> console,
                          host->OpenConsole(options.state_dir, options.outputs.console_log));
  outputs->Add("console", std::move(console));
  if (with_nic && options.outputs.nic) {
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<OutputChannel> nic, host->OpenNic(*options.outputs.nic, options.state_dir));
    outputs->Add("nic", std::move(nic));
  }
  return outputs;
}

}  // namespace tandem::roles
