#include "tests/support/net_frames.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <thread>

#include "tests/support/frame_link.h"

namespace tandem::testing::net {
namespace {

const MacAddr kHostMac = {0x02, 0, 0, 0, 0, 1};
const MacAddr kGuestMac = {0x52, 0x54, 0, 0x12, 0x34, 0x56};
const Ipv4Addr kHostIp{0x0a000001};
const Ipv4Addr kGuestIp{0x0a000002};

std::vector<uint8_t> Bytes(std::initializer_list<int> v) { return {v.begin(), v.end()}; }

TEST(NetFrames, ChecksumOfTheTextbookIpv4HeaderMatches) {
  // 192.168.0.1 -> 192.168.0.199, UDP, checksum field zeroed: the checksum is 0xb861.
  auto h = Bytes({0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7});
  EXPECT_EQ(InternetChecksum(h), 0xb861);
  h[10] = 0xb8, h[11] = 0x61;
  EXPECT_EQ(InternetChecksum(h), 0);
}

TEST(NetFrames, ChecksumOfAnOddLengthBlockPadsWithZero) {
  EXPECT_EQ(InternetChecksum(Bytes({0x12, 0x34, 0x56})), uint16_t(~(0x1234 + 0x5600)));
}

TEST(NetFrames, UdpFrameRoundTripsWithItsAddressesAndPayload) {
  const Endpoint host{kHostMac, kHostIp, 40000}, guest{kGuestMac, kGuestIp, 7};
  auto bytes = BuildUdpFrame(host, guest, "req id=abc", 9);
  auto f = ParseFrame(bytes);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->dst, kGuestMac);
  EXPECT_EQ(f->src, kHostMac);
  EXPECT_EQ(f->ethertype, kEtherTypeIpv4);
  ASSERT_TRUE(f->udp);
  EXPECT_EQ(f->udp->from.ip, kHostIp);
  EXPECT_EQ(f->udp->from.port, 40000);
  EXPECT_EQ(f->udp->to.ip, kGuestIp);
  EXPECT_EQ(f->udp->to.port, 7);
  EXPECT_EQ(f->udp->text(), "req id=abc");
}

TEST(NetFrames, ShortFramesArePaddedToTheEthernetMinimumAndThePaddingIsNotPayload) {
  auto bytes = BuildUdpFrame({kHostMac, kHostIp, 1}, {kGuestMac, kGuestIp, 7}, "x");
  EXPECT_EQ(bytes.size(), kMinFrame);
  auto f = ParseFrame(bytes);
  ASSERT_TRUE(f.ok() && f->udp);
  EXPECT_EQ(f->udp->text(), "x");
}

TEST(NetFrames, DamagedPayloadFailsTheUdpChecksum) {
  auto bytes = BuildUdpFrame({kHostMac, kHostIp, 1}, {kGuestMac, kGuestIp, 7}, "reply=1\n");
  bytes[14 + 20 + 8] ^= 0x01;
  auto f = ParseFrame(bytes);
  ASSERT_FALSE(f.ok());
  EXPECT_TRUE(f.status().IsCorruption());
  EXPECT_NE(f.status().ToString().find("UDP checksum"), std::string::npos) << f.status().ToString();
}

TEST(NetFrames, DamagedIpHeaderFailsItsChecksum) {
  auto bytes = BuildUdpFrame({kHostMac, kHostIp, 1}, {kGuestMac, kGuestIp, 7}, "reply=1\n");
  bytes[14 + 8] = 1;  // TTL
  auto f = ParseFrame(bytes);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().ToString().find("IPv4 header checksum"), std::string::npos) << f.status().ToString();
}

TEST(NetFrames, UdpLengthBeyondTheFrameIsCorruption) {
  auto bytes = BuildUdpFrame({kHostMac, kHostIp, 1}, {kGuestMac, kGuestIp, 7}, "0123456789012345678901234567");
  bytes.resize(bytes.size() - 4);
  EXPECT_TRUE(ParseFrame(bytes).status().IsCorruption());
  EXPECT_TRUE(ParseFrame(std::span(bytes.data(), 10)).status().IsCorruption());
}

TEST(NetFrames, ArpRequestAndReplyParseBack) {
  auto req = ParseFrame(BuildArpRequest(kHostMac, kHostIp, kGuestIp));
  ASSERT_TRUE(req.ok() && req->arp);
  EXPECT_EQ(req->dst, kBroadcastMac);
  EXPECT_EQ(req->arp->op, ArpOp::kRequest);
  EXPECT_EQ(req->arp->sender_mac, kHostMac);
  EXPECT_EQ(req->arp->target_ip, kGuestIp);
  auto rep = ParseFrame(BuildArpReply(kGuestMac, kGuestIp, kHostMac, kHostIp));
  ASSERT_TRUE(rep.ok() && rep->arp);
  EXPECT_EQ(rep->dst, kHostMac);
  EXPECT_EQ(rep->arp->op, ArpOp::kReply);
  EXPECT_EQ(rep->arp->sender_mac, kGuestMac);
  EXPECT_EQ(rep->arp->sender_ip, kGuestIp);
}

TEST(NetFrames, OtherEtherTypesParseWithoutArpOrUdp) {
  auto bytes = BuildArpRequest(kHostMac, kHostIp, kGuestIp);
  bytes[12] = 0x86, bytes[13] = 0xdd;  // IPv6
  auto f = ParseFrame(bytes);
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->arp);
  EXPECT_FALSE(f->udp);
}

TEST(NetFrames, AddressesParseAndFormat) {
  EXPECT_EQ(ParseIpv4("10.0.0.2"), kGuestIp);
  EXPECT_EQ(FormatIpv4(kGuestIp), "10.0.0.2");
  EXPECT_FALSE(ParseIpv4("10.0.0"));
  EXPECT_FALSE(ParseIpv4("10.0.0.256"));
  EXPECT_FALSE(ParseIpv4("10.0.0.2 "));
  EXPECT_EQ(ParseMac("52:54:00:12:34:56"), kGuestMac);
  EXPECT_EQ(FormatMac(kGuestMac), "52:54:00:12:34:56");
  EXPECT_FALSE(ParseMac("52:54:00:12:34"));
  EXPECT_FALSE(ParseMac("52:54:00:12:34:56:"));
}

// Two peers on a pair of unix datagram sockets (what QEMU's dgram netdev is): ARP, then a request and its reply.
TEST(NetPeer, ResolvesAndExchangesOverUnixDatagrams) {
  char dir[] = "/tmp/tandem-net-XXXXXX";
  ASSERT_TRUE(::mkdtemp(dir));
  const std::string a = std::string(dir) + "/a", b = std::string(dir) + "/b";
  auto link_a = UnixDgramLink::Open(a, b);
  auto link_b = UnixDgramLink::Open(b, a);
  ASSERT_TRUE(link_a.ok() && link_b.ok()) << link_a.status().ToString() << link_b.status().ToString();
  NetPeer host(**link_a, {kHostMac, kHostIp, 40000});
  NetPeer guest(**link_b, {kGuestMac, kGuestIp, 7});
  std::thread server([&] {
    auto req = guest.ReceiveUdp(5000);
    if (req.ok()) (void)guest.SendUdp(req->from, "reply to " + std::string(req->text()));
  });
  auto mac = host.Resolve(kGuestIp, 5000);
  ASSERT_TRUE(mac.ok()) << mac.status().ToString();
  EXPECT_EQ(*mac, kGuestMac);
  auto reply = host.Exchange({*mac, kGuestIp, 7}, "req id=1", 5000);
  server.join();
  ASSERT_TRUE(reply.ok()) << reply.status().ToString();
  EXPECT_EQ(reply->text(), "reply to req id=1");
  EXPECT_EQ(host.bad_frames(), 0u);
  link_a = Status::Closed("done"), link_b = Status::Closed("done");
  ::rmdir(dir);
}

}  // namespace
}  // namespace tandem::testing::net
