// Test configurations: a generated base TOML text with a test's own keys laid over it. TOML forbids a table or
// key twice, so a test cannot just append "[vm]\naccel = \"tcg\"" to a base that already has [vm]: the overlay's
// keys replace the base's (tables merge key by key), new tables are added.
#pragma once

#include <string>
#include <string_view>

namespace tandem::testing {

// Throws std::runtime_error when either text is not TOML (a broken test, not a condition to test).
std::string OverlayToml(std::string_view base, std::string_view overlay);

}  // namespace tandem::testing
