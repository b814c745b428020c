// The figures both roles publish on the metrics endpoint ([metrics] address: metrics/server.h) and under
// "metrics" in status.json (`tandem status`). README.md's "Metrics" section lists each one with its unit.
// The checkpoint loop counts epochs and pauses (relaxed atomics); everything else is read from the shipper,
// receiver and heartbeats only when somebody looks (Registry::OnCollect).
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "heartbeat/types.h"
#include "metrics/metrics.h"
#include "metrics/server.h"
#include "replicator/receiver.h"
#include "replicator/shipper.h"

namespace tandem::roles {

class RoleMetrics {
 public:
  // `links`: this host's heartbeat links (a series per link).
  explicit RoleMetrics(const std::vector<heartbeat::LinkConfig>& links);

  metrics::Registry& registry() { return registry_; }
  const metrics::Registry& registry() const { return registry_; }

  void SetRole(bool primary);
  void SetTerm(uint64_t term) { term_->Set(double(term)); }
  void SetProtected(bool yes) { protected_->Set(yes ? 1 : 0); }
  // Primary: the interval the next epoch runs at (epoch_ms, or what epoch_ms = "auto" picked).
  void SetEpochInterval(int ms) { epoch_interval_->Set(ms / 1e3); }
  // Primary, after each checkpoint: the VM was paused `pause_ns` for epoch `epoch`.
  void OnCheckpoint(uint64_t epoch, int64_t pause_ns);
  // From the primary's shipper / the standby's receiver, at `now_ns` (a monotonic clock).
  void SetShipper(const replicator::ShipperStats& stats, int64_t now_ns);
  void SetReceiver(const replicator::ReceiverStats& stats, int64_t now_ns);
  void SetPeer(const heartbeat::PeerStatus& peer);

  // {"<series>": value, ...} as the endpoint names them (histograms: _sum and _count).
  nlohmann::json Json() const;

 private:
  // Bytes per second between samples at least a second apart (shorter gaps keep the last rate).
  void SetThroughput(uint64_t wire_bytes, int64_t now_ns);

  metrics::Registry registry_;
  metrics::Gauge *role_primary_, *role_standby_, *protected_, *term_, *epoch_, *epoch_interval_;
  metrics::Counter* epochs_;
  metrics::Histogram* pause_;
  metrics::Counter *raw_bytes_, *wire_bytes_, *full_resyncs_, *catch_ups_;
  metrics::Gauge *lag_epochs_, *lag_seconds_, *throughput_, *link_capacity_;
  metrics::Gauge *resync_active_, *resync_progress_, *resync_bytes_sent_, *resync_bytes_total_;
  struct Link {
    metrics::Gauge *up, *rtt, *loss;
  };
  std::vector<Link> links_;
  // SetThroughput's last sample (SetShipper and SetReceiver run in the registry's collect call: one at a time).
  uint64_t rate_bytes_ = 0;
  int64_t rate_ns_ = 0;
};

// Serves `metrics` on `address` (empty: nothing to start) until `server` stops.
Status StartMetricsEndpoint(const std::string& address, RoleMetrics* metrics, metrics::MetricsServer* server);

}  // namespace tandem::roles
