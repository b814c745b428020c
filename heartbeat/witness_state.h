// The witness's state file: the term and holder of every VM, the part of the witness that must survive a restart
// (a restarted witness must never hand out a term twice).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "common/env.h"
#include "common/status.h"

namespace tandem::heartbeat {

// The persisted part: term and holder per VM.
struct PersistedVm {
  uint64_t term = 0;
  std::string holder;
};
using WitnessTable = std::map<std::string, PersistedVm, std::less<>>;

// The state file: {"format":"tandem-witness","version":1,"vms":{"vm0":{"term":3,"holder":"host-b"}}}.
// A missing file is an empty table; an unreadable or malformed one is an error (never guess a term).
Result<WitnessTable> LoadWitnessState(const std::string& path, Env* env = Env::Default());
// Atomically and durably (Env::WriteFileAtomically): on failure the previous file stays as it was.
Status SaveWitnessState(const std::string& path, const WitnessTable& table, Env* env = Env::Default());

}  // namespace tandem::heartbeat
