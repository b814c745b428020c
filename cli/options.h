// The configuration file mapped onto what each role is told (roles/options.h).
#pragma once

#include <string>

#include "config/config.h"
#include "roles/options.h"

namespace tandem::cli {

using config::Config;

// This host's QEMU for `role` (sockets and logs under the role's state_dir).
qemu::VmConfig MakeVmConfig(const Config& config, qemu::QemuRole role);
roles::PrimaryOptions MakePrimaryOptions(const Config& config);
roles::StandbyOptions MakeStandbyOptions(const Config& config);

}  // namespace tandem::cli
