#include "common/log.h"

#include <sys/stat.h>
#include <unistd.h>
#include <time.h>

#include <atomic>
#include <cstdarg>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace tandem {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<const char*> g_tag{""};
std::mutex g_mu;
std::atomic<int> g_journal{-1};  // -1: not looked yet
const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO ";
    case LogLevel::kWarn: return "WARN ";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}
// sd-daemon.h's SD_ERR, SD_WARNING, SD_INFO, SD_DEBUG (the journal reads them off the line's start).
const char* JournalPriority(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "<7>";
    case LogLevel::kInfo: return "<6>";
    case LogLevel::kWarn: return "<4>";
    case LogLevel::kError: return "<3>";
  }
  return "<6>";
}
}  // namespace

bool DetectJournalStderr() {
  // systemd sets JOURNAL_STREAM=<device>:<inode> of the stream it connected stdout/stderr to; a stderr that was
  // redirected since (2>file in a unit's shell) no longer matches and gets plain lines.
  bool journal = false;
  struct stat st;
  if (const char* stream = getenv("JOURNAL_STREAM"); stream != nullptr && fstat(STDERR_FILENO, &st) == 0) {
    uintmax_t dev = 0, ino = 0;
    journal = sscanf(stream, "%ju:%ju", &dev, &ino) == 2 && dev == uintmax_t(st.st_dev) && ino == uintmax_t(st.st_ino);
  }
  g_journal = journal ? 1 : 0;
  return journal;
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
void SetLogTag(const char* tag) { g_tag = tag; }

void Log(LogLevel level, const char* component, const char* fmt, ...) {
  if (static_cast<int>(level) < g_level.load()) return;
  char body[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(body, sizeof(body), fmt, ap);
  va_end(ap);
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  char when[32];
  strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &utc);
  const char* tag = g_tag.load();
  if (g_journal.load() < 0) DetectJournalStderr();
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_journal.load() == 1) {
    fprintf(stderr, "%s%s %s%s%s: %s\n", JournalPriority(level), LevelName(level), tag, *tag ? " " : "", component,
            body);
  } else {
    fprintf(stderr, "%s.%03ldZ %s %s%s%s: %s\n", when, ts.tv_nsec / 1'000'000, LevelName(level), tag,
            *tag ? " " : "", component, body);
  }
  fflush(stderr);
}

}  // namespace tandem
