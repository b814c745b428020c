#include "tests/support/frame_link.h"

#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>

namespace tandem::testing::net {
namespace {

constexpr size_t kMaxFrame = 65536;

int64_t NowMs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.size() >= sizeof a.sun_path) return Status::InvalidArgument("unix socket path too long: " + path);
  std::memcpy(a.sun_path, path.c_str(), path.size() + 1);
  return a;
}

// One datagram or packet from a socket, waiting up to timeout_ms.
Result<std::vector<uint8_t>> ReceiveFrom(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  int n;
  do n = ::poll(&p, 1, timeout_ms);
  while (n < 0 && errno == EINTR);
  if (n < 0) return Status::FromErrno("poll", errno);
  if (n == 0) return Status::Timeout("no frame within " + std::to_string(timeout_ms) + " ms");
  std::vector<uint8_t> buf(kMaxFrame);
  ssize_t got = ::recv(fd, buf.data(), buf.size(), 0);
  if (got < 0) return Status::FromErrno("recv", errno);
  buf.resize(size_t(got));
  return buf;
}

}  // namespace

Result<std::unique_ptr<UnixDgramLink>> UnixDgramLink::Open(const std::string& our_path, const std::string& qemu_path) {
  TANDEM_ASSIGN_OR_RETURN(sockaddr_un ours, UnixAddress(our_path));
  TANDEM_RETURN_IF_ERROR(UnixAddress(qemu_path).status());
  UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket(AF_UNIX, SOCK_DGRAM)", errno);
  ::unlink(our_path.c_str());
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ours), sizeof ours) != 0)
    return Status::FromErrno("bind " + our_path, errno);
  return std::unique_ptr<UnixDgramLink>(new UnixDgramLink(std::move(fd), our_path, qemu_path));
}

UnixDgramLink::~UnixDgramLink() { ::unlink(our_path_.c_str()); }

Status UnixDgramLink::Send(std::span<const uint8_t> frame) {
  TANDEM_ASSIGN_OR_RETURN(sockaddr_un to, UnixAddress(qemu_path_));
  if (::sendto(fd_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
    return Status::FromErrno("sendto " + qemu_path_, errno);
  return Status::Ok();
}

Result<std::vector<uint8_t>> UnixDgramLink::Receive(int timeout_ms) { return ReceiveFrom(fd_.get(), timeout_ms); }

Result<std::unique_ptr<PacketSocketLink>> PacketSocketLink::Open(const std::string& interface) {
  const unsigned ifindex = ::if_nametoindex(interface.c_str());
  if (ifindex == 0) return Status::FromErrno("no interface " + interface, errno);
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
  if (!fd.valid()) return Status::FromErrno("socket(AF_PACKET) (needs CAP_NET_RAW)", errno);
  sockaddr_ll a{};
  a.sll_family = AF_PACKET;
  a.sll_protocol = htons(ETH_P_ALL);
  a.sll_ifindex = int(ifindex);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Status::FromErrno("bind AF_PACKET to " + interface, errno);
  return std::unique_ptr<PacketSocketLink>(new PacketSocketLink(std::move(fd), int(ifindex)));
}

Status PacketSocketLink::Send(std::span<const uint8_t> frame) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  if (frame.size() >= 6) std::memcpy(to.sll_addr, frame.data(), 6);
  if (::sendto(fd_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0)
    return Status::FromErrno("sendto AF_PACKET", errno);
  return Status::Ok();
}

Result<std::vector<uint8_t>> PacketSocketLink::Receive(int timeout_ms) {
  // Frames we sent come back as PACKET_OUTGOING: skip them, they are not the network's answer.
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    pollfd p{fd_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, int(std::max<int64_t>(0, deadline - NowMs())));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("poll", errno);
    if (n == 0) return Status::Timeout("no frame within " + std::to_string(timeout_ms) + " ms");
    std::vector<uint8_t> buf(kMaxFrame);
    sockaddr_ll from{};
    socklen_t from_len = sizeof from;
    ssize_t got = ::recvfrom(fd_.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &from_len);
    if (got < 0) return Status::FromErrno("recvfrom AF_PACKET", errno);
    if (from.sll_pkttype == PACKET_OUTGOING) continue;
    buf.resize(size_t(got));
    return buf;
  }
}

Result<Frame> NetPeer::NextFrame(int64_t deadline_ms) {
  for (;;) {
    const int64_t left = deadline_ms - NowMs();
    if (left <= 0) return Status::Timeout("nothing for " + FormatIpv4(self_.ip) + " in time");
    TANDEM_ASSIGN_OR_RETURN(std::vector<uint8_t> bytes, link_.Receive(int(left)));
    Result<Frame> f = ParseFrame(bytes);
    if (!f.ok()) {
      ++bad_frames_;
      continue;
    }
    if (f->arp && f->arp->op == ArpOp::kRequest && f->arp->target_ip == self_.ip) {
      TANDEM_RETURN_IF_ERROR(
          link_.Send(BuildArpReply(self_.mac, self_.ip, f->arp->sender_mac, f->arp->sender_ip)));
      continue;
    }
    if (f->dst != self_.mac && f->dst != kBroadcastMac) continue;
    return f;
  }
}

Result<MacAddr> NetPeer::Resolve(Ipv4Addr ip, int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    TANDEM_RETURN_IF_ERROR(link_.Send(BuildArpRequest(self_.mac, self_.ip, ip)));
    const int64_t ask_again = std::min(deadline, NowMs() + 200);
    for (;;) {
      Result<Frame> f = NextFrame(ask_again);
      if (!f.ok() && !f.status().IsTimeout()) return f.status();
      if (!f.ok()) break;
      if (f->arp && f->arp->op == ArpOp::kReply && f->arp->sender_ip == ip) return f->arp->sender_mac;
    }
    if (NowMs() >= deadline)
      return Status::Timeout("no ARP reply for " + FormatIpv4(ip) + " within " + std::to_string(timeout_ms) + " ms");
  }
}

Status NetPeer::SendUdp(const Endpoint& to, std::string_view payload) {
  return link_.Send(BuildUdpFrame(self_, to, payload, ++ip_id_));
}

Result<UdpDatagram> NetPeer::ReceiveUdp(int timeout_ms) {
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    TANDEM_ASSIGN_OR_RETURN(Frame f, NextFrame(deadline));
    if (f.udp && f.udp->to.ip == self_.ip && f.udp->to.port == self_.port) return std::move(*f.udp);
  }
}

Result<UdpDatagram> NetPeer::Exchange(const Endpoint& to, std::string_view payload, int timeout_ms) {
  TANDEM_RETURN_IF_ERROR(SendUdp(to, payload));
  const int64_t deadline = NowMs() + timeout_ms;
  for (;;) {
    const int64_t left = deadline - NowMs();
    if (left <= 0) return Status::Timeout("no reply from " + FormatIpv4(to.ip) + " within " + std::to_string(timeout_ms) + " ms");
    TANDEM_ASSIGN_OR_RETURN(UdpDatagram d, ReceiveUdp(int(left)));
    if (d.from.ip == to.ip && d.from.port == to.port) return d;
  }
}

}  // namespace tandem::testing::net
