// The primary's copy of exactly what the standby holds (or will once the epochs in flight are applied): the RAM
// every epoch is XOR-encoded against, the device state, and per page the last epoch that changed it, from which
// a reconnecting standby gets only what it missed. Sender thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "replicator/epoch.h"

namespace tandem::replicator {

class ShipperMirror {
 public:
  // A standby that missed more than this share of RAM's pages is sent a full epoch instead of a catch-up.
  static constexpr uint64_t kCatchUpMaxShare = 4;

  // `image` holds the VM's RAM as of `epoch`, `device_state` its device state.
  void Reset(std::unique_ptr<RamImage> image, std::vector<uint8_t> device_state, uint64_t epoch);
  // Applies the next epoch (its device state is taken, not copied). An epoch that does not fit the layout is
  // logged and its pages dropped: a bug upstream the mirror cannot repair.
  void Fold(Epoch& epoch);
  // The pages changed after `epoch`, if that is under 1/kCatchUpMaxShare of them (else false: send it all).
  bool ChangedSince(uint64_t epoch, std::vector<PageRef>* pages) const;

  RamImage& image() { return *image_; }
  const RamImage* get() const { return image_.get(); }
  const std::vector<uint8_t>& device_state() const { return device_state_; }
  uint64_t epoch() const { return epoch_; }
  uint64_t ram_bytes() const;

 private:
  std::unique_ptr<RamImage> image_;
  std::vector<uint8_t> device_state_;
  uint64_t epoch_ = 0;
  std::vector<std::vector<uint64_t>> page_epochs_;  // per block, per page: the last epoch that changed it
};

}  // namespace tandem::replicator
