// The primary's pause statistics: the VM is stopped from CHECKPOINT_REQUEST to VMSTATE_LOADED.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace tandem::roles {

// Over one reporting window (a log line a second).
struct PauseWindow {
  uint64_t epochs = 0, pages = 0, bytes = 0;
  int64_t total_ns = 0, max_ns = 0;
  void Add(uint64_t epoch_pages, uint64_t epoch_bytes, int64_t pause_ns);
  double average_ms() const { return epochs ? total_ns / 1e6 / double(epochs) : 0; }
  double kib_per_epoch() const { return epochs ? bytes / 1024.0 / double(epochs) : 0; }
};

// <state_dir>/epochs.csv, one line per checkpoint (scripts/bench reads it). Statistics only: a file that cannot
// be created is no error.
class EpochCsv {
 public:
  explicit EpochCsv(const std::string& path);
  ~EpochCsv();
  EpochCsv(const EpochCsv&) = delete;
  EpochCsv& operator=(const EpochCsv&) = delete;

  void Add(uint64_t epoch, uint64_t pages, uint64_t page_bytes, size_t device_bytes, int64_t pause_ns);
  void Flush();

 private:
  FILE* file_;
};

}  // namespace tandem::roles
