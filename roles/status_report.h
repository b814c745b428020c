// `tandem status`: what runs on this host for one VM, read from the roles' status.json files (a role whose pid
// is gone is shown DEAD with its last state) and the VM's files in memory_dir.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace tandem::roles {

struct StatusSources {
  std::string primary_state_dir, standby_state_dir;
  std::string memory_dir, memory_file_prefix;
};

// {"primary": {...}, "standby": {...}, "memory_files": [{"path", "bytes"}]}
nlohmann::json CollectStatus(const StatusSources& sources);
// The operator's table of CollectStatus().
std::string FormatStatus(const std::string& vm_name, const nlohmann::json& status);

}  // namespace tandem::roles
