#include "tests/faults/monitor.h"

#include <time.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "qemu-integration/qmp.h"
#include "tests/faults/lab.h"

namespace tandem::faults {
namespace {

constexpr double kRecentWindowMs = 5000;

double EventMs(const nlohmann::json& event) {
  if (!event.contains("timestamp") || !event["timestamp"].is_object()) return 0;
  const auto& ts = event["timestamp"];
  return double(ts.value("seconds", int64_t(0))) * 1e3 + double(ts.value("microseconds", int64_t(0))) / 1e3;
}

}  // namespace

const RoleReport* MonitorReport::role(const std::string& name) const {
  for (const auto& r : roles) {
    if (r.name == name) return &r;
  }
  return nullptr;
}

uint64_t MonitorReport::term_regressions() const {
  uint64_t n = 0;
  for (const auto& r : roles) n += r.term_regressions;
  return n;
}

std::string MonitorReport::Summary() const {
  std::string out = "monitor: split_brain=" + std::to_string(split_brain) +
                    " looked_both_running=" + std::to_string(looked_both_running) +
                    " term_regressions=" + std::to_string(term_regressions()) + "\n";
  if (!first_violation.empty()) out += "  first violation: " + first_violation + "\n";
  for (const auto& r : roles) {
    char buf[256];
    std::snprintf(buf, sizeof(buf),
                  "  %s: samples=%" PRIu64 " running=%" PRIu64 " connects=%" PRIu64 " resumes=%zu stops=%" PRIu64
                  " max_term=%" PRIu64 " states:",
                  r.name.c_str(), r.samples, r.running_samples, r.connects, r.resume_events_ms.size(), r.stop_events,
                  r.max_term);
    out += buf;
    for (const auto& [ms, state] : r.states) out += " " + state;
    out += "\n";
  }
  return out;
}

InvariantMonitor::InvariantMonitor(std::vector<MonitoredRole> roles, int poll_ms) : poll_ms_(poll_ms) {
  for (auto& spec : roles) {
    RoleState s;
    s.report.name = spec.name;
    s.spec = std::move(spec);
    roles_.push_back(std::move(s));
  }
}

InvariantMonitor::~InvariantMonitor() { Stop(); }

void InvariantMonitor::Start() {
  stop_ = false;
  for (size_t i = 0; i < roles_.size(); ++i) {
    if (!roles_[i].spec.qmp_socket.empty()) threads_.emplace_back([this, i] { PollQmp(i); });
  }
  threads_.emplace_back([this] { PollStatus(); });
}

void InvariantMonitor::Stop() {
  stop_ = true;
  for (auto& t : threads_) t.join();
  threads_.clear();
}

MonitorReport InvariantMonitor::Report() const {
  std::lock_guard<std::mutex> lock(mu_);
  MonitorReport r;
  r.split_brain = split_brain_;
  r.looked_both_running = looked_both_;
  r.first_violation = first_violation_;
  for (const auto& s : roles_) r.roles.push_back(s.report);
  return r;
}

void InvariantMonitor::CheckOverlap(size_t index) {
  RoleState& x = roles_[index];
  if (!x.streak) return;
  for (size_t j = 0; j < roles_.size(); ++j) {
    if (j == index) continue;
    for (Sample& s : roles_[j].recent_running) {
      if (s.counted || s.sent_ms < x.since_ms || s.received_ms > x.until_ms) continue;
      s.counted = true;
      ++split_brain_;
      if (first_violation_.empty()) {
        char buf[256];
        std::snprintf(buf, sizeof(buf),
                      "SPLIT BRAIN: %s ran throughout [%.3f, %.3f] (realtime ms) and %s was running at %.3f..%.3f",
                      x.spec.name.c_str(), x.since_ms, x.until_ms, roles_[j].spec.name.c_str(), s.sent_ms,
                      s.received_ms);
        first_violation_ = buf;
        fprintf(stderr, "[monitor] %s\n", buf);
      }
    }
  }
}

void InvariantMonitor::PollQmp(size_t index) {
  const std::string path = roles_[index].spec.qmp_socket;
  std::unique_ptr<qemu::QmpClient> qmp;
  auto next = std::chrono::steady_clock::now();
  while (!stop_) {
    next += std::chrono::milliseconds(poll_ms_);
    if (!qmp) {
      auto c = qemu::QmpClient::Connect(path, 100);
      if (c.ok()) {
        qmp = std::move(c).value();
        std::lock_guard<std::mutex> lock(mu_);
        ++roles_[index].report.connects;
      }
    }
    bool running = false, answered = false;
    const double sent = WallMs();
    if (qmp) {
      auto status = qmp->Execute("query-status", nullptr, 1000);
      if (status.ok() && status->is_object()) {
        answered = true;
        running = status->value("running", false);
      } else {
        qmp.reset();  // QEMU gone (or wedged): it runs nothing we can see; reconnect when it is back
      }
    }
    const double received = WallMs();
    std::vector<double> resumes;
    uint64_t stops = 0, shutdowns = 0;
    if (qmp) {
      for (;;) {
        auto e = qmp->WaitForEvent("RESUME", 0);
        if (!e.ok()) break;
        resumes.push_back(EventMs(*e));
      }
      while (qmp->WaitForEvent("STOP", 0).ok()) ++stops;
      while (qmp->WaitForEvent("SHUTDOWN", 0).ok()) ++shutdowns;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      RoleState& r = roles_[index];
      for (double t : resumes) r.report.resume_events_ms.push_back(t);
      r.report.stop_events += stops;
      r.report.shutdown_events += shutdowns;
      if (answered) ++r.report.samples;
      if (running) {
        ++r.report.running_samples;
        if (r.report.first_running_ms == 0) r.report.first_running_ms = received;
        r.report.last_running_ms = received;
        // Unproven: the other QEMU's latest sample was running too.
        for (size_t j = 0; j < roles_.size(); ++j) {
          if (j != index && roles_[j].last_running) ++looked_both_;
        }
        if (r.last_running && stops == 0 && shutdowns == 0) {
          if (!r.streak) {
            r.streak = true;
            r.since_ms = r.recent_running.empty() ? sent : r.recent_running.back().received_ms;
          }
          r.until_ms = sent;
        } else {
          r.streak = false;
        }
        r.recent_running.push_back({sent, received});
        while (!r.recent_running.empty() && r.recent_running.front().received_ms < received - kRecentWindowMs) {
          r.recent_running.pop_front();
        }
        CheckOverlap(index);
      } else {
        r.streak = false;
      }
      r.last_running = running;
    }
    std::this_thread::sleep_until(next);
    if (std::chrono::steady_clock::now() > next + std::chrono::milliseconds(50)) next = std::chrono::steady_clock::now();
  }
}

void InvariantMonitor::PollStatus() {
  while (!stop_) {
    for (size_t i = 0; i < roles_.size(); ++i) {
      const std::string& path = roles_[i].spec.status_file;
      if (path.empty()) continue;
      std::ifstream in(path);
      std::stringstream text;
      text << in.rdbuf();
      auto s = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
      if (s.is_discarded() || !s.is_object()) continue;
      const double now = WallMs();
      std::lock_guard<std::mutex> lock(mu_);
      RoleState& r = roles_[i];
      r.report.last_status = text.str();
      const nlohmann::json::json_pointer term_at(r.spec.term_pointer), state_at(r.spec.state_pointer);
      if (s.contains(term_at) && s[term_at].is_number_unsigned()) {
        const uint64_t term = s[term_at].get<uint64_t>();
        // Counted once per drop (a file that stays at a lower term is one regression, not one per read).
        if (term < r.report.max_term && term < r.last_term) {
          ++r.report.term_regressions;
          if (first_violation_.empty()) {
            first_violation_ = "TERM WENT BACKWARDS: " + r.spec.name + " from " + std::to_string(r.report.max_term) +
                               " to " + std::to_string(term);
            fprintf(stderr, "[monitor] %s\n", first_violation_.c_str());
          }
        }
        r.report.max_term = std::max(r.report.max_term, term);
        r.last_term = term;
      }
      const std::string state = s.contains(state_at) && s[state_at].is_string() ? s[state_at].get<std::string>() : "?";
      if (state != r.last_state) {
        r.last_state = state;
        r.report.states.push_back({now, state});
      }
    }
    for (int i = 0; i < 4 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace tandem::faults
