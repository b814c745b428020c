// The io_uring socket engine. Two rings per connection, one per direction, because the shipper sends on one
// thread while it reads acks on another and a ring's submission queue is single-threaded.
//
// What makes it cheaper than the poll engine, measured with bench/transport_bench:
// - One SQE and one io_uring_enter per Send/Recv however many times the socket fills up or drains: sends and
//   receives carry MSG_WAITALL, so the kernel itself retries a short transfer when the socket is ready again
//   (no trip back to user space, where the poll engine pays a poll(2) and another send/recv each time).
// - The timeout is the wait's own (io_uring_submit_and_wait_timeout, IORING_FEAT_EXT_ARG), not a linked
//   IORING_OP_LINK_TIMEOUT SQE that is armed and torn down on every operation. When it expires the operation is
//   cancelled; a cancelled transfer reports the bytes it moved, so "no progress for timeout_ms" still holds.
// - WaitReadable is a receive into a small read-ahead buffer, not a poll: waiting for a record and reading its
//   header (and the whole of a small record, an ACK) is one io_uring_enter where the poll engine needs poll(2)
//   and two recv(2). A large remainder is still received straight into the caller's buffer.
// - Where the kernel allows: the read-ahead buffer registered (READ_FIXED) and
//   IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN (completions run when the thread waits, no task_work interrupts).
//   Each is optional and falls back when refused (a registration refused for RLIMIT_MEMLOCK is logged).
// Not used: the socket as a registered file. It saved nothing measurable, and a SINGLE_ISSUER ring cannot drop
// the registration from another thread, so a transport destroyed by a thread other than its last user kept the
// connection open (no FIN for the peer) for ~40 ms, until the kernel's deferred ring teardown.
// The socket is blocking: with O_NONBLOCK io_uring would hand EAGAIN back instead of waiting for readiness itself.
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>

#include "common/log.h"
#include "replicator/transport_internal.h"

namespace tandem::replicator {
namespace {

constexpr unsigned kRingEntries = 4;
constexpr uint64_t kOpTag = 1, kCancelTag = 2;
constexpr size_t kMaxIov = 16;

// Optional features, in the order they are tried. Experiments may switch them off with TANDEM_URING_OFF
// (comma-separated names) to measure what each is worth.
struct Features {
  bool defer_taskrun = true;  // SINGLE_ISSUER|DEFER_TASKRUN (6.1+); else COOP_TASKRUN (5.19+); else none
  bool fixed_buffer = true;   // the read-ahead buffer registered in the receive ring
  bool waitall = true;        // MSG_WAITALL: one SQE per transfer
  bool readahead = true;      // WaitReadable and small receives go through the read-ahead buffer
};

const Features& WantedFeatures() {
  static const Features f = [] {
    Features r;
    const char* env = std::getenv("TANDEM_URING_OFF");
    const std::string off = env != nullptr ? env : "";
    auto has = [&](const char* name) { return off.find(name) != std::string::npos; };
    r.defer_taskrun = !has("defer_taskrun");
    r.fixed_buffer = !has("fixed_buffer");
    r.readahead = !has("readahead");
    r.waitall = !has("waitall");
    return r;
  }();
  return f;
}

pid_t ThisThread() {
  thread_local const pid_t tid = pid_t(::syscall(SYS_gettid));
  return tid;
}

class Ring {
 public:
  Ring() = default;
  ~Ring() { Close(); }
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Creates the ring for socket `fd` (not owned). 0 or -errno (ENOMEM: RLIMIT_MEMLOCK on older kernels).
  // `buffer`, when not empty, is registered with the ring for READ_FIXED.
  int Init(int fd, iovec buffer = {}) {
    fd_ = fd;
    buffer_ = buffer;
    return Create();
  }

  // Before each operation: a SINGLE_ISSUER ring belongs to the first thread that submits; another thread gets
  // a new ring (once or twice per connection in practice: the connecting thread, then the sending or acking
  // thread). A ring that keeps changing hands is recreated without SINGLE_ISSUER, which any thread may use.
  int Bind() {
    const pid_t self = ThisThread();
    if (owner_ == self) return 0;
    if (owner_ != 0 && single_issuer_) {
      Close();
      if (int rc = Create(++handovers_ < kMaxHandovers); rc != 0) return rc;
    }
    if (single_issuer_) {
      // liburing 2.3 declares io_uring_enable_rings but does not export it.
      if (::syscall(__NR_io_uring_register, ring_.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr, 0) != 0) {
        return -errno;
      }
    }
    owner_ = self;
    return 0;
  }

  int sqe_fd() const { return fd_; }

  // Runs the operation prepared by `prep` on a fresh SQE, waiting at most timeout_ms (< 0: no limit) before it is
  // cancelled. Returns the operation's result: bytes (also those moved before a cancel), or -errno.
  template <typename Prep>
  int Run(Prep&& prep, int timeout_ms, bool* timed_out) {
    *timed_out = false;
    if (int rc = Bind(); rc != 0) return rc;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return -EBUSY;  // cannot happen: one operation at a time, every CQE reaped
    prep(sqe);
    io_uring_sqe_set_data64(sqe, kOpTag);
    io_uring_cqe* cqe = nullptr;
    int rc;
    if (timeout_ms < 0) {
      do {
        rc = io_uring_submit_and_wait(&ring_, 1);
      } while (rc == -EINTR);
      if (rc < 0 && io_uring_sq_ready(&ring_) > 0) return Unsubmitted(sqe, rc);
      for (;;) {
        rc = io_uring_wait_cqe(&ring_, &cqe);
        if (rc == 0 && IsOp(cqe)) return Reap(cqe);
        if (rc != 0 && rc != -EINTR) return rc;
      }
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    __kernel_timespec ts = ToTimespec(std::chrono::milliseconds(timeout_ms));
    // One io_uring_enter submits and waits. liburing 2.3 returns the submitted count rather than -ETIME when the
    // wait expires, so a return without a CQE is checked against the deadline.
    rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    if (rc < 0 && io_uring_sq_ready(&ring_) > 0) return Unsubmitted(sqe, rc);
    for (;;) {
      if (cqe == nullptr) io_uring_peek_cqe(&ring_, &cqe);
      if (cqe != nullptr && IsOp(cqe)) return Reap(cqe);
      if (cqe != nullptr) {  // a leftover (see IsOp): look again
        cqe = nullptr;
        continue;
      }
      if (rc < 0 && rc != -ETIME && rc != -EINTR) break;
      const auto left = deadline - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) break;
      ts = ToTimespec(left);
      rc = io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
    }
    *timed_out = true;
    return Cancel();
  }

 private:
  static __kernel_timespec ToTimespec(std::chrono::steady_clock::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
    __kernel_timespec ts{};
    ts.tv_sec = ns / 1'000'000'000;
    ts.tv_nsec = ns % 1'000'000'000;
    return ts;
  }

  // Completions other than the current operation's (a cancel that found nothing, a NOP left by Unsubmitted) are
  // consumed here and skipped.
  bool IsOp(io_uring_cqe* cqe) {
    if (io_uring_cqe_get_data64(cqe) == kOpTag) return true;
    io_uring_cqe_seen(&ring_, cqe);
    return false;
  }

  // The submit failed before the kernel took the SQE: it stays queued, so it becomes a harmless NOP that the next
  // submit carries along instead of a second copy of this operation.
  int Unsubmitted(io_uring_sqe* sqe, int rc) {
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kCancelTag);
    return rc;
  }

  int Reap(io_uring_cqe* cqe) {
    const int result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    return result;
  }

  int Create(bool single_issuer = true) {
    const Features& want = WantedFeatures();
    // Newest first; EINVAL means this kernel does not know a flag, anything else is a real failure.
    const unsigned kFlagSets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    io_uring_params params{};
    for (const unsigned flags : kFlagSets) {
      if ((flags & IORING_SETUP_SINGLE_ISSUER) && !(single_issuer && want.defer_taskrun)) continue;
      params = {};
      params.flags = flags;
      rc = io_uring_queue_init_params(kRingEntries, &ring_, &params);
      if (rc != -EINVAL) break;
    }
    if (rc != 0) return rc;
    ready_ = true;
    owner_ = 0;
    flags_ = params.flags;
    single_issuer_ = (flags_ & IORING_SETUP_SINGLE_ISSUER) != 0;
    fixed_buffer_ = false;
    if (buffer_.iov_len > 0 && want.fixed_buffer) {
      const int brc = io_uring_register_buffers(&ring_, &buffer_, 1);
      fixed_buffer_ = brc == 0;
      if (brc == -ENOMEM) {
        static std::once_flag logged;
        std::call_once(logged, [] {
          TLOG_INFO("transport", "io_uring: RLIMIT_MEMLOCK refuses a registered receive buffer; using a plain one");
        });
      }
    }
    return 0;
  }

  void Close() {
    if (ready_) io_uring_queue_exit(&ring_);
    ready_ = false;
  }

  // The wait expired with the operation still in flight: cancel it and reap both completions. The operation's
  // completion carries what it moved before the cancel (or -ECANCELED); it must be reaped before returning
  // because it points into the caller's buffer.
  int Cancel() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return -EBUSY;
    io_uring_prep_cancel64(sqe, kOpTag, 0);
    io_uring_sqe_set_data64(sqe, kCancelTag);
    int rc;
    do {
      rc = io_uring_submit(&ring_);
    } while (rc == -EINTR);
    if (rc < 0) return rc;
    int result = -ECANCELED;
    for (bool op_done = false, cancel_done = false; !op_done || !cancel_done;) {
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc == -EINTR) continue;
      if (rc < 0) return rc;
      if (io_uring_cqe_get_data64(cqe) == kOpTag) {
        result = cqe->res;
        op_done = true;
      } else {
        // The operation completed between the wait's expiry and the cancel: it has a CQE of its own.
        cancel_done = true;
      }
      io_uring_cqe_seen(&ring_, cqe);
    }
    return result;
  }

 public:
  unsigned flags() const { return flags_; }
  bool fixed_buffer() const { return fixed_buffer_; }

 private:
  io_uring ring_{};
  int fd_ = -1;
  bool ready_ = false;
  bool single_issuer_ = false;
  bool fixed_buffer_ = false;
  iovec buffer_{};
  unsigned flags_ = 0;
  pid_t owner_ = 0;
  int handovers_ = 0;
  static constexpr int kMaxHandovers = 4;
};

// Read-ahead: big enough for an ACK or a run of small records, small enough that copying it out again costs
// little beside the syscall it saves.
constexpr size_t kReadAhead = 16 * 1024;
// Receives at least this large go straight into the caller's buffer (after what is already read ahead).
constexpr size_t kDirectReceive = 4 * 1024;

class UringTransport final : public Transport {
 public:
  UringTransport() {
    if (WantedFeatures().readahead) ahead_.reset(new uint8_t[kReadAhead]);
  }

  // Sets up the rings before taking the socket, so a failure leaves the caller its socket for another engine.
  int Init(int fd) {
    int rc = send_ring_.Init(fd);
    return rc != 0 ? rc : recv_ring_.Init(fd, ahead_ ? iovec{ahead_.get(), kReadAhead} : iovec{});
  }
  void Adopt(UniqueFd fd) {
    fd_ = std::move(fd);
    const unsigned f = send_ring_.flags();
    const Features& want = WantedFeatures();
    detail_ = std::string("io_uring(") +
              ((f & IORING_SETUP_DEFER_TASKRUN) ? "defer_taskrun"
               : (f & IORING_SETUP_COOP_TASKRUN) ? "coop_taskrun"
                                                 : "plain_taskrun") +
              (want.waitall ? ",waitall" : "") +
              (ahead_ ? ",readahead" : "") + (recv_ring_.fixed_buffer() ? ",fixed_buffer" : "") + ")";
  }

  Status Send(std::span<const iovec> iov_in, int timeout_ms) override {
    std::lock_guard<std::mutex> lock(send_mu_);
    iovec iov[kMaxIov];
    const size_t count = std::min(iov_in.size(), kMaxIov);
    std::copy_n(iov_in.begin(), count, iov);
    const int flags = MSG_NOSIGNAL | (WantedFeatures().waitall ? MSG_WAITALL : 0);
    size_t first = 0;
    AdvanceIov(iov, count, &first, 0);  // empty leading entries (an empty coalescing buffer): a plain send
    while (first < count) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      msghdr msg{};
      msg.msg_iov = iov + first;
      msg.msg_iovlen = count - first;
      bool timed_out = false;
      int n = send_ring_.Run(
          [&](io_uring_sqe* sqe) {
            if (msg.msg_iovlen == 1) {
              io_uring_prep_send(sqe, send_ring_.sqe_fd(), iov[first].iov_base, iov[first].iov_len, flags);
            } else {
              io_uring_prep_sendmsg(sqe, send_ring_.sqe_fd(), &msg, unsigned(flags));
            }
          },
          timeout_ms, &timed_out);
      if (n > 0) {
        AdvanceIov(iov, count, &first, size_t(n));  // a short send (or one cut by the timeout) goes round again
        continue;
      }
      if (shut_.load()) return Status::Aborted("transport shut down");
      if (timed_out || n == -ECANCELED) return Status::Timeout("send: no progress for " + std::to_string(timeout_ms) + " ms");
      if (n == 0 || n == -EINTR || n == -EAGAIN) continue;
      if (n == -EPIPE || n == -ECONNRESET || n == -ENOTCONN) return Status::Closed("peer closed the connection");
      return Status::FromErrno("send (io_uring)", -n);
    }
    if (count < iov_in.size()) return Send(iov_in.subspan(count), timeout_ms);
    return Status::Ok();
  }

  Status Recv(void* buf, size_t len, int timeout_ms) override {
    std::lock_guard<std::mutex> lock(recv_mu_);
    auto* p = static_cast<uint8_t*>(buf);
    size_t got = TakeAhead(p, len);
    while (got < len) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      if (eof_) return got == 0 ? Status::Closed("end of stream") : Status::Closed("stream truncated mid-read");
      int n;
      if (ahead_ && len - got < kDirectReceive) {
        // Small: read whatever is there (up to the read-ahead's size) and hand out the part asked for.
        TANDEM_RETURN_IF_ERROR(FillAhead(timeout_ms, "receive"));
        got += TakeAhead(p + got, len - got);
        continue;
      }
      bool timed_out = false;
      const int flags = WantedFeatures().waitall ? MSG_WAITALL : 0;
      n = recv_ring_.Run(
          [&](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, recv_ring_.sqe_fd(), p + got, len - got, flags); },
          timeout_ms, &timed_out);
      if (n > 0) {
        got += size_t(n);
        continue;
      }
      TANDEM_RETURN_IF_ERROR(Failed(n, timed_out, timeout_ms, "receive"));
    }
    return Status::Ok();
  }

  Status WaitReadable(int timeout_ms) override {
    std::lock_guard<std::mutex> lock(recv_mu_);
    if (shut_.load()) return Status::Aborted("transport shut down");
    if (ahead_end_ > ahead_begin_ || eof_) return Status::Ok();
    if (ahead_) return FillAhead(timeout_ms, "wait for data");
    bool timed_out = false;
    int n = recv_ring_.Run([&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, recv_ring_.sqe_fd(), POLLIN); },
                           timeout_ms, &timed_out);
    if (n >= 0) return Status::Ok();
    if (shut_.load()) return Status::Aborted("transport shut down");
    if (timed_out || n == -ECANCELED) {
      return Status::Timeout("wait for data: no progress for " + std::to_string(timeout_ms) + " ms");
    }
    return Status::FromErrno("poll (io_uring)", -n);
  }

  Status WaitSent(int timeout_ms) override { return WaitSendQueueEmpty(fd_.get(), timeout_ms); }
  uint64_t QueuedBytes() const override { return SendQueueBytes(fd_.get()); }

  void Shutdown() override {
    // Completes a pending recv with 0 and a pending send with EPIPE; the fd stays open until destruction.
    if (!shut_.exchange(true)) ::shutdown(fd_.get(), SHUT_RDWR);
  }

  const char* engine_name() const override { return "io_uring"; }
  std::string engine_detail() const override { return detail_; }

 private:
  size_t TakeAhead(uint8_t* out, size_t len) {
    const size_t n = std::min(len, ahead_end_ - ahead_begin_);
    if (n > 0) {
      memcpy(out, ahead_.get() + ahead_begin_, n);
      ahead_begin_ += n;
    }
    return n;
  }

  // Reads what the socket has (at least one byte, or the end of the stream) into the empty read-ahead buffer.
  Status FillAhead(int timeout_ms, const char* what) {
    ahead_begin_ = ahead_end_ = 0;
    for (;;) {
      if (shut_.load()) return Status::Aborted("transport shut down");
      bool timed_out = false;
      const int n = recv_ring_.Run(
          [&](io_uring_sqe* sqe) {
            if (recv_ring_.fixed_buffer()) {
              io_uring_prep_read_fixed(sqe, recv_ring_.sqe_fd(), ahead_.get(), kReadAhead, 0, 0);
            } else {
              io_uring_prep_recv(sqe, recv_ring_.sqe_fd(), ahead_.get(), kReadAhead, 0);
            }
          },
          timeout_ms, &timed_out);
      if (n > 0) {
        ahead_end_ = size_t(n);
        return Status::Ok();
      }
      if (n == 0) {
        if (shut_.load()) return Status::Aborted("transport shut down");
        eof_ = true;  // reported by the Recv that finds nothing left
        return Status::Ok();
      }
      if (n == -EINTR || n == -EAGAIN) continue;
      return Failed(n, timed_out, timeout_ms, what);
    }
  }

  // A receive that moved nothing: why, as a Status (Ok: try again).
  Status Failed(int n, bool timed_out, int timeout_ms, const char* what) {
    if (shut_.load()) return Status::Aborted("transport shut down");
    if (n == 0) {
      eof_ = true;
      return Status::Ok();  // the loop reports the end of the stream
    }
    if (timed_out || n == -ECANCELED) {
      return Status::Timeout(std::string(what) + ": no progress for " + std::to_string(timeout_ms) + " ms");
    }
    if (n == -EINTR || n == -EAGAIN) return Status::Ok();
    if (n == -ECONNRESET) return Status::Closed("connection reset by peer");
    return Status::FromErrno(std::string(what) + " (io_uring)", -n);
  }

  UniqueFd fd_;
  Ring send_ring_, recv_ring_;
  std::mutex send_mu_, recv_mu_;  // a ring is single-threaded; callers use one thread per direction anyway
  std::atomic<bool> shut_{false};
  std::unique_ptr<uint8_t[]> ahead_;  // guarded by recv_mu_, as are the three below
  size_t ahead_begin_ = 0, ahead_end_ = 0;
  bool eof_ = false;
  std::string detail_;
};

std::once_flag g_fallback_logged;

}  // namespace

Result<std::unique_ptr<Transport>> MakeUringTransportOrFallback(UniqueFd fd, bool required) {
  auto transport = std::make_unique<UringTransport>();
  const int rc = transport->Init(fd.get());
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
