#include "roles/status_file.h"

#include <cerrno>
#include <cstdio>
#include <fstream>

#include "common/log.h"

namespace tandem::roles {

Status WriteStatusFile(const std::string& state_dir, const nlohmann::json& status) {
  const std::string path = state_dir + "/status.json";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    if (!out) return Status::FromErrno("write " + tmp, errno);
    out << status.dump(2) << "\n";
    if (!out) return Status::IoError("write " + tmp);
  }
  // rename() makes readers see either the old or the new file, never half of one.
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Status::FromErrno("rename " + tmp, errno);
  return Status::Ok();
}

Result<nlohmann::json> ReadStatusFile(const std::string& state_dir) {
  const std::string path = state_dir + "/status.json";
  std::ifstream in(path);
  if (!in) return Status::NotFound(path);
  auto parsed = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Status::Corruption(path + " is not valid JSON");
  return parsed;
}

void ReportFailure(const std::string& state_dir, const char* role, const char* what, const Status& error) {
  TLOG_ERROR("main", "%s: %s", what, error.ToString().c_str());
  WriteStatusFile(state_dir, {{"role", role}, {"state", "failed"}, {"error", error.ToString()}}).ok();
}

nlohmann::json PeerLinksJson(const heartbeat::PeerStatus& peer) {
  nlohmann::json links = nlohmann::json::array();
  for (const auto& link : peer.links) {
    links.push_back({{"local", link.local_address}, {"peer", link.peer_address}, {"up", link.up},
                     {"rtt_ms", link.rtt_ms}, {"loss", link.loss}});
  }
  return links;
}

}  // namespace tandem::roles
