#include "roles/witness_metrics.h"

namespace tandem::roles {

WitnessMetrics::WitnessMetrics() {
  registry_.AddGauge("tandem_role", "The role this process plays (1 for its role)", {{"role", "witness"}})->Set(1);
  up_ = registry_.AddGauge("tandem_witness_serving", "1 while the witness answers on its UDP port");
  received_ = registry_.AddCounter("tandem_witness_datagrams_total", "Datagrams the witness received");
  granted_ = registry_.AddCounter("tandem_witness_grants_total", "Leases and promotions granted");
  denied_ = registry_.AddCounter("tandem_witness_denials_total", "Requests denied (challenges not included)");
  rejected_ = registry_.AddCounter("tandem_witness_rejected_total",
                                   "Datagrams dropped: malformed, bad MAC, misdirected or replayed");
  persist_errors_ = registry_.AddCounter("tandem_witness_persist_errors_total",
                                         "Term changes refused because the state file could not be written");
  registry_.OnCollect([this] { Collect(); });
}

WitnessMetrics::~WitnessMetrics() { registry_.OnCollect(nullptr); }

void WitnessMetrics::Serving(const heartbeat::WitnessServer* server) {
  std::lock_guard<std::mutex> lock(mu_);
  server_ = server;
}

void WitnessMetrics::Collect() {
  std::lock_guard<std::mutex> lock(mu_);
  up_->Set(server_ != nullptr ? 1 : 0);
  if (server_ == nullptr) return;  // the totals keep their last values
  const heartbeat::WitnessCounters c = server_->counters();
  received_->Set(double(c.received));
  granted_->Set(double(c.granted));
  denied_->Set(double(c.denied));
  rejected_->Set(double(c.malformed + c.unauthenticated + c.misdirected + c.replayed));
  persist_errors_->Set(double(c.persist_errors));
}

}  // namespace tandem::roles
