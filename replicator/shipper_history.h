// What the primary knows of the VM's history for resyncs, without a copy of its RAM: the guest's RAM itself
// (GuestRam: QEMU's RAM file read-only, copies of the small blocks), the device state and number of the last
// epoch folded, and per page the last epoch that changed it, from which a reconnecting standby gets only what it
// missed. Sender thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "replicator/epoch.h"
#include "replicator/guest_ram.h"

namespace tandem::replicator {

class ShipperHistory {
 public:
  // A standby that missed more than this share of RAM's pages is sent a full epoch instead of a catch-up.
  static constexpr uint64_t kCatchUpMaxShare = 4;

  // `ram` holds the VM's RAM (its copied blocks as of `epoch`), `device_state` its device state as of `epoch`.
  void Reset(std::unique_ptr<GuestRam> ram, std::vector<uint8_t> device_state, uint64_t epoch);
  // The next epoch (its device state is taken, not copied). An epoch that does not fit the layout is logged and
  // its pages dropped: a bug upstream this cannot repair.
  void Fold(Epoch& epoch);
  // The pages changed after `epoch`, if that is under 1/kCatchUpMaxShare of them (else false: send it all).
  bool ChangedSince(uint64_t epoch, std::vector<PageRef>* pages) const;

  const GuestRam& ram() const { return *ram_; }
  const std::vector<RamBlockInfo>& layout() const { return ram_->image().blocks(); }
  const std::vector<uint8_t>& device_state() const { return device_state_; }
  uint64_t epoch() const { return epoch_; }
  uint64_t ram_bytes() const;

 private:
  std::unique_ptr<GuestRam> ram_;
  std::vector<uint8_t> device_state_;
  uint64_t epoch_ = 0;
  std::vector<std::vector<uint64_t>> page_epochs_;  // per block, per page: the last epoch that changed it
};

}  // namespace tandem::replicator
