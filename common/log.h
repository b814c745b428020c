// One-line, thread-safe logs to stderr: "2026-11-25T05:40:01.123Z INFO  primary: epoch 12 pages=310 pause_ms=2.1".
// When stderr is systemd's journal ($JOURNAL_STREAM names stderr's device:inode), a line starts with its syslog
// priority instead of the time, which the journal records itself: "<4>WARN  primary output: ...".
#pragma once

namespace tandem {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
// Prefix every line with a tag such as "primary" or "standby" (the role of this process).
void SetLogTag(const char* tag);
// Looks again whether stderr is the journal (done once before the first line; tests that redirect stderr call
// it). True when lines get the priority prefix.
bool DetectJournalStderr();
void Log(LogLevel level, const char* component, const char* fmt, ...) __attribute__((format(printf, 3, 4)));

}  // namespace tandem

#define TLOG_DEBUG(component, ...) ::tandem::Log(::tandem::LogLevel::kDebug, component, __VA_ARGS__)
#define TLOG_INFO(component, ...) ::tandem::Log(::tandem::LogLevel::kInfo, component, __VA_ARGS__)
#define TLOG_WARN(component, ...) ::tandem::Log(::tandem::LogLevel::kWarn, component, __VA_ARGS__)
#define TLOG_ERROR(component, ...) ::tandem::Log(::tandem::LogLevel::kError, component, __VA_ARGS__)
