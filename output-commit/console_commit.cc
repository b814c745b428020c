#include "output-commit/console_commit.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

#include "common/log.h"
#include "output-commit/unix_socket.h"

namespace tandem::output_commit {

Result<std::unique_ptr<ConsoleOutputCommit>> ConsoleOutputCommit::Create(ConsoleOptions options, Clock* clock) {
  TANDEM_RETURN_IF_ERROR(HoldQueue::Validate(options.limits));
  if (options.log_path.empty()) return Status::InvalidArgument("console log path is empty");
  UniqueFd log(::open(options.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!log.valid()) return Status::FromErrno("open console log " + options.log_path, errno);
  TANDEM_ASSIGN_OR_RETURN(UniqueFd listener, BindUnixSocket(options.socket_path, SOCK_STREAM));
  if (::listen(listener.get(), 1) != 0) return Status::FromErrno("listen " + options.socket_path, errno);
  return std::unique_ptr<ConsoleOutputCommit>(
      new ConsoleOutputCommit(std::move(options), std::move(listener), std::move(log), clock));
}

ConsoleOutputCommit::ConsoleOutputCommit(ConsoleOptions options, UniqueFd listener, UniqueFd log, Clock* clock)
    : HeldOutput(options.limits, clock, "console"),
      options_(std::move(options)),
      listener_(std::move(listener)),
      log_(std::move(log)) {}

ConsoleOutputCommit::~ConsoleOutputCommit() {
  Stop();
  ::unlink(options_.socket_path.c_str());
}

void ConsoleOutputCommit::AcceptLocked() {
  UniqueFd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!conn.valid()) return;  // EAGAIN: the peer gave up already
  // One QEMU at a time: a second connection replaces a first that QEMU closed (a restarted QEMU); what the
  // first sent is in the queue already.
  conn_ = std::move(conn);
  TLOG_INFO("console", "QEMU's serial console connected");
}

Status ConsoleOutputCommit::DrainSourceLocked() {
  while (conn_.valid()) {
    const size_t room = std::min(queue_.MaxFit(), scratch_.size());
    if (room == 0) {
      int pending = 0;
      if (::ioctl(conn_.get(), FIONREAD, &pending) == 0 && pending > 0) NoteFullLocked(1);
      return Status::Ok();
    }
    const ssize_t n = ::recv(conn_.get(), scratch_.data(), room, MSG_DONTWAIT);
    if (n > 0) {
      queue_.Push({scratch_.data(), size_t(n)});
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return Status::Ok();
    // EOF or a broken connection: QEMU exited (or closed the chardev). Wait for the next one.
    TLOG_INFO("console", "QEMU's serial console disconnected");
    conn_.reset();
  }
  return Status::Ok();
}

HeldOutput::WriteResult ConsoleOutputCommit::WriteSinkLocked(std::span<const uint8_t> bytes) {
  // A full disk must not stall the guest's console (its UART would wait for us): the bytes are counted and
  // logged as lost instead.
  return WriteFull(log_.get(), bytes.data(), bytes.size()).ok() ? WriteResult::kDone : WriteResult::kFailed;
}

void ConsoleOutputCommit::AddPollFdsLocked(std::vector<pollfd>* fds) {
  fds->push_back({listener_.get(), short(conn_.valid() ? 0 : POLLIN), 0});
  // Not polled while backpressured: a hang-up would wake the loop for nothing until there is room to read.
  fds->push_back({conn_.valid() && !backpressured_locked() ? conn_.get() : -1, POLLIN, 0});
}

Status ConsoleOutputCommit::HandlePollLocked(const std::vector<pollfd>& fds) {
  if (fds[1].revents & POLLIN) AcceptLocked();
  if (fds[2].fd >= 0 && fds[2].fd == conn_.get() && (fds[2].revents & (POLLIN | POLLHUP | POLLERR)))
    return DrainSourceLocked();
  return Status::Ok();
}

}  // namespace tandem::output_commit
