// The one address grammar (common/net_address.h) that replication streams and heartbeats share.
#include "common/net_address.h"

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>

namespace tandem {
namespace {

TEST(NetAddressTest, HostPortIpv6AndUnixForms) {
  auto tcp = ParseNetAddress("10.0.0.2:7400");
  ASSERT_TRUE(tcp.ok()) << tcp.status().ToString();
  EXPECT_FALSE(tcp->is_unix);
  EXPECT_FALSE(tcp->ipv6);
  EXPECT_EQ(tcp->host, "10.0.0.2");
  EXPECT_EQ(tcp->port, 7400);

  auto v6 = ParseNetAddress("[fd00::2]:65535");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_TRUE(v6->ipv6);
  EXPECT_EQ(v6->host, "fd00::2");
  EXPECT_EQ(v6->port, 65535);

  auto unix_socket = ParseNetAddress("unix:/run/tandem/replication.sock");
  ASSERT_TRUE(unix_socket.ok()) << unix_socket.status().ToString();
  EXPECT_TRUE(unix_socket->is_unix);
  EXPECT_EQ(unix_socket->path, "/run/tandem/replication.sock");

  for (const char* any : {":0", "*:0"}) {
    auto a = ParseNetAddress(any);
    ASSERT_TRUE(a.ok()) << any;
    EXPECT_EQ(a->host, "") << any;
  }
}

TEST(NetAddressTest, MalformedAddressesAreRefused) {
  for (const char* bad : {"", "host", "host:", "host:port", "host:65536", "host:123456", "host:-1", "host:+80",
                          "host: 80", "::1:80", "[::1]80", "[::1", "unix:"}) {
    auto a = ParseNetAddress(bad);
    EXPECT_FALSE(a.ok()) << "'" << bad << "' accepted";
    if (!a.ok()) {
      EXPECT_EQ(a.status().code(), Status::Code::kInvalidArgument) << bad;
    }
  }
  EXPECT_FALSE(ParseNetAddress("unix:/" + std::string(sizeof(sockaddr_un::sun_path), 'x')).ok());
}

TEST(NetAddressTest, UnixSockaddrHoldsThePathOrRefusesIt) {
  sockaddr_un addr;
  ASSERT_TRUE(MakeUnixSockaddr("/run/a.sock", &addr).ok());
  EXPECT_EQ(addr.sun_family, AF_UNIX);
  EXPECT_STREQ(addr.sun_path, "/run/a.sock");
  const std::string longest(sizeof(addr.sun_path) - 1, 'y');
  ASSERT_TRUE(MakeUnixSockaddr(longest, &addr).ok());
  EXPECT_EQ(std::string(addr.sun_path), longest);
  EXPECT_FALSE(MakeUnixSockaddr(longest + "y", &addr).ok());
  EXPECT_FALSE(MakeUnixSockaddr("", &addr).ok());
  EXPECT_FALSE(MakeUnixSockaddr(std::string("/a\0b", 4), &addr).ok());
}

TEST(NetAddressTest, ResolveKeepsHeartbeatsOffDns) {
  auto name = ParseNetAddress("localhost:80");
  ASSERT_TRUE(name.ok());
  EXPECT_FALSE(ResolveInet(*name, /*passive=*/false, /*allow_names=*/false).ok());
  auto any = ParseNetAddress(":80");
  ASSERT_TRUE(any.ok());
  auto bound = ResolveInet(*any, /*passive=*/true, /*allow_names=*/false);
  ASSERT_TRUE(bound.ok());
  EXPECT_EQ(FormatSocketAddress(bound->storage), "0.0.0.0:80");
  auto loopback = ResolveInet(*any, /*passive=*/false, /*allow_names=*/false);
  ASSERT_TRUE(loopback.ok());
  EXPECT_EQ(FormatSocketAddress(loopback->storage), "127.0.0.1:80");
  auto v6 = ParseNetAddress("[::1]:9");
  ASSERT_TRUE(v6.ok());
  auto resolved = ResolveInet(*v6, false, false);
  ASSERT_TRUE(resolved.ok());
  EXPECT_EQ(FormatSocketAddress(resolved->storage), "[::1]:9");
}

}  // namespace
}  // namespace tandem
