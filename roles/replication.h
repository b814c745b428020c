// The replication side of the roles behind small interfaces (replicator::EpochShipper / EpochReceiver in
// production, fakes in tests/roles).
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "common/status.h"
#include "replicator/epoch.h"
#include "replicator/receiver.h"
#include "replicator/shipper.h"

namespace tandem::roles {

// Primary: takes every checkpoint as an epoch and ships it to the standby behind the VM's back.
class EpochShipping {
 public:
  virtual ~EpochShipping() = default;  // stops
  virtual Status Start(const replicator::VmDescriptor& descriptor, std::unique_ptr<replicator::GuestRam> ram,
                       std::vector<uint8_t> device_state) = 0;
  virtual std::unique_ptr<replicator::Epoch> Borrow() = 0;
  // May block (backpressure): the VM stays paused while the standby is max_in_flight epochs behind.
  virtual void Submit(std::unique_ptr<replicator::Epoch> epoch) = 0;
  virtual replicator::ShipperStats stats() const = 0;
};

// Standby: applies complete, verified epochs to the replica.
class EpochReceiving {
 public:
  virtual ~EpochReceiving() = default;  // stops
  virtual replicator::ReceiverStats stats() const = 0;
  // After Stop() nothing is half applied and nothing more will be.
  virtual void Stop() = 0;
  virtual std::optional<replicator::ResumePoint> resume_point() const = 0;
  // After Stop(): finishes a disk epoch journaled but not fully written (the failover needs disk and RAM at the
  // same epoch); Ok when there is none or no disk.
  virtual Status RecoverDisk() { return Status::Ok(); }
};

class Shipper final : public EpochShipping {
 public:
  Shipper(replicator::ShipperOptions options, Clock* clock) : shipper_(std::move(options), clock) {}
  Status Start(const replicator::VmDescriptor& descriptor, std::unique_ptr<replicator::GuestRam> ram,
               std::vector<uint8_t> device_state) override {
    return shipper_.Start(descriptor, std::move(ram), std::move(device_state), 0);
  }
  std::unique_ptr<replicator::Epoch> Borrow() override { return shipper_.Borrow(); }
  void Submit(std::unique_ptr<replicator::Epoch> epoch) override { shipper_.Submit(std::move(epoch)); }
  replicator::ShipperStats stats() const override { return shipper_.stats(); }

 private:
  replicator::EpochShipper shipper_;
};

class Receiver final : public EpochReceiving {
 public:
  Receiver(replicator::ReceiverOptions options, Clock* clock) : receiver_(std::move(options), clock) {}
  Status Start() { return receiver_.Start(); }
  replicator::ReceiverStats stats() const override { return receiver_.stats(); }
  void Stop() override { receiver_.Stop(); }
  std::optional<replicator::ResumePoint> resume_point() const override { return receiver_.resume_point(); }
  Status RecoverDisk() override { return receiver_.RecoverDisk(); }

 private:
  replicator::EpochReceiver receiver_;
};

}  // namespace tandem::roles
