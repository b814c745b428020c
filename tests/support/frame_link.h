// Transports for whole Ethernet frames, and a peer that speaks ARP and UDP over one: what a test needs to play
// the network around a VM. Frames are built and parsed by net_frames.h.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/fd.h"
#include "common/status.h"
#include "tests/support/net_frames.h"

namespace tandem::testing::net {

class FrameLink {
 public:
  virtual ~FrameLink() = default;
  virtual Status Send(std::span<const uint8_t> frame) = 0;
  // The next frame; Timeout when none arrived within timeout_ms.
  virtual Result<std::vector<uint8_t>> Receive(int timeout_ms) = 0;
};

// The other end of QEMU's
//   -netdev dgram,id=n0,local.type=unix,local.path=<qemu_path>,remote.type=unix,remote.path=<our_path>
// one Ethernet frame per datagram. Binds our_path (replacing a stale socket file) and sends to qemu_path, which
// exists once QEMU has started; frames sent before that are lost (Send says so).
class UnixDgramLink : public FrameLink {
 public:
  static Result<std::unique_ptr<UnixDgramLink>> Open(const std::string& our_path, const std::string& qemu_path);
  ~UnixDgramLink() override;
  Status Send(std::span<const uint8_t> frame) override;
  Result<std::vector<uint8_t>> Receive(int timeout_ms) override;

 private:
  UnixDgramLink(UniqueFd fd, std::string our_path, std::string qemu_path)
      : fd_(std::move(fd)), our_path_(std::move(our_path)), qemu_path_(std::move(qemu_path)) {}
  UniqueFd fd_;
  std::string our_path_;
  std::string qemu_path_;
};

// A network interface of the caller's network namespace (a TAP device's host side, one end of a veth pair) through
// an AF_PACKET socket: every frame the interface receives, and frames sent out of it. Needs CAP_NET_RAW.
class PacketSocketLink : public FrameLink {
 public:
  static Result<std::unique_ptr<PacketSocketLink>> Open(const std::string& interface);
  Status Send(std::span<const uint8_t> frame) override;
  Result<std::vector<uint8_t>> Receive(int timeout_ms) override;

 private:
  PacketSocketLink(UniqueFd fd, int ifindex) : fd_(std::move(fd)), ifindex_(ifindex) {}
  UniqueFd fd_;
  int ifindex_;
};

// One host on a FrameLink: resolves addresses with ARP, answers ARP for its own address (a Linux guest asks before
// it replies), sends UDP datagrams and collects the ones addressed to it. Not thread-safe.
class NetPeer {
 public:
  NetPeer(FrameLink& link, Endpoint self) : link_(link), self_(self) {}
  const Endpoint& self() const { return self_; }

  // ARP for `ip`, asking again every 200 ms, until answered or timeout_ms passed.
  Result<MacAddr> Resolve(Ipv4Addr ip, int timeout_ms);
  Status SendUdp(const Endpoint& to, std::string_view payload);
  // The next UDP datagram to our address and port. Frames that fail to parse are counted in bad_frames().
  Result<UdpDatagram> ReceiveUdp(int timeout_ms);
  // SendUdp, then ReceiveUdp from `to` (sent once: a resend would be a second request).
  Result<UdpDatagram> Exchange(const Endpoint& to, std::string_view payload, int timeout_ms);
  uint64_t bad_frames() const { return bad_frames_; }

 private:
  // A frame that is neither for us nor an ARP request for us is dropped; an ARP request for us is answered.
  Result<Frame> NextFrame(int64_t deadline_ms);

  FrameLink& link_;
  Endpoint self_;
  uint16_t ip_id_ = 0;
  uint64_t bad_frames_ = 0;
};

}  // namespace tandem::testing::net
