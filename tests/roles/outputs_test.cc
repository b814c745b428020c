// GuestOutputs: the rules of output commit the roles rely on (output-commit/README.md), with recording channels.
#include "roles/outputs.h"

#include <gtest/gtest.h>

#include "tests/roles/fakes.h"

namespace tandem::roles {
namespace {

using testing::FakeChannel;
using testing::FakeQemu;

replicator::ShipperStats Standby(bool connected, uint64_t last_acked) {
  replicator::ShipperStats stats;
  stats.standby_connected = connected;
  stats.last_acked = last_acked;
  return stats;
}

class GuestOutputsTest : public ::testing::Test {
 protected:
  void AddChannels(GuestOutputs* outputs) {
    outputs->Add("console", std::make_unique<FakeChannel>(&q_, "console"));
    outputs->Add("nic", std::make_unique<FakeChannel>(&q_, "nic"));
    q_.events.clear();
  }
  FakeQemu q_;
};

TEST_F(GuestOutputsTest, ReleasesEveryChannelThroughRealAcksOnlyAndNeverBackwards) {
  GuestOutputs outputs("vm7", true);
  AddChannels(&outputs);
  outputs.OnShipperStats(Standby(true, 0));  // no ack yet: 0 is also the precopy's number
  EXPECT_TRUE(q_.Events().empty());
  outputs.OnShipperStats(Standby(true, 3));
  outputs.OnShipperStats(Standby(true, 3));
  outputs.OnShipperStats(Standby(true, 2));  // a stale report
  outputs.OnShipperStats(Standby(true, 5));
  EXPECT_EQ(q_.Events(), (std::vector<std::string>{"console:release 3", "nic:release 3", "console:release 5",
                                                   "nic:release 5"}));
}

TEST_F(GuestOutputsTest, BoundaryReachesEveryChannel) {
  GuestOutputs outputs("vm7", true);
  AddChannels(&outputs);
  outputs.OnEpochBoundary(4);
  EXPECT_EQ(q_.Events(), (std::vector<std::string>{"console:boundary 4", "nic:boundary 4"}));
}

TEST_F(GuestOutputsTest, WithoutAStandbyReleasePolicyPassesThroughUntilOneIsBack) {
  GuestOutputs outputs("vm7", /*release_when_unprotected=*/true);
  AddChannels(&outputs);
  outputs.OnShipperStats(Standby(false, 0));
  outputs.OnShipperStats(Standby(false, 0));
  outputs.OnShipperStats(Standby(true, 0));
  EXPECT_EQ(q_.Events(), (std::vector<std::string>{"console:pass on", "nic:pass on", "console:pass off",
                                                   "nic:pass off"}));
}

TEST_F(GuestOutputsTest, WithoutAStandbyHoldPolicyKeepsHolding) {
  GuestOutputs outputs("vm7", /*release_when_unprotected=*/false);
  AddChannels(&outputs);
  outputs.OnShipperStats(Standby(false, 0));
  outputs.OnShipperStats(Standby(true, 0));
  EXPECT_TRUE(q_.Events().empty());
}

TEST_F(GuestOutputsTest, AfterTheDropNothingIsReleasedOrPassedThroughAgain) {
  GuestOutputs outputs("vm7", true);
  AddChannels(&outputs);
  outputs.DropUnreleased();
  outputs.OnShipperStats(Standby(true, 9));
  outputs.OnShipperStats(Standby(false, 9));
  outputs.PassThrough();
  EXPECT_EQ(q_.Events(), (std::vector<std::string>{"console:drop", "nic:drop"}));
}

TEST_F(GuestOutputsTest, AChannelAddedAfterPassThroughPassesThrough) {
  GuestOutputs outputs("vm7", true);
  outputs.Add("console", std::make_unique<FakeChannel>(&q_, "console"));
  outputs.PassThrough();
  outputs.Add("nic", std::make_unique<FakeChannel>(&q_, "nic"));
  EXPECT_EQ(q_.Events(), (std::vector<std::string>{"console:open", "console:pass on", "nic:open", "nic:pass on"}));
}

TEST_F(GuestOutputsTest, FollowerReleasesWhatTheShipperReports) {
  GuestOutputs outputs("vm7", true);
  AddChannels(&outputs);
  std::atomic<uint64_t> acked{0};
  outputs.Follow([&] { return Standby(true, acked.load()); }, 1);
  acked = 6;
  bool released = false;
  for (int i = 0; i < 400 && !released; ++i) {
    const auto events = q_.Events();
    released = std::find(events.begin(), events.end(), "nic:release 6") != events.end();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_TRUE(released);
  outputs.StopFollowing();
}

}  // namespace
}  // namespace tandem::roles
