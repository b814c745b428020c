// Each role publishes its state as <state_dir>/status.json (rewritten atomically) for `tandem status` and tests.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"

namespace tandem::cli {

Status WriteStatusFile(const std::string& state_dir, const nlohmann::json& status);
Result<nlohmann::json> ReadStatusFile(const std::string& state_dir);

}  // namespace tandem::cli
