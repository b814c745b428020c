// Log lines as journald reads them when stderr is the journal ($JOURNAL_STREAM), plain lines otherwise.
#include "common/log.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace tandem {
namespace {

// Points stderr at a file for one test, with $JOURNAL_STREAM naming that file (or another one).
class LogToFileTest : public ::testing::Test {
 protected:
  void Capture(bool journal) {
    fflush(stderr);
    saved_stderr_ = dup(STDERR_FILENO);
    ASSERT_TRUE(freopen(path_.c_str(), "w", stderr) != nullptr);
    struct stat st;
    ASSERT_EQ(fstat(STDERR_FILENO, &st), 0);
    const std::string stream =
        std::to_string(st.st_dev) + ":" + std::to_string(journal ? st.st_ino : st.st_ino + 1);
    setenv("JOURNAL_STREAM", stream.c_str(), 1);
    EXPECT_EQ(DetectJournalStderr(), journal);
  }
  std::vector<std::string> Release() {
    fflush(stderr);
    dup2(saved_stderr_, STDERR_FILENO);
    close(saved_stderr_);
    unsetenv("JOURNAL_STREAM");
    DetectJournalStderr();
    std::ifstream in(path_);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }

  testing::TempDir dir_;
  const std::string path_ = dir_ / "stderr";
  int saved_stderr_ = -1;
};

TEST_F(LogToFileTest, JournalLinesStartWithTheirSyslogPriority) {
  SetLogLevel(LogLevel::kDebug);
  Capture(/*journal=*/true);
  TLOG_ERROR("t", "e");
  TLOG_WARN("t", "w");
  TLOG_INFO("t", "i");
  TLOG_DEBUG("t", "d");
  const std::vector<std::string> lines = Release();
  SetLogLevel(LogLevel::kInfo);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "<3>ERROR t: e");
  EXPECT_EQ(lines[1], "<4>WARN  t: w");
  EXPECT_EQ(lines[2], "<6>INFO  t: i");
  EXPECT_EQ(lines[3], "<7>DEBUG t: d");
}

TEST_F(LogToFileTest, StderrThatIsNotTheJournalGetsTimestampedLines) {
  Capture(/*journal=*/false);  // JOURNAL_STREAM set, but for another file (stderr was redirected since)
  TLOG_WARN("t", "w");
  const std::vector<std::string> lines = Release();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find('<'), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("Z WARN  t: w"), std::string::npos) << lines[0];
}

}  // namespace
}  // namespace tandem
