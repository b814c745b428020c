// The io_uring socket engine. Two rings per connection, one per direction, because the shipper sends on one
// thread while it reads acks on another and a ring's submission queue is single-threaded. Every operation is
// linked to a timeout (IORING_OP_LINK_TIMEOUT) so a stalled peer costs io_timeout_ms, not forever. The socket is
// blocking: with O_NONBLOCK io_uring would hand EAGAIN back instead of waiting for readiness itself.
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "common/log.h"
#include "replicator/transport_internal.h"

namespace tandem::replicator {
namespace {

constexpr unsigned kRingEntries = 4;
constexpr uint64_t kOpTag = 1, kTimeoutTag = 2;
constexpr size_t kMaxIov = 16;

class Ring {
 public:
  Ring() = default;
  ~Ring() {
    if (ready_) io_uring_queue_exit(&ring_);
  }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  int Init() {
    int rc = io_uring_queue_init(kRingEntries, &ring_, 0);
    ready_ = rc == 0;
    return rc;
  }

  // Runs the operation prepared by `prep` on a fresh SQE, bounded by timeout_ms (< 0: none). Returns the
  // operation's result (bytes, or -errno; -ECANCELED when the timeout fired first).
  template <typename Prep>
  int Run(Prep&& prep, int timeout_ms, bool* timed_out) {
    *timed_out = false;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return -EBUSY;  // cannot happen: one operation at a time, every CQE reaped
    prep(sqe);
    io_uring_sqe_set_data64(sqe, kOpTag);
    __kernel_timespec ts{};
    int expected = 1;
    if (timeout_ms >= 0) {
      sqe->flags |= IOSQE_IO_LINK;
      ts.tv_sec = timeout_ms / 1000;
      ts.tv_nsec = (timeout_ms % 1000) * 1'000'000L;
      io_uring_sqe* t = io_uring_get_sqe(&ring_);
      io_uring_prep_link_timeout(t, &ts, 0);
      io_uring_sqe_set_data64(t, kTimeoutTag);
      expected = 2;
    }
    int rc;
    do {
      rc = io_uring_submit(&ring_);
    } while (rc == -EINTR);
    if (rc < 0) return rc;
    int result = -EIO;
    for (int reaped = 0; reaped < expected;) {
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) continue;
      if (rc < 0) return rc;
      if (io_uring_cqe_get_data64(cqe) == kOpTag) {
        result = cqe->res;
      } else if (cqe->res == -ETIME) {
        *timed_out = true;
      }
      io_uring_cqe_seen(&ring_, cqe);
      ++reaped;
    }
    return result;
  }

 private:
  io_uring ring_{};
  bool ready_ = false;
};

class UringTransport final : public Transport {
 public:
  // Sets up the rings before taking the socket, so a failure leaves the caller its socket for another engine.
  int Init() {
    int rc = send_ring_.Init();
    return rc != 0 ? rc : recv_ring_.Init();
  }
  void Adopt(UniqueFd fd) { fd_ = std::move(fd); }

  Status Send(std::span<const iovec> iov_in, int timeout_ms) override {
    std::lock_guard<std::mutex> lock(send_mu_);
    iovec iov[kMaxIov];
    const size_t count = std::min(iov_in.size(), kMaxIov);
    std::copy_n(iov_in.begin(), count, iov);
    size_t first = 0;
    while (first < count) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      msghdr msg{};
      msg.msg_iov = iov + first;
      msg.msg_iovlen = count - first;
      bool timed_out = false;
      int n = send_ring_.Run([&](io_uring_sqe* sqe) { io_uring_prep_sendmsg(sqe, fd_.get(), &msg, MSG_NOSIGNAL); },
                             timeout_ms, &timed_out);
      if (n < 0) {
        if (timed_out || n == -ECANCELED) {
          if (shut_.load()) return Status::Aborted("transport shut down");
          return Status::Timeout("send: no progress for " + std::to_string(timeout_ms) + " ms");
        }
        if (n == -EINTR || n == -EAGAIN) continue;
        if (n == -EPIPE || n == -ECONNRESET || n == -ENOTCONN) return Status::Closed("peer closed the connection");
        return Status::FromErrno("send (io_uring)", -n);
      }
      AdvanceIov(iov, count, &first, size_t(n));  // a short send just goes round again
    }
    if (count < iov_in.size()) return Send(iov_in.subspan(count), timeout_ms);
    return Status::Ok();
  }

  Status Recv(void* buf, size_t len, int timeout_ms) override {
    std::lock_guard<std::mutex> lock(recv_mu_);
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = 0;
    while (got < len) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      bool timed_out = false;
      int n = recv_ring_.Run([&](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd_.get(), p + got, len - got, 0); },
                             timeout_ms, &timed_out);
      if (n > 0) {
        got += size_t(n);
        continue;
      }
      if (n == 0) {
        if (shut_.load()) return Status::Aborted("transport shut down");
        return got == 0 ? Status::Closed("end of stream") : Status::Closed("stream truncated mid-read");
      }
      if (timed_out || n == -ECANCELED) {
        return Status::Timeout("receive: no progress for " + std::to_string(timeout_ms) + " ms");
      }
      if (n == -EINTR || n == -EAGAIN) continue;
      if (n == -ECONNRESET) return Status::Closed("connection reset by peer");
      return Status::FromErrno("recv (io_uring)", -n);
    }
    return Status::Ok();
  }

  Status WaitReadable(int timeout_ms) override {
    std::lock_guard<std::mutex> lock(recv_mu_);
    if (shut_.load()) return Status::Aborted("transport shut down");
    bool timed_out = false;
    int n = recv_ring_.Run([&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd_.get(), POLLIN); }, timeout_ms,
                           &timed_out);
    if (n >= 0) return Status::Ok();
    if (timed_out || n == -ECANCELED) {
      return Status::Timeout("wait for data: no progress for " + std::to_string(timeout_ms) + " ms");
    }
    return Status::FromErrno("poll (io_uring)", -n);
  }

  Status WaitSent(int timeout_ms) override { return WaitSendQueueEmpty(fd_.get(), timeout_ms); }

  void Shutdown() override {
    // Completes a pending recv with 0 and a pending send with EPIPE; the fd stays open until destruction.
    if (!shut_.exchange(true)) ::shutdown(fd_.get(), SHUT_RDWR);
  }

  const char* engine_name() const override { return "io_uring"; }

 private:
  UniqueFd fd_;
  Ring send_ring_, recv_ring_;
  std::mutex send_mu_, recv_mu_;  // a ring is single-threaded; callers use one thread per direction anyway
  std::atomic<bool> shut_{false};
};

std::once_flag g_fallback_logged;

}  // namespace

Result<std::unique_ptr<Transport>> MakeUringTransportOrFallback(UniqueFd fd, bool required) {
  auto transport = std::make_unique<UringTransport>();
  const int rc = transport->Init();
  if (rc == 0) {
    int flags = fcntl(fd.get(), F_GETFL);
    if (flags < 0 || fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) return Status::FromErrno("fcntl", errno);
    transport->Adopt(std::move(fd));
    return std::unique_ptr<Transport>(std::move(transport));
  }
  const std::string why = rc == -ENOMEM ? "ENOMEM: RLIMIT_MEMLOCK too low for the rings" : std::string(strerror(-rc));
  if (required) return Status::Unsupported("io_uring engine unavailable: " + why);
  std::call_once(g_fallback_logged, [&] {
    TLOG_WARN("transport", "io_uring unavailable (%s): using the poll engine", why.c_str());
  });
  return MakePollTransport(std::move(fd));
}

}  // namespace tandem::replicator
