// Pre-shared keys (heartbeat, witness, replication link): how long they must be, and reading one from a key file
// that only tandem's user can read. Threat model: common/SECURITY.md.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace tandem {

// A recorded handshake or heartbeat lets an eavesdropper test guesses of the key offline, so a key must be long
// enough that guessing is hopeless: 16 bytes (e.g. `head -c 32 /dev/urandom | base64`, 44 characters).
inline constexpr size_t kMinKeyBytes = 16;

// InvalidArgument naming `what` (e.g. "heartbeat.psk") when `key` is shorter than kMinKeyBytes.
Status CheckKeyLength(std::string_view key, std::string_view what);

// The key in `path`, surrounding whitespace trimmed (a trailing newline is not part of it). Refused unless the file
// is a regular file owned by this process's user and closed to group and others (mode 0600 or 0400, like an ssh
// private key: anyone who reads it can impersonate either host), and the key is at least kMinKeyBytes long.
Result<std::string> ReadKeyFile(const std::string& path);

}  // namespace tandem
