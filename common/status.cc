#include "common/status.h"

#include <cstring>

namespace tandem {

namespace {
const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kInvalidArgument: return "Invalid argument";
    case Status::Code::kCorruption: return "Corruption";
    case Status::Code::kUnsupported: return "Unsupported";
    case Status::Code::kIoError: return "IO error";
    case Status::Code::kClosed: return "Closed";
    case Status::Code::kTimeout: return "Timeout";
    case Status::Code::kAborted: return "Aborted";
    case Status::Code::kNotFound: return "Not found";
  }
  return "Unknown";
}
}  // namespace

Status Status::FromErrno(std::string_view what, int err) {
  std::string msg(what);
  msg += ": ";
  msg += std::strerror(err);
  return Status(Code::kIoError, msg);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  return std::string(CodeName(code_)) + ": " + message_;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  return Status(code_, std::string(context) + ": " + message_);
}

}  // namespace tandem
