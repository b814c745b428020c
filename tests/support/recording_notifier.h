// A ServiceNotifier that records what it was told, for tests of what the roles and the witness tell systemd.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "common/service_notifier.h"

namespace tandem::testing {

class RecordingNotifier final : public ServiceNotifier {
 public:
  void Ready() override {
    std::lock_guard<std::mutex> lock(mu_);
    ++ready_;
    events_.push_back("READY");
  }
  void Status(const std::string& line) override {
    std::lock_guard<std::mutex> lock(mu_);
    statuses_.push_back(line);
    events_.push_back("STATUS=" + line);
  }
  void Watchdog() override {
    std::lock_guard<std::mutex> lock(mu_);
    ++watchdogs_;
  }

  int ready() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ready_;
  }
  int watchdogs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return watchdogs_;
  }
  std::vector<std::string> statuses() const {
    std::lock_guard<std::mutex> lock(mu_);
    return statuses_;
  }
  // READY and STATUS=... in the order they came (watchdogs are only counted).
  std::vector<std::string> events() const {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }

 private:
  mutable std::mutex mu_;
  int ready_ = 0, watchdogs_ = 0;
  std::vector<std::string> statuses_, events_;
};

}  // namespace tandem::testing
