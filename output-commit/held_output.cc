#include "output-commit/held_output.h"

#include <sys/eventfd.h>

#include <cerrno>
#include <chrono>

#include "common/log.h"

namespace tandem::output_commit {

HeldOutput::HeldOutput(const HoldLimits& limits, Clock* clock, const char* name)
    : queue_(limits), clock_(clock), name_(name), scratch_(limits.max_record_bytes),
      wake_fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  fds_.reserve(8);
}

HeldOutput::~HeldOutput() { Stop(); }

Status HeldOutput::OnEpochBoundary(uint64_t epoch) {
  std::lock_guard lock(mu_);
  Status drained = DrainSourceLocked();
  // The boundary is closed even if the drain failed: what was read is in the queue and must be tagged.
  TANDEM_RETURN_IF_ERROR(queue_.CloseEpoch(epoch));
  if (pass_through_) ReleaseLocked();
  return drained;
}

void HeldOutput::ReleaseThrough(uint64_t acked) {
  std::lock_guard lock(mu_);
  if (have_ack_ && acked <= acked_) return;
  acked_ = acked;
  have_ack_ = true;
  ReleaseLocked();
}

uint64_t HeldOutput::DropUnreleased() {
  std::lock_guard lock(mu_);
  const uint64_t dropped = queue_.DropAll();
  if (dropped > 0) TLOG_WARN(name_, "dropped %llu unreleased records", (unsigned long long)dropped);
  NoteRoomLocked();
  return dropped;
}

void HeldOutput::SetPassThrough(bool on) {
  std::lock_guard lock(mu_);
  pass_through_ = on;
  if (on) ReleaseLocked();
}

OutputStats HeldOutput::stats() const {
  std::lock_guard lock(mu_);
  OutputStats s = counters_;
  s.hold = queue_.counters();
  s.acked_epoch = acked_;
  s.pass_through = pass_through_;
  s.backpressured = backpressured_;
  s.backpressure_events = backpressure_events_;
  s.backpressure_ns = backpressure_ns_;
  if (backpressured_) s.backpressure_ns += uint64_t(clock_->NowNanos() - backpressure_since_ns_);
  FillStatsLocked(&s);
  return s;
}

void HeldOutput::NoteFullLocked(size_t len) {
  blocked_len_ = len;
  if (backpressured_) return;
  backpressured_ = true;
  backpressure_since_ns_ = clock_->NowNanos();
  ++backpressure_events_;
}

void HeldOutput::NoteRoomLocked() {
  if (!backpressured_ || queue_.MaxFit() < blocked_len_) return;
  backpressured_ = false;
  backpressure_ns_ += uint64_t(clock_->NowNanos() - backpressure_since_ns_);
  Wake();  // the loop polls the source again
}

void HeldOutput::ReleaseLocked() {
  if (!have_ack_ && !pass_through_) return;
  bool released = false;
  while (!sink_blocked_) {
    std::span<const uint8_t> record = queue_.Peek(acked_, pass_through_);
    if (record.empty()) break;
    const WriteResult result = WriteSinkLocked(record);
    if (result == WriteResult::kWouldBlock) {
      sink_blocked_ = true;
      Wake();  // the loop polls the destination for room
      break;
    }
    if (result == WriteResult::kFailed && counters_.sink_errors++ < 10) {
      TLOG_WARN(name_, "a released record of %zu bytes could not be written (counted in sink_errors)",
                record.size());
    }
    queue_.Pop();
    released = true;
  }
  if (released) NoteRoomLocked();
}

void HeldOutput::Wake() {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_.get(), &one, sizeof(one));
}

Status HeldOutput::PollOnce(int timeout_ms) {
  {
    std::lock_guard lock(mu_);
    fds_.clear();
    fds_.push_back({wake_fd_.get(), POLLIN, 0});
    AddPollFdsLocked(&fds_);
  }
  // fds_ is only touched by the loop; the fds in it stay open until the loop's owner is destroyed.
  if (::poll(fds_.data(), fds_.size(), timeout_ms) < 0) {
    if (errno == EINTR) return Status::Ok();
    return Status::FromErrno("poll", errno);
  }
  std::lock_guard lock(mu_);
  if (fds_[0].revents & POLLIN) {
    uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(wake_fd_.get(), &count, sizeof(count));
  }
  Status handled = HandlePollLocked(fds_);
  if (pass_through_) ReleaseLocked();
  return handled;
}

void HeldOutput::Start() {
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    while (!stop_) {
      Status st = PollOnce(200);
      if (!st.ok()) {
        TLOG_WARN(name_, "%s", st.ToString().c_str());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));  // a persistent error must not spin
      }
    }
  });
}

void HeldOutput::Stop() {
  if (!thread_.joinable()) return;
  stop_ = true;
  Wake();
  thread_.join();
}

}  // namespace tandem::output_commit
