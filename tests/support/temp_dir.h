// A fresh directory under /tmp for one test (short enough for unix socket paths), removed with its files.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace tandem::testing {

class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/tandem-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~ScratchDir() { std::filesystem::remove_all(path_); }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tandem::testing
