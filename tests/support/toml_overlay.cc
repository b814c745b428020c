#include "tests/support/toml_overlay.h"

#include <sstream>
#include <stdexcept>
#include <toml++/toml.h>

namespace tandem::testing {
namespace {

toml::table Parse(std::string_view text, std::string_view what) {
  try {
    return toml::parse(text, what);
  } catch (const toml::parse_error& e) {
    std::ostringstream message;
    message << e;
    throw std::runtime_error(message.str());
  }
}

void Merge(toml::table& base, const toml::table& overlay) {
  for (const auto& [key, node] : overlay) {
    toml::table* into = base[key].as_table();
    if (into != nullptr && node.is_table()) {
      Merge(*into, *node.as_table());
    } else {
      base.insert_or_assign(key, node);
    }
  }
}

}  // namespace

std::string OverlayToml(std::string_view base, std::string_view overlay) {
  toml::table merged = Parse(base, "base");
  Merge(merged, Parse(overlay, "overlay"));
  std::ostringstream out;
  out << merged << "\n";
  return out.str();
}

}  // namespace tandem::testing
