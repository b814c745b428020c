// Output commit for the guest's serial console. QEMU's chardev connects to a unix stream socket this module
// listens on (QemuConsoleArgs); the bytes the guest writes are held per epoch and appended to the console log
// once their epoch is acknowledged. Readers follow the log file (tail -f): a slow reader never holds the guest.
#pragma once

#include <memory>
#include <string>

#include "common/env.h"
#include "common/fd.h"
#include "common/status.h"
#include "output-commit/held_output.h"

namespace tandem::output_commit {

struct ConsoleOptions {
  std::string socket_path;  // tandem listens: the chardev's path (<state_dir>/console.sock)
  std::string log_path;     // released bytes are appended here
  // max_record_bytes is the read size: one chunk per read(2).
  HoldLimits limits{.max_bytes = 1 << 20, .max_records = 4096, .max_record_bytes = 4096};
};

class ConsoleOutputCommit final : public HeldOutput {
 public:
  // Listens on socket_path (before QEMU starts: its chardev connects once, at startup) and opens the log.
  static Result<std::unique_ptr<ConsoleOutputCommit>> Create(ConsoleOptions options, Clock* clock);
  ~ConsoleOutputCommit() override;

 private:
  ConsoleOutputCommit(ConsoleOptions options, UniqueFd listener, UniqueFd log, Clock* clock);
  Status DrainSourceLocked() override;
  WriteResult WriteSinkLocked(std::span<const uint8_t> bytes) override;
  void AddPollFdsLocked(std::vector<pollfd>* fds) override;
  Status HandlePollLocked(const std::vector<pollfd>& fds) override;
  void FillStatsLocked(OutputStats* stats) const override { stats->source_connected = conn_.valid(); }
  void AcceptLocked();

  ConsoleOptions options_;
  UniqueFd listener_, conn_, log_;
};

}  // namespace tandem::output_commit
