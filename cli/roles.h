// The long-running roles of the tandem binary. Each returns the process exit code.
#pragma once

#include "cli/config.h"

namespace tandem::cli {

int RunPrimary(const Config& config);
int RunStandby(const Config& config);

}  // namespace tandem::cli
