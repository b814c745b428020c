#include "common/log.h"

#include <time.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <mutex>

namespace tandem {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<const char*> g_tag{""};
std::mutex g_mu;
const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "DEBUG";
    case LogLevel::kInfo: return "INFO ";
    case LogLevel::kWarn: return "WARN ";
    case LogLevel::kError: return "ERROR";
  }
  return "?";
}
}  // namespace

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
  std::lock_guard<std::mutex> lock(g_mu);
  fprintf(stderr, "%s.%03ldZ %s %s%s%s: %s\n", when, ts.tv_nsec / 1'000'000, LevelName(level), tag,
          *tag ? " " : "", component, body);
  fflush(stderr);
}

}  // namespace tandem
