// The INI text tandem's configuration file is written in: "[section]" headers, "key = value" lines, comments
// from '#' or ';' to the end of the line, blank lines. Keys come back as "section.key", with their line number,
// so the reader of one file can say file:line for every value it refuses.
#pragma once

#include <charconv>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tandem {

struct IniEntry {
  int line = 0;
  std::string key;  // "section.key"
  std::string value;
};

// InvalidArgument "line N: ..." for an unterminated section header or a line without '='.
Result<std::vector<IniEntry>> ParseIni(std::string_view text);

std::string TrimSpace(std::string_view s);
// The non-empty, trimmed items of a `sep`-separated list.
std::vector<std::string> SplitList(std::string_view s, char sep);

// A whole decimal integer within [min, max], or InvalidArgument saying why not.
template <typename Int>
Status ParseBoundedInt(std::string_view value, Int min, Int max, Int* out) {
  Int v{};
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
  if (ec != std::errc() || end != value.data() + value.size()) {
    return Status::InvalidArgument("not a number: " + std::string(value));
  }
  if (v < min || v > max) {
    return Status::InvalidArgument(std::string(value) + " is out of range [" + std::to_string(min) + ", " +
                                   std::to_string(max) + "]");
  }
  *out = v;
  return Status::Ok();
}

}  // namespace tandem
