#include "roles/pause_stats.h"

#include <algorithm>
#include <cinttypes>

namespace tandem::roles {

void PauseWindow::Add(uint64_t epoch_pages, uint64_t epoch_bytes, int64_t pause_ns) {
  ++epochs, pages += epoch_pages, bytes += epoch_bytes, total_ns += pause_ns;
  max_ns = std::max(max_ns, pause_ns);
}

EpochCsv::EpochCsv(const std::string& path) : file_(fopen(path.c_str(), "w")) {
  if (file_) fprintf(file_, "epoch,pages,page_bytes,device_bytes,pause_us\n");
}

EpochCsv::~EpochCsv() {
  if (file_) fclose(file_);
}

void EpochCsv::Add(uint64_t epoch, uint64_t pages, uint64_t page_bytes, size_t device_bytes, int64_t pause_ns) {
  if (file_) {
    fprintf(file_, "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%zu,%" PRId64 "\n", epoch, pages, page_bytes, device_bytes,
            pause_ns / 1000);
  }
}

void EpochCsv::Flush() {
  if (file_) fflush(file_);
}

}  // namespace tandem::roles
