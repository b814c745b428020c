// Ethernet frames for tests that play the network around a VM: ARP, IPv4 and UDP, built and parsed with real
// checksums. Pure functions over bytes, so the same frames go through any transport (frame_link.h: QEMU's
// `-netdev dgram` unix socket, a TAP device or a veth seen through an AF_PACKET socket).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace tandem::testing::net {

using MacAddr = std::array<uint8_t, 6>;
inline constexpr MacAddr kBroadcastMac = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};

// An IPv4 address in host byte order (10.0.0.2 is 0x0a000002).
struct Ipv4Addr {
  uint32_t value = 0;
  friend bool operator==(Ipv4Addr, Ipv4Addr) = default;
};

std::optional<MacAddr> ParseMac(std::string_view text);  // "52:54:00:12:34:56"
std::string FormatMac(const MacAddr& mac);
std::optional<Ipv4Addr> ParseIpv4(std::string_view text);  // "10.0.0.2"
std::string FormatIpv4(Ipv4Addr ip);

// One side of a UDP conversation.
struct Endpoint {
  MacAddr mac{};
  Ipv4Addr ip;
  uint16_t port = 0;
};

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr size_t kMinFrame = 60;  // Ethernet minimum without FCS: shorter frames are zero-padded

// RFC 1071 Internet checksum of `data`, continuing a partial sum (e.g. of a pseudo header; see PartialSum).
// A block that carries its own correct checksum sums to 0.
uint16_t InternetChecksum(std::span<const uint8_t> data, uint32_t partial_sum = 0);
uint32_t PartialSum(std::span<const uint8_t> data, uint32_t partial_sum = 0);

enum class ArpOp : uint16_t { kRequest = 1, kReply = 2 };
struct ArpPacket {
  ArpOp op = ArpOp::kRequest;
  MacAddr sender_mac{};
  Ipv4Addr sender_ip;
  MacAddr target_mac{};
  Ipv4Addr target_ip;
};

// "Who has target_ip? Tell sender_ip", broadcast.
std::vector<uint8_t> BuildArpRequest(const MacAddr& sender_mac, Ipv4Addr sender_ip, Ipv4Addr target_ip);
// "sender_ip is at sender_mac", to the asker.
std::vector<uint8_t> BuildArpReply(const MacAddr& sender_mac, Ipv4Addr sender_ip, const MacAddr& target_mac,
                                   Ipv4Addr target_ip);
// An IPv4/UDP datagram in an Ethernet frame from `from` to `to`, IPv4 header and UDP checksums filled in.
std::vector<uint8_t> BuildUdpFrame(const Endpoint& from, const Endpoint& to, std::span<const uint8_t> payload,
                                   uint16_t ip_id = 0);
std::vector<uint8_t> BuildUdpFrame(const Endpoint& from, const Endpoint& to, std::string_view payload,
                                   uint16_t ip_id = 0);

struct UdpDatagram {
  Endpoint from;  // source MAC, IP and port
  Endpoint to;
  std::vector<uint8_t> payload;
  std::string_view text() const { return {reinterpret_cast<const char*>(payload.data()), payload.size()}; }
};

struct Frame {
  MacAddr dst{};
  MacAddr src{};
  uint16_t ethertype = 0;
  std::optional<ArpPacket> arp;  // an Ethernet/IPv4 ARP packet
  std::optional<UdpDatagram> udp;  // an unfragmented IPv4 UDP datagram whose checksums verify
};

// Parses what this library builds (and what a guest or kernel sends). Corruption: truncated headers, lengths
// that do not fit, a bad IPv4 header or UDP checksum. Anything else (IPv6, ICMP, fragments) parses with neither
// `arp` nor `udp` set.
Result<Frame> ParseFrame(std::span<const uint8_t> frame);

}  // namespace tandem::testing::net
