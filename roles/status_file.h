// Each role publishes its state as <state_dir>/status.json (rewritten atomically) for `tandem status` and tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "heartbeat/heartbeat.h"

namespace tandem::roles {

Status WriteStatusFile(const std::string& state_dir, const nlohmann::json& status);
Result<nlohmann::json> ReadStatusFile(const std::string& state_dir);
// Logs "<what>: <error>" and publishes {"role": role, "state": "failed", "error": ...}.
void ReportFailure(const std::string& state_dir, const char* role, const char* what, const Status& error);
// The heartbeat links as status.json lists them.
nlohmann::json PeerLinksJson(const heartbeat::PeerStatus& peer);

}  // namespace tandem::roles
