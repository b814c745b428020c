// The readiness engine: a non-blocking socket and poll(2). Also what every socket engine shares (send queue
// bookkeeping, iovec arithmetic).
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "replicator/transport_internal.h"

namespace tandem::replicator {
namespace {

constexpr size_t kMaxIov = 16;

// Non-blocking socket + poll(2): the portable engine.
class PollTransport final : public Transport {
 public:
  explicit PollTransport(UniqueFd fd) : fd_(std::move(fd)) {}

  Status Send(std::span<const iovec> iov_in, int timeout_ms) override {
    iovec iov[kMaxIov];
    size_t count = std::min(iov_in.size(), kMaxIov);
    std::copy_n(iov_in.begin(), count, iov);
    size_t first = 0;
    while (first < count) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      msghdr msg{};
      msg.msg_iov = iov + first;
      msg.msg_iovlen = count - first;
      ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          TANDEM_RETURN_IF_ERROR(PollFor(fd_.get(), POLLOUT, timeout_ms, "send"));
          continue;
        }
        if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN) {
          return Status::Closed("peer closed the connection");
        }
        return Status::FromErrno("send", errno);
      }
      AdvanceIov(iov, count, &first, size_t(n));
    }
    if (count < iov_in.size()) return Send(iov_in.subspan(count), timeout_ms);
    return Status::Ok();
  }

  Status Recv(void* buf, size_t len, int timeout_ms) override {
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    while (got < len) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      ssize_t n = ::recv(fd_.get(), p + got, len - got, MSG_DONTWAIT);
      if (n > 0) {
        got += size_t(n);
        continue;
      }
      if (n == 0) return got == 0 ? Status::Closed("end of stream") : Status::Closed("stream truncated mid-read");
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        TANDEM_RETURN_IF_ERROR(PollFor(fd_.get(), POLLIN, timeout_ms, "receive"));
        continue;
      }
      if (errno == ECONNRESET) return Status::Closed("connection reset by peer");
      return Status::FromErrno("recv", errno);
    }
    return Status::Ok();
  }

  Status WaitReadable(int timeout_ms) override {
    if (shut_.load()) return Status::Aborted("transport shut down");
    return PollFor(fd_.get(), POLLIN, timeout_ms, "wait for data");
  }

  Status WaitSent(int timeout_ms) override { return WaitSendQueueEmpty(fd_.get(), timeout_ms); }
  uint64_t QueuedBytes() const override { return SendQueueBytes(fd_.get()); }

  void Shutdown() override {
    // shutdown(2) wakes a poll blocked in another thread (the fd itself stays open until destruction, so it
    // cannot be reused under that thread's feet).
    if (!shut_.exchange(true)) ::shutdown(fd_.get(), SHUT_RDWR);
  }

  const char* engine_name() const override { return "poll"; }

 private:
  UniqueFd fd_;
  std::atomic<bool> shut_{false};
};

}  // namespace

Status PollFor(int fd, short events, int timeout_ms, const char* what) {
  pollfd p{fd, events, 0};
  for (;;) {
    int n = ::poll(&p, 1, timeout_ms);
    if (n > 0) return Status::Ok();
    if (n == 0) return Status::Timeout(std::string(what) + ": no progress for " + std::to_string(timeout_ms) + " ms");
    if (errno != EINTR) return Status::FromErrno(what, errno);
  }
}

void AdvanceIov(iovec* iov, size_t count, size_t* first, size_t n) {
  while (n > 0 && *first < count) {
    iovec& v = iov[*first];
    if (n >= v.iov_len) {
      n -= v.iov_len;
      v.iov_len = 0;
      ++*first;
    } else {
      v.iov_base = static_cast<uint8_t*>(v.iov_base) + n;
      v.iov_len -= n;
      n = 0;
    }
  }
  while (*first < count && iov[*first].iov_len == 0) ++*first;
}

uint64_t SendQueueBytes(int fd) {
  // TCP: the bytes not sent yet (SIOCOUTQNSD), not SIOCOUTQ, which also counts bytes in flight and so stays
  // non-zero for a delayed ACK's 40 ms after the peer has read everything. Unix sockets know only SIOCOUTQ.
  int queued = 0;
  if (ioctl(fd, SIOCOUTQNSD, &queued) != 0 && ioctl(fd, SIOCOUTQ, &queued) != 0) return 0;
  return queued > 0 ? uint64_t(queued) : 0;
}

Status WaitSendQueueEmpty(int fd, int timeout_ms) {
  // A unix socket's bytes are in the peer's receive queue as soon as send returns (and stay readable when the
  // sender dies); its SIOCOUTQ counts what the peer has not read yet, which is not this question.
  int domain = 0;
  socklen_t len = sizeof(domain);
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain == AF_UNIX) return Status::Ok();
  for (int waited = 0; waited <= timeout_ms; ++waited) {
    int queued = 0;
    if (ioctl(fd, SIOCOUTQ, &queued) != 0) return Status::FromErrno("SIOCOUTQ", errno);
    if (queued == 0) return Status::Ok();
    usleep(1000);
  }
  return Status::Timeout("send queue did not drain");
}

std::unique_ptr<Transport> MakePollTransport(UniqueFd fd) { return std::make_unique<PollTransport>(std::move(fd)); }

}  // namespace tandem::replicator
