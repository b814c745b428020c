#include "replicator/shipper_history.h"

#include <cinttypes>

#include "common/log.h"

namespace tandem::replicator {

void ShipperHistory::Reset(std::unique_ptr<GuestRam> ram, std::vector<uint8_t> device_state, uint64_t epoch) {
  ram_ = std::move(ram);
  device_state_ = std::move(device_state);
  epoch_ = epoch;
  page_epochs_.clear();
  for (const RamBlockInfo& b : layout()) page_epochs_.emplace_back(b.size_bytes / kPageSize, epoch);
}

void ShipperHistory::Fold(Epoch& epoch) {
  Status st = ram_->Fold(epoch);
  if (!st.ok()) {
    TLOG_ERROR("shipper", "epoch %" PRIu64 " does not fit the RAM layout: %s", epoch.number(), st.ToString().c_str());
  } else {
    for (const PageRecord& p : epoch.pages()) page_epochs_[p.block][p.offset / kPageSize] = epoch.number();
  }
  if (!epoch.device_state().empty()) device_state_.swap(epoch.device_state());
  epoch_ = epoch.number();
}

bool ShipperHistory::ChangedSince(uint64_t epoch, std::vector<PageRef>* pages) const {
  if (epoch > epoch_ || epoch_ - epoch > UINT32_MAX) return false;
  uint64_t total = 0;
  for (const std::vector<uint64_t>& block : page_epochs_) total += block.size();
  for (uint32_t b = 0; b < page_epochs_.size(); ++b) {
    for (uint64_t i = 0; i < page_epochs_[b].size(); ++i) {
      if (page_epochs_[b][i] <= epoch) continue;
      if (pages->size() >= total / kCatchUpMaxShare) return false;  // as well send it all
      pages->push_back({b, i * kPageSize});
    }
  }
  return true;
}

uint64_t ShipperHistory::ram_bytes() const {
  uint64_t ram = 0;
  for (const RamBlockInfo& b : layout()) ram += b.size_bytes;
  return ram;
}

}  // namespace tandem::replicator
