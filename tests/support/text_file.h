// Reading what the processes under test wrote: whole files (empty when missing) and their last lines.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace tandem::testing {

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The last `lines` lines of `text`.
inline std::string Tail(const std::string& text, size_t lines) {
  size_t start = text.size();
  if (start > 0 && text[start - 1] == '\n') --start;  // the final newline ends the last line
  for (size_t n = 0; n < lines && start > 0; ++n) {
    const size_t nl = text.rfind('\n', start - 1);
    start = nl == std::string::npos ? 0 : nl;
  }
  return text.substr(start < text.size() && text[start] == '\n' ? start + 1 : start);
}

}  // namespace tandem::testing
