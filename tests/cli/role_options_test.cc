// The configuration file mapped onto what each role is told: with re-protection, each host keeps its own state,
// files and addresses whichever role it plays.
#include "cli/options.h"

#include <gtest/gtest.h>

#include "tests/support/toml_overlay.h"

namespace tandem::cli {
namespace {

constexpr const char* kTwoHosts = R"(
[vm]
name = "web1"
memory_mb = 32
kernel = "/opt/guest.elf"
epoch_ms = 40
memory_dir = "/dev/shm/t"

[primary]
state_dir = "/run/tandem/a"
heartbeat = ["127.0.0.1:7101"]
replication = "127.0.0.1:7401"

[standby]
state_dir = "/run/tandem/b"
replication = "127.0.0.1:7400"
heartbeat = ["127.0.0.1:7201"]

[heartbeat]
psk = "a-secret-of-21-bytes!"

[witness]
address = "127.0.0.1:7450"
)";

Config Load(const std::string& overlay = "") {
  auto config = tandem::config::ParseConfig(testing::OverlayToml(kTwoHosts, overlay));
  EXPECT_TRUE(config.ok()) << config.status().ToString();
  return config.ok() ? *config : Config();
}

std::string Refusal(const std::string& overlay) {
  auto config = tandem::config::ParseConfig(testing::OverlayToml(kTwoHosts, overlay));
  return config.ok() ? "" : config.status().message();
}

TEST(RoleOptionsTest, ReturningFirstHostRejoinsAsStandbyWithItsOwnStateFilesAndAddresses) {
  const roles::PrimaryOptions primary = MakePrimaryOptions(Load());
  ASSERT_NE(primary.rejoin_as_standby, nullptr);
  const roles::StandbyOptions& rejoin = *primary.rejoin_as_standby;
  EXPECT_EQ(rejoin.state_dir, "/run/tandem/a");
  EXPECT_EQ(rejoin.replica_path, "/dev/shm/t/web1.primary.ram") << "its old RAM file is what a resync starts from";
  EXPECT_EQ(rejoin.vm.ram_path, rejoin.replica_path);
  EXPECT_EQ(rejoin.receive.listen_address, "127.0.0.1:7401");
  EXPECT_EQ(rejoin.heartbeat.node_name, "primary") << "the witness knows each host by one name";
  ASSERT_EQ(rejoin.heartbeat.links.size(), 1u);
  EXPECT_EQ(rejoin.heartbeat.links[0].local_address, "127.0.0.1:7101");
  EXPECT_GT(rejoin.heartbeat.promise_ms, 0) << "a standby promises not to seek promotion while it hears the primary";
  EXPECT_EQ(primary.heartbeat.promise_ms, 0);
  // Promoted later (failback), it re-protects to the second host.
  ASSERT_TRUE(rejoin.reprotect);
  EXPECT_EQ(rejoin.reprotect->ship.standby_address, "127.0.0.1:7400");
  EXPECT_EQ(rejoin.reprotect->epoch_ms, 40);
}

TEST(RoleOptionsTest, PromotedSecondHostReprotectsToTheFirstHostsReplicationAddress) {
  const roles::StandbyOptions standby = MakeStandbyOptions(Load());
  EXPECT_EQ(standby.state_dir, "/run/tandem/b");
  EXPECT_EQ(standby.replica_path, "/dev/shm/t/web1.replica");
  EXPECT_EQ(standby.receive.listen_address, "127.0.0.1:7400");
  EXPECT_EQ(standby.heartbeat.node_name, "standby");
  ASSERT_TRUE(standby.reprotect);
  EXPECT_EQ(standby.reprotect->ship.standby_address, "127.0.0.1:7401");
  EXPECT_EQ(standby.reprotect->ship.security.key, MakePrimaryOptions(Load()).ship.security.key);
}

TEST(RoleOptionsTest, WithoutPrimaryReplicationNeitherHostReprotects) {
  Config config = Load();
  config.primary_replication.clear();
  EXPECT_EQ(MakePrimaryOptions(config).rejoin_as_standby, nullptr);
  EXPECT_FALSE(MakeStandbyOptions(config).reprotect);
}

TEST(RoleOptionsTest, ReprotectionNeedsAWitnessItsOwnAddressAndNoDiskYet) {
  EXPECT_NE(Refusal("[witness]\naddress = \"\"\n").find("needs a [witness]"), std::string::npos)
      << Refusal("[witness]\naddress = \"\"\n");
  EXPECT_NE(Refusal("[primary]\nreplication = \"127.0.0.1:7400\"\n").find("must differ"), std::string::npos);
  EXPECT_NE(Refusal("[disk]\nimage = \"/d.raw\"\n").find("not supported with a [disk]"), std::string::npos);
}

TEST(RoleOptionsTest, EpochMsAutoGivesBothHostsAndTheirReprotectionTheSameLimits) {
  const Config config =
      Load("[vm]\nepoch_ms = \"auto\"\n[epoch]\nmin_ms = 20\nmax_ms = 300\nmax_paused_percent = 2.5\n"
           "max_output_latency_ms = 120\nmax_link_mib_s = 50\n");
  const roles::PrimaryOptions primary = MakePrimaryOptions(config);
  ASSERT_TRUE(primary.adaptive_epoch);
  EXPECT_EQ(primary.adaptive_epoch->min_ms, 20);
  EXPECT_EQ(primary.adaptive_epoch->max_ms, 300);
  EXPECT_EQ(primary.adaptive_epoch->start_ms, 50) << "epoch_ms's default, within the bounds";
  EXPECT_DOUBLE_EQ(primary.adaptive_epoch->max_paused_percent, 2.5);
  EXPECT_EQ(primary.adaptive_epoch->max_output_latency_ms, 120);
  EXPECT_EQ(primary.adaptive_epoch->max_link_bytes_per_s, 50u << 20);
  const roles::StandbyOptions standby = MakeStandbyOptions(config);
  ASSERT_TRUE(standby.reprotect && standby.reprotect->adaptive_epoch);
  EXPECT_EQ(standby.reprotect->adaptive_epoch->max_ms, 300);
  ASSERT_TRUE(primary.rejoin_as_standby->reprotect->adaptive_epoch);
  EXPECT_FALSE(MakePrimaryOptions(Load()).adaptive_epoch) << "a fixed epoch_ms";
}

}  // namespace
}  // namespace tandem::cli
