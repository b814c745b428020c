#include "output-commit/nic_commit.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string_view>

#include "common/log.h"
#include "output-commit/unix_socket.h"

namespace tandem::output_commit {
namespace {

constexpr int kInboundBatch = 64;  // frames passed in per round, so one flood cannot starve the hold path

}  // namespace

Result<UniqueFd> OpenTap(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return Status::InvalidArgument("TAP interface name must be 1.." + std::to_string(IFNAMSIZ - 1) + " bytes");
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open /dev/net/tun", errno);
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::memcpy(ifr.ifr_name, name.c_str(), name.size());
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) return Status::FromErrno("TUNSETIFF " + name, errno);
  return fd;
}

Status BringUpTap(const std::string& tap, const std::string& bridge) {
  if (tap.empty() || tap.size() >= IFNAMSIZ || bridge.size() >= IFNAMSIZ)
    return Status::InvalidArgument("interface names must be 1.." + std::to_string(IFNAMSIZ - 1) + " bytes");
  UniqueFd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!ctl.valid()) return Status::FromErrno("socket", errno);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, tap.c_str(), tap.size());
  if (::ioctl(ctl.get(), SIOCGIFFLAGS, &ifr) != 0) return Status::FromErrno("SIOCGIFFLAGS " + tap, errno);
  ifr.ifr_flags = short(ifr.ifr_flags | IFF_UP);
  if (::ioctl(ctl.get(), SIOCSIFFLAGS, &ifr) != 0) return Status::FromErrno("SIOCSIFFLAGS " + tap, errno);
  if (bridge.empty()) return Status::Ok();
  const unsigned index = ::if_nametoindex(tap.c_str());
  if (index == 0) return Status::FromErrno("if_nametoindex " + tap, errno);
  ifr = ifreq{};
  std::memcpy(ifr.ifr_name, bridge.c_str(), bridge.size());
  ifr.ifr_ifindex = int(index);
  if (::ioctl(ctl.get(), SIOCBRADDIF, &ifr) != 0 && errno != EBUSY) {  // EBUSY: already a port of it
    return Status::FromErrno("add " + tap + " to bridge " + bridge, errno);
  }
  return Status::Ok();
}

Result<std::unique_ptr<NicOutputCommit>> NicOutputCommit::Create(NicOptions options, Clock* clock) {
  TANDEM_RETURN_IF_ERROR(HoldQueue::Validate(options.limits));
  sockaddr_un qemu_addr;
  TANDEM_RETURN_IF_ERROR(MakeUnixAddress(options.qemu_socket_path, &qemu_addr).WithContext("QEMU NIC socket"));
  if (!options.outside.valid()) return Status::InvalidArgument("NIC output commit: no outside interface");
  TANDEM_RETURN_IF_ERROR(SetNonBlocking(options.outside.get()));
  TANDEM_ASSIGN_OR_RETURN(UniqueFd guest, BindUnixSocket(options.socket_path, SOCK_DGRAM));
  return std::unique_ptr<NicOutputCommit>(new NicOutputCommit(std::move(options), std::move(guest), clock));
}

NicOutputCommit::NicOutputCommit(NicOptions options, UniqueFd guest, Clock* clock)
    : HeldOutput(options.limits, clock, "nic"),
      options_(std::move(options)),
      guest_(std::move(guest)),
      inbound_(options_.limits.max_record_bytes) {}

NicOutputCommit::~NicOutputCommit() {
  Stop();  // before the fds the loop polls are closed
  ::unlink(options_.socket_path.c_str());
}

Status NicOutputCommit::DrainSourceLocked() {
  for (;;) {
    // MSG_TRUNC with MSG_PEEK: the datagram's real length, so a frame that does not fit stays in the socket
    // (and QEMU, once the socket is full too, stops taking frames from the guest).
    const ssize_t len = ::recv(guest_.get(), nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (len < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Status::Ok();
      return Status::FromErrno("recv from the guest NIC socket", errno);
    }
    const bool oversize = size_t(len) > scratch_.size();
    if (!oversize && size_t(len) > queue_.MaxFit()) {
      NoteFullLocked(size_t(len));
      return Status::Ok();
    }
    sockaddr_un from{};
    socklen_t from_len = sizeof(from);
    const ssize_t n = ::recvfrom(guest_.get(), scratch_.data(), scratch_.size(), MSG_DONTWAIT,
                                 reinterpret_cast<sockaddr*>(&from), &from_len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("recv from the guest NIC socket", errno);
    }
    if (oversize) {
      if (counters_.oversize_dropped++ < 10) TLOG_WARN("nic", "dropped a %zd-byte datagram from QEMU", len);
      continue;
    }
    const size_t path_len = from_len > offsetof(sockaddr_un, sun_path) ? from_len - offsetof(sockaddr_un, sun_path)
                                                                        : 0;
    const std::string_view sender(from.sun_path, ::strnlen(from.sun_path, path_len));
    if (n == 0 || sender != options_.qemu_socket_path) {
      ++counters_.foreign_dropped;
      continue;
    }
    queue_.Push({scratch_.data(), size_t(n)});
  }
}

HeldOutput::WriteResult NicOutputCommit::WriteSinkLocked(std::span<const uint8_t> frame) {
  for (;;) {
    const ssize_t n = ::write(options_.outside.get(), frame.data(), frame.size());
    if (n == ssize_t(frame.size())) return WriteResult::kDone;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return WriteResult::kWouldBlock;
    // EIO from a TAP that is down, ENOBUFS (no memory: POLLOUT would not wait for it), a short write...: the
    // frame is gone, as on a cut cable.
    return WriteResult::kFailed;
  }
}

void NicOutputCommit::PassInboundLocked() {
  sockaddr_un qemu_addr;
  (void)MakeUnixAddress(options_.qemu_socket_path, &qemu_addr);  // checked in Create
  for (int i = 0; i < kInboundBatch; ++i) {
    const ssize_t n = ::read(options_.outside.get(), inbound_.data(), inbound_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // EAGAIN: nothing more now (any other error: try again next round)
    // Not held: input is not output. A frame the guest receives after the checkpoint and the standby never
    // sees is, after a failover, a frame lost on the way; its sender retransmits.
    if (::sendto(guest_.get(), inbound_.data(), size_t(n), MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&qemu_addr),
                 sizeof(qemu_addr)) == n) {
      ++counters_.inbound_frames;
    } else {
      ++counters_.inbound_dropped;  // QEMU's socket is full (VM paused) or QEMU is not there
    }
  }
}

void NicOutputCommit::AddPollFdsLocked(std::vector<pollfd>* fds) {
  fds->push_back({backpressured_locked() ? -1 : guest_.get(), POLLIN, 0});
  fds->push_back({options_.outside.get(), short(POLLIN | (sink_blocked_ ? POLLOUT : 0)), 0});
}

Status NicOutputCommit::HandlePollLocked(const std::vector<pollfd>& fds) {
  if (fds[2].revents & POLLOUT) {
    sink_blocked_ = false;
    ReleaseLocked();
  }
  if (fds[2].revents & POLLIN) PassInboundLocked();
  if (fds[1].revents & POLLIN) return DrainSourceLocked();
  return Status::Ok();
}

}  // namespace tandem::output_commit
