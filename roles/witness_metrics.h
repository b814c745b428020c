// The witness's figures on the metrics endpoint ([metrics] address in witness.toml): its role and what it decided,
// read from the running WitnessServer's counters when somebody scrapes. README.md's "Metrics" section lists them.
#pragma once

#include <mutex>

#include "heartbeat/witness_server.h"
#include "metrics/metrics.h"

namespace tandem::roles {

class WitnessMetrics {
 public:
  WitnessMetrics();
  ~WitnessMetrics();  // a scrape must not reach for what is going

  const metrics::Registry& registry() const { return registry_; }
  // RunWitnessDaemon's hook (heartbeat::WitnessServingHook): the server to read, or nullptr once it stops.
  void Serving(const heartbeat::WitnessServer* server);

 private:
  void Collect();

  metrics::Registry registry_;
  metrics::Gauge* up_;
  metrics::Counter *received_, *granted_, *denied_, *rejected_, *persist_errors_;
  std::mutex mu_;
  const heartbeat::WitnessServer* server_ = nullptr;
};

}  // namespace tandem::roles
