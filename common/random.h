// Random identifiers that tell one process (or one run) from the next.
#pragma once

#include <cstdint>

#include "common/env.h"

namespace tandem {

// A random, never-zero 64-bit id (getrandom; without entropy, derived from the wall clock and the pid, still
// different per start).
uint64_t RandomNonZeroId(Clock* clock);

}  // namespace tandem
