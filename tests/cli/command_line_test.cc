// The tandem binary's command line: help from CLI11, and the exit codes scripts and systemd rely on
// (0 done, 1 the command failed, 2 a bad command line).
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tests/support/temp_dir.h"

namespace tandem {
namespace {

struct Outcome {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

Outcome Tandem(const std::string& args) {
  Outcome run;
  FILE* pipe = popen((std::string(TANDEM_BINARY) + " " + args + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  for (size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) run.output.append(buffer, n);
  const int status = pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

TEST(CommandLineTest, HelpListsEveryCommandAndSucceeds) {
  Outcome help = Tandem("--help");
  EXPECT_EQ(help.exit_code, 0) << help.output;
  for (const char* command : {"primary", "standby", "witness", "qemu-args", "status"}) {
    EXPECT_NE(help.output.find(command), std::string::npos) << command << "\n" << help.output;
  }
  Outcome qemu_args = Tandem("qemu-args --help");
  EXPECT_EQ(qemu_args.exit_code, 0) << qemu_args.output;
  EXPECT_NE(qemu_args.output.find("--config"), std::string::npos) << qemu_args.output;
  EXPECT_NE(qemu_args.output.find("--role"), std::string::npos) << qemu_args.output;
}

TEST(CommandLineTest, BadCommandLinesExitWithTwo) {
  for (const char* args :
       {"", "fly --config x", "primary", "status --config x --bogus", "qemu-args --config x --role witness"}) {
    Outcome run = Tandem(args);
    EXPECT_EQ(run.exit_code, 2) << "tandem " << args << "\n" << run.output;
    EXPECT_FALSE(run.output.empty()) << "tandem " << args << " says why";
  }
}

TEST(CommandLineTest, RefusedConfigurationExitsWithOneAndSaysWhere) {
  testing::TempDir dir;
  std::ofstream(dir / "bad.toml") << "[vm]\nmemory_mb = 1\n";
  Outcome run = Tandem("status --config " + (dir / "bad.toml"));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_NE(run.output.find(dir.file("bad.toml") + ":2:13: vm.memory_mb"), std::string::npos) << run.output;
  EXPECT_EQ(Tandem("status --config " + (dir / "missing.toml")).exit_code, 1);
}

}  // namespace
}  // namespace tandem
