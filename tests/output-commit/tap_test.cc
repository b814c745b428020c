// The outside as a real TAP device, in a network namespace of this test process's own (nothing on the host's
// interfaces). An AF_PACKET socket on the TAP interface plays the host's side of the wire.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "output-commit/nic_commit.h"
#include "output-commit/qemu_options.h"
#include "tests/output-commit/test_util.h"

namespace tandem::output_commit {
namespace {

constexpr uint16_t kTestEtherType = 0x88b5;  // IEEE "local experimental": nothing else on the wire uses it

std::vector<uint8_t> EthFrame(uint32_t id) {
  std::vector<uint8_t> f = Frame(id, 64);  // id in bytes 0..3: inside the destination MAC
  f[0] = 0x02;                              // ... made a locally administered unicast MAC
  const uint8_t src[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::copy(src, src + 6, f.begin() + 6);
  f[12] = kTestEtherType >> 8, f[13] = kTestEtherType & 0xff;
  return f;
}

bool IsTestFrame(const uint8_t* f, ssize_t n) {
  return n >= 14 && f[12] == (kTestEtherType >> 8) && f[13] == (kTestEtherType & 0xff);
}

TEST(TapTest, ReleasedFramesGoOutOfTheTapAndFramesFromItReachQemu) {
  if (::unshare(CLONE_NEWNET) != 0) GTEST_SKIP() << "no network namespace here (needs CAP_SYS_ADMIN)";
  auto tap = OpenTap("tdtest0");
  ASSERT_TRUE(tap.ok()) << tap.status().ToString();
  ASSERT_TRUE(BringUpTap("tdtest0", "").ok());
  const int ifindex = int(if_nametoindex("tdtest0"));
  ASSERT_GT(ifindex, 0);
  UniqueFd wire(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(kTestEtherType)));
  ASSERT_TRUE(wire.valid());
  sockaddr_ll ll{};
  ll.sll_family = AF_PACKET;
  ll.sll_protocol = htons(kTestEtherType);
  ll.sll_ifindex = ifindex;
  ASSERT_EQ(::bind(wire.get(), reinterpret_cast<sockaddr*>(&ll), sizeof(ll)), 0);

  TempDir dir;
  FakeClock clock;
  const OutputPaths paths = PathsIn(dir.path());
  UniqueFd qemu = BoundDgram(paths.nic_qemu_socket);
  auto nic = NicOutputCommit::Create({.socket_path = paths.nic_socket, .qemu_socket_path = paths.nic_qemu_socket,
                                      .outside = std::move(tap.value()), .limits = {}},
                                     &clock);
  ASSERT_TRUE(nic.ok()) << nic.status().ToString();

  ASSERT_EQ(SendTo(qemu.get(), paths.nic_socket, EthFrame(1)), 0);
  ASSERT_TRUE((*nic)->OnEpochBoundary(1).ok());
  uint8_t buf[2048];
  EXPECT_LT(::recv(wire.get(), buf, sizeof(buf), MSG_DONTWAIT), 0);  // held
  (*nic)->ReleaseThrough(1);
  ssize_t n = -1;
  for (int i = 0; i < 100 && n < 0; ++i) {
    n = ::recv(wire.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(IsTestFrame(buf, n));
  EXPECT_EQ(std::vector<uint8_t>(buf, buf + n), EthFrame(1));

  // The host sends into the TAP interface: the frame comes out of the TAP fd and goes to QEMU at once.
  const auto in = EthFrame(2);
  ASSERT_EQ(::sendto(wire.get(), in.data(), in.size(), 0, reinterpret_cast<sockaddr*>(&ll), sizeof(ll)),
            ssize_t(in.size()));
  bool got = false;
  for (int i = 0; i < 100 && !got; ++i) {
    ASSERT_TRUE((*nic)->PollOnce(10).ok());
    for (n = ::recv(qemu.get(), buf, sizeof(buf), MSG_DONTWAIT); n > 0 && !got;
         n = ::recv(qemu.get(), buf, sizeof(buf), MSG_DONTWAIT)) {
      got = IsTestFrame(buf, n) && std::vector<uint8_t>(buf, buf + n) == in;  // skip IPv6 chatter
    }
  }
  EXPECT_TRUE(got);
}

TEST(TapTest, BringUpEnslavesTheTapToTheBridge) {
  if (::unshare(CLONE_NEWNET) != 0) GTEST_SKIP() << "no network namespace here (needs CAP_SYS_ADMIN)";
  auto tap = OpenTap("tdtest1");
  ASSERT_TRUE(tap.ok()) << tap.status().ToString();
  UniqueFd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  char bridge[IFNAMSIZ] = "tdbr0";
  ASSERT_EQ(::ioctl(ctl.get(), SIOCBRADDBR, bridge), 0);
  EXPECT_FALSE(BringUpTap("tdtest1", "tdnobr").ok());  // no such bridge: a clear error
  ASSERT_TRUE(BringUpTap("tdtest1", "tdbr0").ok());
  ASSERT_TRUE(BringUpTap("tdtest1", "tdbr0").ok());  // again: already a port, fine
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "tdtest1", IFNAMSIZ - 1);
  ASSERT_EQ(::ioctl(ctl.get(), SIOCGIFFLAGS, &ifr), 0);
  EXPECT_TRUE(ifr.ifr_flags & IFF_UP);
  // It is a port of the bridge: removing it succeeds once, then the kernel says it is not one.
  ifreq port{};
  std::strncpy(port.ifr_name, "tdbr0", IFNAMSIZ - 1);
  port.ifr_ifindex = int(if_nametoindex("tdtest1"));
  EXPECT_EQ(::ioctl(ctl.get(), SIOCBRDELIF, &port), 0);
  EXPECT_NE(::ioctl(ctl.get(), SIOCBRDELIF, &port), 0);
}

TEST(TapTest, RefusesABadName) {
  EXPECT_EQ(OpenTap("").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(OpenTap(std::string(16, 'x')).status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::output_commit
