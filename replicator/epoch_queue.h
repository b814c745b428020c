// The shipper's two rings, allocated once (no allocation per epoch): epochs submitted and not yet sent, and
// epochs sent and not yet acknowledged. Not synchronized: the shipper holds its mutex around them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "replicator/epoch.h"

namespace tandem::replicator {

// Submitted epochs waiting to be sent, oldest first.
class EpochQueue {
 public:
  void Reserve(size_t capacity) { ring_.resize(capacity); }
  size_t size() const { return size_; }
  bool full() const { return size_ == ring_.size(); }
  void Push(std::unique_ptr<Epoch> epoch) {
    ring_[(head_ + size_) % ring_.size()] = std::move(epoch);
    size_++;
  }
  std::unique_ptr<Epoch> Pop() {
    std::unique_ptr<Epoch> e = std::move(ring_[head_]);
    head_ = (head_ + 1) % ring_.size();
    size_--;
    return e;
  }
  Epoch& newest() { return *ring_[(head_ + size_ - 1) % ring_.size()]; }

 private:
  std::vector<std::unique_ptr<Epoch>> ring_;
  size_t head_ = 0, size_ = 0;
};

// Sent epochs awaiting their ACK, oldest first, each with the time by which it must be acknowledged.
class AckWindow {
 public:
  void Reserve(size_t capacity) { ring_.resize(capacity); }
  void Clear() { size_ = 0; }
  size_t size() const { return size_; }
  bool full() const { return size_ == ring_.size(); }
  void Sent(uint64_t epoch, int64_t deadline_ns) { ring_[(head_ + size_++) % ring_.size()] = {epoch, deadline_ns}; }
  // An ACK covers its epoch and every one before it.
  void AckedUpTo(uint64_t epoch) {
    while (size_ > 0 && ring_[head_].epoch <= epoch) {
      head_ = (head_ + 1) % ring_.size();
      size_--;
    }
  }
  // True, with the epoch, when the oldest unacknowledged epoch's deadline is past `now_ns`.
  bool Overdue(int64_t now_ns, uint64_t* epoch) const {
    if (size_ == 0 || now_ns <= ring_[head_].deadline_ns) return false;
    *epoch = ring_[head_].epoch;
    return true;
  }

 private:
  struct Entry {
    uint64_t epoch;
    int64_t deadline_ns;
  };
  std::vector<Entry> ring_;
  size_t head_ = 0, size_ = 0;
};

}  // namespace tandem::replicator
