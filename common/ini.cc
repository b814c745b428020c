#include "common/ini.h"

namespace tandem {

std::string TrimSpace(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(" \t\r") - b + 1));
}

std::vector<std::string> SplitList(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (size_t start = 0; start <= s.size();) {
    const size_t end = std::min(s.find(sep, start), s.size());
    std::string item = TrimSpace(s.substr(start, end - start));
    if (!item.empty()) out.push_back(std::move(item));
    start = end + 1;
  }
  return out;
}

Result<std::vector<IniEntry>> ParseIni(std::string_view text) {
  std::vector<IniEntry> entries;
  std::string section;
  int line_no = 0;
  for (size_t start = 0; start < text.size();) {
    const size_t end = std::min(text.find('\n', start), text.size());
    const std::string_view raw = text.substr(start, end - start);
    start = end + 1;
    ++line_no;
    const std::string line = TrimSpace(raw.substr(0, raw.find_first_of("#;")));
    if (line.empty()) continue;
    const std::string where = "line " + std::to_string(line_no);
    if (line.front() == '[') {
      if (line.back() != ']') return Status::InvalidArgument(where + ": unterminated section header");
      section = TrimSpace(std::string_view(line).substr(1, line.size() - 2));
      continue;
    }
    const size_t eq = line.find('=');
    if (eq == std::string::npos) return Status::InvalidArgument(where + ": expected key = value");
    entries.push_back({line_no, section + "." + TrimSpace(std::string_view(line).substr(0, eq)),
                       TrimSpace(std::string_view(line).substr(eq + 1))});
  }
  return entries;
}

}  // namespace tandem
