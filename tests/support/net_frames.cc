#include "tests/support/net_frames.h"

#include <cstdio>

#include "common/fd.h"

namespace tandem::testing::net {
namespace {

constexpr size_t kEthHeader = 14;
constexpr size_t kArpSize = 28;
constexpr size_t kIpHeader = 20;
constexpr size_t kUdpHeader = 8;
constexpr uint8_t kProtoUdp = 17;

void StoreBe16(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8), p[1] = uint8_t(v); }

std::vector<uint8_t> EthernetFrame(const MacAddr& dst, const MacAddr& src, uint16_t ethertype, size_t body) {
  std::vector<uint8_t> f(std::max(kEthHeader + body, kMinFrame), 0);
  std::copy(dst.begin(), dst.end(), f.begin());
  std::copy(src.begin(), src.end(), f.begin() + 6);
  StoreBe16(f.data() + 12, ethertype);
  return f;
}

std::vector<uint8_t> Arp(ArpOp op, const MacAddr& eth_dst, const MacAddr& sender_mac, Ipv4Addr sender_ip,
                         const MacAddr& target_mac, Ipv4Addr target_ip) {
  std::vector<uint8_t> f = EthernetFrame(eth_dst, sender_mac, kEtherTypeArp, kArpSize);
  uint8_t* a = f.data() + kEthHeader;
  StoreBe16(a, 1);  // Ethernet
  StoreBe16(a + 2, kEtherTypeIpv4);
  a[4] = 6, a[5] = 4;
  StoreBe16(a + 6, static_cast<uint16_t>(op));
  std::copy(sender_mac.begin(), sender_mac.end(), a + 8);
  StoreBe32(a + 14, sender_ip.value);
  std::copy(target_mac.begin(), target_mac.end(), a + 18);
  StoreBe32(a + 24, target_ip.value);
  return f;
}

MacAddr LoadMac(const uint8_t* p) {
  MacAddr m;
  std::copy(p, p + 6, m.begin());
  return m;
}

// Source and destination address, protocol and length: what the UDP checksum covers besides the datagram.
uint32_t PseudoHeaderSum(const uint8_t* ip_header, uint16_t udp_length) {
  return PartialSum(std::span(ip_header + 12, 8)) + kProtoUdp + udp_length;
}

}  // namespace

std::optional<MacAddr> ParseMac(std::string_view text) {
  MacAddr m;
  unsigned b[6];
  char tail;
  std::string s(text);
  if (std::sscanf(s.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5], &tail) != 6 ||
      s.size() != 17)
    return std::nullopt;
  for (int i = 0; i < 6; ++i) m[i] = uint8_t(b[i]);
  return m;
}

std::string FormatMac(const MacAddr& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
  return buf;
}

std::optional<Ipv4Addr> ParseIpv4(std::string_view text) {
  uint32_t value = 0;
  size_t pos = 0;
  for (int part = 0; part < 4; ++part) {
    if (part > 0 && (pos >= text.size() || text[pos++] != '.')) return std::nullopt;
    size_t start = pos;
    uint32_t n = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9' && pos - start < 3) n = n * 10 + (text[pos++] - '0');
    if (pos == start || n > 255) return std::nullopt;
    value = value << 8 | n;
  }
  if (pos != text.size()) return std::nullopt;
  return Ipv4Addr{value};
}

std::string FormatIpv4(Ipv4Addr ip) {
  return std::to_string(ip.value >> 24) + "." + std::to_string(ip.value >> 16 & 0xff) + "." +
         std::to_string(ip.value >> 8 & 0xff) + "." + std::to_string(ip.value & 0xff);
}

uint32_t PartialSum(std::span<const uint8_t> data, uint32_t partial_sum) {
  size_t i = 0;
  for (; i + 1 < data.size(); i += 2) partial_sum += LoadBe16(data.data() + i);
  if (i < data.size()) partial_sum += uint32_t(data[i]) << 8;
  return partial_sum;
}

uint16_t InternetChecksum(std::span<const uint8_t> data, uint32_t partial_sum) {
  uint64_t sum = PartialSum(data, partial_sum);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(~sum);
}

std::vector<uint8_t> BuildArpRequest(const MacAddr& sender_mac, Ipv4Addr sender_ip, Ipv4Addr target_ip) {
  return Arp(ArpOp::kRequest, kBroadcastMac, sender_mac, sender_ip, MacAddr{}, target_ip);
}

std::vector<uint8_t> BuildArpReply(const MacAddr& sender_mac, Ipv4Addr sender_ip, const MacAddr& target_mac,
                                   Ipv4Addr target_ip) {
  return Arp(ArpOp::kReply, target_mac, sender_mac, sender_ip, target_mac, target_ip);
}

std::vector<uint8_t> BuildUdpFrame(const Endpoint& from, const Endpoint& to, std::span<const uint8_t> payload,
                                   uint16_t ip_id) {
  const uint16_t udp_len = uint16_t(kUdpHeader + payload.size());
  std::vector<uint8_t> f = EthernetFrame(to.mac, from.mac, kEtherTypeIpv4, kIpHeader + udp_len);
  uint8_t* ip = f.data() + kEthHeader;
  ip[0] = 0x45;
  StoreBe16(ip + 2, uint16_t(kIpHeader + udp_len));
  StoreBe16(ip + 4, ip_id);
  StoreBe16(ip + 6, 0x4000);  // don't fragment
  ip[8] = 64;
  ip[9] = kProtoUdp;
  StoreBe32(ip + 12, from.ip.value);
  StoreBe32(ip + 16, to.ip.value);
  StoreBe16(ip + 10, InternetChecksum(std::span(ip, kIpHeader)));
  uint8_t* udp = ip + kIpHeader;
  StoreBe16(udp, from.port);
  StoreBe16(udp + 2, to.port);
  StoreBe16(udp + 4, udp_len);
  std::copy(payload.begin(), payload.end(), udp + kUdpHeader);
  uint16_t sum = InternetChecksum(std::span(udp, udp_len), PseudoHeaderSum(ip, udp_len));
  StoreBe16(udp + 6, sum ? sum : 0xffff);  // 0 would mean "no checksum"
  return f;
}

std::vector<uint8_t> BuildUdpFrame(const Endpoint& from, const Endpoint& to, std::string_view payload,
                                   uint16_t ip_id) {
  return BuildUdpFrame(from, to, std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()), ip_id);
}

Result<Frame> ParseFrame(std::span<const uint8_t> bytes) {
  if (bytes.size() < kEthHeader) return Status::Corruption("frame of " + std::to_string(bytes.size()) + " bytes");
  const uint8_t* p = bytes.data();
  Frame f;
  f.dst = LoadMac(p);
  f.src = LoadMac(p + 6);
  f.ethertype = LoadBe16(p + 12);
  const uint8_t* body = p + kEthHeader;
  const size_t body_len = bytes.size() - kEthHeader;
  if (f.ethertype == kEtherTypeArp) {
    if (body_len < kArpSize) return Status::Corruption("ARP packet of " + std::to_string(body_len) + " bytes");
    if (LoadBe16(body) != 1 || LoadBe16(body + 2) != kEtherTypeIpv4 || body[4] != 6 || body[5] != 4) return f;
    ArpPacket a;
    a.op = static_cast<ArpOp>(LoadBe16(body + 6));
    a.sender_mac = LoadMac(body + 8);
    a.sender_ip = Ipv4Addr{LoadBe32(body + 14)};
    a.target_mac = LoadMac(body + 18);
    a.target_ip = Ipv4Addr{LoadBe32(body + 24)};
    f.arp = a;
    return f;
  }
  if (f.ethertype != kEtherTypeIpv4) return f;
  if (body_len < kIpHeader || body[0] >> 4 != 4) return Status::Corruption("truncated or non-v4 IPv4 header");
  const size_t ihl = (body[0] & 0xf) * 4u, total = LoadBe16(body + 2);
  if (ihl < kIpHeader || total < ihl || total > body_len)
    return Status::Corruption("IPv4 lengths: header " + std::to_string(ihl) + " total " + std::to_string(total) +
                              " in " + std::to_string(body_len) + " bytes");
  if (InternetChecksum(std::span(body, ihl)) != 0) return Status::Corruption("bad IPv4 header checksum");
  if ((LoadBe16(body + 6) & 0x3fff) != 0 || body[9] != kProtoUdp) return f;  // fragment, or not UDP
  const uint8_t* udp = body + ihl;
  const size_t udp_space = total - ihl;
  if (udp_space < kUdpHeader) return Status::Corruption("truncated UDP header");
  const uint16_t udp_len = LoadBe16(udp + 4);
  if (udp_len < kUdpHeader || udp_len > udp_space)
    return Status::Corruption("UDP length " + std::to_string(udp_len) + " in " + std::to_string(udp_space) + " bytes");
  if (LoadBe16(udp + 6) != 0 && InternetChecksum(std::span(udp, udp_len), PseudoHeaderSum(body, udp_len)) != 0)
    return Status::Corruption("bad UDP checksum");
  UdpDatagram d;
  d.from = Endpoint{f.src, Ipv4Addr{LoadBe32(body + 12)}, LoadBe16(udp)};
  d.to = Endpoint{f.dst, Ipv4Addr{LoadBe32(body + 16)}, LoadBe16(udp + 2)};
  d.payload.assign(udp + kUdpHeader, udp + udp_len);
  f.udp = std::move(d);
  return f;
}

}  // namespace tandem::testing::net
