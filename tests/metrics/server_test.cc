// The endpoint over a real socket on loopback, scraped by a real HTTP client (cpp-httplib).
#include "metrics/server.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/net_address.h"

namespace tandem::metrics {
namespace {

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    registry_.AddGauge("tandem_protected", "protected")->Set(1);
    epochs_ = registry_.AddCounter("tandem_epochs_total", "epochs");
    ASSERT_TRUE(server_.Start("127.0.0.1:0", &registry_).ok());
    ASSERT_GT(server_.port(), 0);
  }
  httplib::Client Client() {
    httplib::Client client("127.0.0.1", server_.port());
    client.set_connection_timeout(2);
    client.set_read_timeout(5);
    return client;
  }

  Registry registry_;
  Counter* epochs_ = nullptr;
  MetricsServer server_;
};

TEST_F(MetricsServerTest, GetMetricsReturnsTheExpositionAsOfTheRequest) {
  httplib::Client client = Client();
  auto first = client.Get("/metrics");
  ASSERT_TRUE(first) << httplib::to_string(first.error());
  EXPECT_EQ(first->status, 200);
  EXPECT_EQ(first->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_NE(first->body.find("tandem_protected 1\n"), std::string::npos) << first->body;
  EXPECT_NE(first->body.find("tandem_epochs_total 0\n"), std::string::npos) << first->body;
  epochs_->Add(5);
  auto second = client.Get("/metrics");
  ASSERT_TRUE(second) << httplib::to_string(second.error());
  EXPECT_NE(second->body.find("tandem_epochs_total 5\n"), std::string::npos) << second->body;
}

TEST_F(MetricsServerTest, OtherPathsAre404AndOtherMethods405) {
  httplib::Client client = Client();
  auto root = client.Get("/");
  ASSERT_TRUE(root);
  EXPECT_EQ(root->status, 404);
  auto other = client.Get("/metricsx");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 404);
  auto post = client.Post("/metrics", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
}

TEST_F(MetricsServerTest, ClientThatSendsNothingIsDroppedAndOthersAreServedAfterIt) {
  // A silent connection holds the endpoint at most kIoTimeoutMs.
  auto at = ResolveInet(ParseNetAddress("127.0.0.1:" + std::to_string(server_.port())).value(), false, false);
  ASSERT_TRUE(at.ok());
  const int silent = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(connect(silent, at->get(), at->len), 0);
  auto after = Client().Get("/metrics");
  ASSERT_TRUE(after) << httplib::to_string(after.error());
  EXPECT_EQ(after->status, 200);
  close(silent);
}

TEST_F(MetricsServerTest, StopClosesTheEndpoint) {
  server_.Stop();
  httplib::Client client = Client();
  auto refused = client.Get("/metrics");
  EXPECT_FALSE(refused) << "still answering after Stop()";
}

TEST(MetricsServerAddressTest, AddressInUseOrNotALiteralIsRefused) {
  Registry registry;
  MetricsServer first;
  ASSERT_TRUE(first.Start("127.0.0.1:0", &registry).ok());
  MetricsServer second;
  EXPECT_FALSE(second.Start("127.0.0.1:" + std::to_string(first.port()), &registry).ok());
  EXPECT_FALSE(CheckMetricsAddress("localhost:9464").ok());
  EXPECT_FALSE(CheckMetricsAddress("unix:/tmp/m.sock").ok());
  EXPECT_FALSE(CheckMetricsAddress("127.0.0.1:0").ok());
  EXPECT_TRUE(CheckMetricsAddress("127.0.0.1:0", /*allow_any_port=*/true).ok());
  EXPECT_TRUE(CheckMetricsAddress(":9464").ok());
  EXPECT_TRUE(CheckMetricsAddress("[::1]:9464").ok());
}

}  // namespace
}  // namespace tandem::metrics
