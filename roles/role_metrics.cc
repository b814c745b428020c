#include "roles/role_metrics.h"

#include "common/log.h"

namespace tandem::roles {
namespace {

// Pauses from a fraction of a millisecond (KVM, small epochs) to seconds (TCG, a stalled standby).
const std::vector<double> kPauseBounds = {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5};

}  // namespace

RoleMetrics::RoleMetrics(const std::vector<heartbeat::LinkConfig>& links) {
  metrics::Registry& r = registry_;
  const char* role_help = "1 for the role this process has now (a promoted standby is primary), 0 for the other";
  role_primary_ = r.AddGauge("tandem_role", role_help, {{"role", "primary"}});
  role_standby_ = r.AddGauge("tandem_role", role_help, {{"role", "standby"}});
  protected_ = r.AddGauge("tandem_protected",
                          "1 while a standby holds a copy of the VM it could resume and takes its epochs, else 0");
  term_ = r.AddGauge("tandem_term", "The term (witness lease generation) this role runs under; 0 before one");
  epoch_ = r.AddGauge("tandem_epoch", "Primary: the last checkpoint's epoch number; standby: the last applied");
  epoch_interval_ = r.AddGauge("tandem_epoch_interval_seconds",
                               "Primary: the checkpoint interval the next epoch runs at (epoch_ms, or what "
                               "epoch_ms = \"auto\" picked)");
  epochs_ = r.AddCounter("tandem_epochs_total", "Primary: checkpoints taken; standby: epochs applied to the replica");
  pause_ = r.AddHistogram("tandem_checkpoint_pause_seconds",
                          "Primary: how long the VM was paused per checkpoint (request to resume)", kPauseBounds);
  raw_bytes_ = r.AddCounter("tandem_epoch_raw_bytes_total",
                            "Primary: guest bytes the shipped epochs stand for (pages x 4096 + device state, resyncs "
                            "included)");
  wire_bytes_ = r.AddCounter("tandem_epoch_wire_bytes_total",
                             "Bytes of epochs on the replication link: sent (primary), received (standby)");
  full_resyncs_ = r.AddCounter("tandem_resyncs_total", "Primary: resyncs sent to a standby", {{"kind", "full"}});
  catch_ups_ = r.AddCounter("tandem_resyncs_total", "Primary: resyncs sent to a standby", {{"kind", "catch_up"}});
  lag_epochs_ = r.AddGauge("tandem_replication_lag_epochs",
                           "Primary: epochs submitted but not yet acknowledged by the standby (0 on the standby)");
  lag_seconds_ = r.AddGauge("tandem_replication_lag_seconds",
                            "Primary: age of the oldest epoch not yet acknowledged, the recovery point were the "
                            "primary lost now (0 on the standby)");
  throughput_ = r.AddGauge("tandem_replication_throughput_bytes_per_second",
                           "Replication link bytes per second (sent or received) between the last two looks at "
                           "least a second apart");
  link_capacity_ = r.AddGauge("tandem_replication_link_capacity_bytes_per_second",
                              "Primary: the link's drain rate last measured while it was busy; 0 if never");
  resync_active_ = r.AddGauge("tandem_resync_active", "Primary: 1 while a resync is sent or awaits its ack");
  resync_progress_ = r.AddGauge("tandem_resync_progress_ratio",
                                "Primary: RAM bytes of the current (or last) resync encoded and sent, 0 to 1");
  resync_bytes_sent_ = r.AddGauge("tandem_resync_sent_bytes",
                                  "Primary: RAM bytes of the current (or last) resync encoded and sent");
  resync_bytes_total_ = r.AddGauge("tandem_resync_bytes",
                                   "Primary: RAM bytes the current (or last) resync ships (only the pages that "
                                   "differ when the standby sent its page hashes)");
  for (const heartbeat::LinkConfig& link : links) {
    const metrics::Labels labels = {{"local", link.local_address}, {"peer", link.peer_address}};
    links_.push_back({r.AddGauge("tandem_heartbeat_link_up", "1 while heartbeats arrive on the link", labels),
                      r.AddGauge("tandem_heartbeat_rtt_seconds", "Smoothed heartbeat round trip on the link", labels),
                      r.AddGauge("tandem_heartbeat_loss_ratio",
                                 "Heartbeats lost of the last 64 on the link (1 while it is down)", labels)});
  }
}

void RoleMetrics::SetRole(bool primary) {
  role_primary_->Set(primary ? 1 : 0);
  role_standby_->Set(primary ? 0 : 1);
}

void RoleMetrics::OnCheckpoint(uint64_t epoch, int64_t pause_ns) {
  epochs_->Add();
  epoch_->Set(double(epoch));
  pause_->Observe(pause_ns / 1e9);
}

void RoleMetrics::SetShipper(const replicator::ShipperStats& s, int64_t now_ns) {
  SetProtected(s.standby_connected);
  raw_bytes_->Set(double(s.raw_bytes_sent));
  wire_bytes_->Set(double(s.bytes_sent));
  full_resyncs_->Set(double(s.resyncs));
  catch_ups_->Set(double(s.catch_ups));
  lag_epochs_->Set(double(s.last_submitted > s.last_acked ? s.last_submitted - s.last_acked : 0));
  lag_seconds_->Set(s.ack_lag_ms / 1e3);
  link_capacity_->Set(double(s.link_bytes_per_s));
  resync_active_->Set(s.resync_active ? 1 : 0);
  resync_bytes_sent_->Set(double(s.resync_sent_bytes));
  resync_bytes_total_->Set(double(s.resync_total_bytes));
  resync_progress_->Set(s.resync_total_bytes ? double(s.resync_sent_bytes) / double(s.resync_total_bytes) : 0);
  SetThroughput(s.bytes_sent, now_ns);
}

void RoleMetrics::SetReceiver(const replicator::ReceiverStats& s, int64_t now_ns) {
  epochs_->Set(double(s.epochs_applied));
  epoch_->Set(double(s.last_applied));
  wire_bytes_->Set(double(s.bytes_received));
  SetThroughput(s.bytes_received, now_ns);
}

void RoleMetrics::SetPeer(const heartbeat::PeerStatus& peer) {
  for (size_t i = 0; i < links_.size() && i < peer.links.size(); ++i) {
    links_[i].up->Set(peer.links[i].up ? 1 : 0);
    links_[i].rtt->Set(peer.links[i].rtt_ms / 1e3);
    links_[i].loss->Set(peer.links[i].loss);
  }
}

void RoleMetrics::SetThroughput(uint64_t wire_bytes, int64_t now_ns) {
  if (rate_ns_ == 0 || wire_bytes < rate_bytes_) {  // first look, or a new connection's count
    rate_bytes_ = wire_bytes, rate_ns_ = now_ns;
    return;
  }
  if (now_ns - rate_ns_ < 1'000'000'000) return;
  throughput_->Set(double(wire_bytes - rate_bytes_) * 1e9 / double(now_ns - rate_ns_));
  rate_bytes_ = wire_bytes, rate_ns_ = now_ns;
}

nlohmann::json RoleMetrics::Json() const {
  nlohmann::json out = nlohmann::json::object();
  for (const metrics::Sample& s : registry_.Snapshot()) out[metrics::SeriesName(s.name, s.labels)] = s.value;
  return out;
}

Status StartMetricsEndpoint(const std::string& address, RoleMetrics* metrics, metrics::MetricsServer* server) {
  if (address.empty()) return Status::Ok();
  TANDEM_RETURN_IF_ERROR(server->Start(address, &metrics->registry()));
  TLOG_INFO("metrics", "Prometheus endpoint on %s (port %d): GET /metrics", address.c_str(), server->port());
  return Status::Ok();
}

}  // namespace tandem::roles
