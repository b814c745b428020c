#include "roles/status_report.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <vector>

#include "common/private_files.h"
#include "metrics/metrics.h"
#include "roles/status_file.h"

namespace tandem::roles {
namespace {

[[gnu::format(printf, 2, 3)]] void Appendf(std::string* out, const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  vsnprintf(line, sizeof line, format, args);
  va_end(args);
  *out += line;
}

// The figures of the metrics endpoint, one row per series, one column per role that publishes them.
void AppendMetricsTable(const nlohmann::json& status, std::string* out) {
  std::vector<std::string> roles, series;
  size_t width = 6;
  for (const auto& [role, s] : status.items()) {
    if (!s.is_object() || !s.contains("metrics") || !s["metrics"].is_object()) continue;
    roles.push_back(role);
    for (const auto& [name, value] : s["metrics"].items()) {
      if (std::find(series.begin(), series.end(), name) == series.end()) series.push_back(name);
      width = std::max(width, name.size());
    }
  }
  if (roles.empty()) return;
  std::sort(series.begin(), series.end());
  Appendf(out, "%-*s", int(width), "METRIC");
  for (const std::string& role : roles) Appendf(out, " %16s", role.c_str());
  *out += "\n";
  for (const std::string& name : series) {
    Appendf(out, "%-*s", int(width), name.c_str());
    for (const std::string& role : roles) {
      const nlohmann::json& m = status[role]["metrics"];
      Appendf(out, " %16s", m.contains(name) && m[name].is_number() ? metrics::FormatValue(m[name].get<double>()).c_str() : "-");
    }
    *out += "\n";
  }
}

}  // namespace

nlohmann::json CollectStatus(const StatusSources& sources) {
  nlohmann::json all = nlohmann::json::object();
  for (const auto& [role, dir] : {std::pair{"primary", sources.primary_state_dir}, {"standby", sources.standby_state_dir}}) {
    auto status = ReadStatusFile(dir);
    all[role] = status.ok() ? status.value() : nlohmann::json{{"state", "not running here"}};
    // A status file outlives a killed process: say so instead of showing its last state as current.
    if (all[role].contains("pid") && kill(all[role]["pid"].get<int>(), 0) != 0 && errno == ESRCH) {
      all[role]["state"] = "DEAD (pid " + all[role]["pid"].dump() + " gone; last state " +
                           all[role].value("state", std::string("?")) + ")";
      all[role].erase("peer");
    }
  }
  // Guest memory still on this host: in use by a running role, or left behind by one that was killed.
  nlohmann::json memory_files = nlohmann::json::array();
  for (const FileOnDisk& file : ListFiles(sources.memory_dir, sources.memory_file_prefix)) {
    memory_files.push_back({{"path", file.path}, {"bytes", file.bytes}});
  }
  all["memory_files"] = memory_files;
  return all;
}

std::string FormatStatus(const std::string& vm_name, const nlohmann::json& status) {
  std::string out;
  Appendf(&out, "VM %s\n", vm_name.c_str());
  Appendf(&out, "%-8s %-12s %-5s %-9s %-8s %-6s %-22s %s\n", "ROLE", "STATE", "TERM", "PROTECTED", "EPOCH", "PEER",
         "WITNESS", "DETAIL");
  for (const auto& [role, s] : status.items()) {
    if (role == "memory_files") continue;
    auto get = [&](const char* key) { return s.contains(key) ? s[key].dump() : std::string("-"); };
    const nlohmann::json guard = s.value("guard", nlohmann::json::object());
    std::string peer = s.contains("peer") ? (s["peer"].value("alive", false) ? "alive" : "lost") : "-";
    std::string epoch = role == "primary" ? get("epoch") : get("last_applied");
    std::string witness = "-";
    if (guard.contains("witness")) {
      const auto& w = guard["witness"];
      witness = !w.value("configured", false) ? "none (two-host)"
                : w.value("reachable", false) ? "reachable" : "UNREACHABLE";
      if (guard.value("lease_valid_ms", int64_t(-1)) >= 0) {
        witness += " lease " + std::to_string(guard["lease_valid_ms"].get<int64_t>()) + "ms";
      }
    }
    std::string detail = s.contains("error") ? s["error"].get<std::string>()
                         : role == "primary" ? "acked " + (s.contains("standby") ? s["standby"]["last_acked"].dump() : "-")
                                             : "rejected " + get("epochs_rejected");
    if (s.contains("resume_ms")) detail += " resume_ms " + get("resume_ms");
    if (s.contains("epoch_interval")) detail += ", checkpoints " + s["epoch_interval"].get<std::string>();
    if (s.contains("standby") && s["standby"].contains("compression")) {
      detail += ", compression " + s["standby"]["compression"].get<std::string>();
    }
    if (!guard.value("alarm", std::string()).empty()) detail += " ALARM: " + guard["alarm"].get<std::string>();
    Appendf(&out, "%-8s %-12s %-5s %-9s %-8s %-6s %-22s %s\n", role.c_str(), s.value("state", "?").c_str(), get("term").c_str(),
           role == "primary" ? (s.value("protected", false) ? "yes" : "NO") : "-", epoch.c_str(), peer.c_str(),
           witness.c_str(), detail.c_str());
    if (s.contains("peer") && s["peer"].contains("links")) {
      for (const auto& link : s["peer"]["links"]) {
        Appendf(&out, "         link %s -> %s: %s, rtt %.2f ms, loss %.0f%%\n", link.value("local", "").c_str(),
               link.value("peer", "").c_str(), link.value("up", false) ? "up" : "DOWN", link.value("rtt_ms", 0.0),
               100 * link.value("loss", 0.0));
      }
    }
  }
  AppendMetricsTable(status, &out);
  for (const auto& file : status.value("memory_files", nlohmann::json::array())) {
    Appendf(&out, "memory file %s: %.1f MiB\n", file["path"].get<std::string>().c_str(),
           file["bytes"].get<uint64_t>() / 1048576.0);
  }
  return out;
}

}  // namespace tandem::roles
