// Transports without a socket: a file (streams written and replayed by tests and the bench) and bytes in memory.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "replicator/transport.h"

namespace tandem::replicator {
namespace {

// Regular file: blocking read/write, no timeouts.
class FileTransport final : public Transport {
 public:
  explicit FileTransport(UniqueFd fd) : fd_(std::move(fd)) {}
  Status Send(std::span<const iovec> iov, int) override {
    if (shut_.load()) return Status::Aborted("transport shut down");
    for (const iovec& v : iov) TANDEM_RETURN_IF_ERROR(WriteFull(fd_.get(), v.iov_base, v.iov_len));
    return Status::Ok();
  }
  Status Recv(void* buf, size_t len, int) override {
    if (shut_.load()) return Status::Aborted("transport shut down");
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    while (got < len) {
      ssize_t n = ::read(fd_.get(), p + got, len - got);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Status::FromErrno("read stream file", errno);
      if (n == 0) return got == 0 ? Status::Closed("end of stream") : Status::Closed("stream truncated mid-read");
      got += size_t(n);
    }
    return Status::Ok();
  }
  Status WaitReadable(int) override { return shut_.load() ? Status::Aborted("transport shut down") : Status::Ok(); }
  void Shutdown() override { shut_.store(true); }
  const char* engine_name() const override { return "file"; }

 private:
  UniqueFd fd_;
  std::atomic<bool> shut_{false};
};

class MemoryTransport final : public Transport {
 public:
  explicit MemoryTransport(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  Status Send(std::span<const iovec>, int) override { return Status::InvalidArgument("memory transport is read-only"); }
  Status Recv(void* buf, size_t len, int) override {
    if (shut_.load()) return Status::Aborted("transport shut down");
    size_t n = std::min(len, bytes_.size() - pos_);
    if (n > 0) memcpy(buf, bytes_.data() + pos_, n);
    pos_ += n;
    if (n < len) return n == 0 ? Status::Closed("end of stream") : Status::Closed("stream truncated mid-read");
    return Status::Ok();
  }
  Status WaitReadable(int) override { return shut_.load() ? Status::Aborted("transport shut down") : Status::Ok(); }
  void Shutdown() override { shut_.store(true); }
  const char* engine_name() const override { return "memory"; }

 private:
  std::span<const uint8_t> bytes_;
  size_t pos_ = 0;
  std::atomic<bool> shut_{false};
};

}  // namespace

std::unique_ptr<Transport> MakeFileTransport(UniqueFd file) { return std::make_unique<FileTransport>(std::move(file)); }

std::unique_ptr<Transport> MakeMemoryTransport(std::span<const uint8_t> bytes) {
  return std::make_unique<MemoryTransport>(bytes);
}

}  // namespace tandem::replicator
