// Errors as values at module boundaries (LevelDB's Status, plus a small Result<T> because gcc 12's C++20 has no
// std::expected).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tandem {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // caller or configuration error
    kCorruption,       // bad checksum, bad length, bad magic: the bytes are not what they claim
    kUnsupported,      // unknown protocol version or feature
    kIoError,          // a system call failed
    kClosed,           // the peer went away / end of stream
    kTimeout,
    kAborted,          // stopped on purpose (shutdown, fencing)
    kNotFound,
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string_view msg) { return Status(Code::kInvalidArgument, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status Unsupported(std::string_view msg) { return Status(Code::kUnsupported, msg); }
  static Status IoError(std::string_view msg) { return Status(Code::kIoError, msg); }
  // IoError with strerror(err) appended.
  static Status FromErrno(std::string_view what, int err);
  static Status Closed(std::string_view msg) { return Status(Code::kClosed, msg); }
  static Status Timeout(std::string_view msg) { return Status(Code::kTimeout, msg); }
  static Status Aborted(std::string_view msg) { return Status(Code::kAborted, msg); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsClosed() const { return code_ == Code::kClosed; }
  bool IsTimeout() const { return code_ == Code::kTimeout; }
  bool IsUnsupported() const { return code_ == Code::kUnsupported; }

  // "Corruption: epoch 7: page checksum mismatch"
  std::string ToString() const;
  // Returns a copy whose message is prefixed with `context: `.
  Status WithContext(std::string_view context) const;

 private:
  Status(Code code, std::string_view msg) : code_(code), message_(msg) {}
  Code code_ = Code::kOk;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design, like std::expected
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).ok()); }  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tandem

#define TANDEM_RETURN_IF_ERROR(expr)       \
  do {                                     \
    ::tandem::Status _st = (expr);         \
    if (!_st.ok()) return _st;             \
  } while (0)

#define TANDEM_CONCAT_INNER(a, b) a##b
#define TANDEM_CONCAT(a, b) TANDEM_CONCAT_INNER(a, b)
#define TANDEM_ASSIGN_OR_RETURN(lhs, expr) \
  TANDEM_ASSIGN_OR_RETURN_IMPL(TANDEM_CONCAT(_res_, __LINE__), lhs, expr)
#define TANDEM_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
