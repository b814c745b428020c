#include "cli/config.h"

#include <gtest/gtest.h>

namespace tandem::cli {
namespace {

constexpr const char* kValid = R"(
# a comment
[vm]
name = demo
memory_mb = 32
kernel = /opt/guest.elf
append = pages=128 rate=0
epoch_ms = 40

[primary]
state_dir = /tmp/p
heartbeat = 127.0.0.1:7101, 127.0.0.2:7101

[standby]
state_dir = /tmp/s
replication = 127.0.0.1:7400
heartbeat = 127.0.0.1:7201,127.0.0.2:7201

[heartbeat]
psk = secret
timeout_ms = 80
)";

TEST(ConfigTest, ParsesEverySection) {
  auto config = ParseConfig(kValid);
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->vm_name, "demo");
  EXPECT_EQ(config->memory_mb, 32u);
  EXPECT_EQ(config->append, "pages=128 rate=0");
  EXPECT_EQ(config->epoch_ms, 40);
  ASSERT_EQ(config->primary_heartbeat.size(), 2u);
  EXPECT_EQ(config->primary_heartbeat[1], "127.0.0.2:7101");
  EXPECT_EQ(config->standby_heartbeat[1], "127.0.0.2:7201");
  EXPECT_EQ(config->heartbeat_timeout_ms, 80);
  EXPECT_EQ(config->PrimaryRamPath(), "/dev/shm/tandem/demo.primary.ram");
  EXPECT_EQ(config->ReplicaPath(), "/dev/shm/tandem/demo.replica");
}

TEST(ConfigTest, OldReplicaDirKeyPointsToMemoryDir) {
  auto config = ParseConfig(std::string(kValid) + "\n[standby]\nreplica_dir = /dev/shm\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("memory_dir"), std::string::npos) << config.status().ToString();
}

TEST(ConfigTest, RelativeMemoryDirIsRejected) {
  auto config = ParseConfig(std::string(kValid) + "\n[vm]\nmemory_dir = shm/tandem\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("vm.memory_dir"), std::string::npos) << config.status().ToString();
}

TEST(ConfigTest, UnknownKeyIsAnErrorWithItsLine) {
  auto config = ParseConfig(std::string(kValid) + "\n[vm]\nmemroy_mb = 64\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("vm.memroy_mb"), std::string::npos) << config.status().ToString();
  EXPECT_NE(config.status().message().find("line 24"), std::string::npos) << config.status().ToString();
}

TEST(ConfigTest, OutOfRangeNumberIsRejected) {
  auto config = ParseConfig(std::string(kValid) + "\n[vm]\nmemory_mb = 1\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("out of range"), std::string::npos);
}

TEST(ConfigTest, MismatchedHeartbeatLinksAreRejected) {
  auto config = ParseConfig(std::string(kValid) + "\n[standby]\nheartbeat = 127.0.0.1:7201\n");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("same number"), std::string::npos);
}

TEST(ConfigTest, MissingPreSharedKeyIsRejected) {
  std::string text = kValid;
  text.replace(text.find("psk = secret"), 12, "");
  auto config = ParseConfig(text);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("psk"), std::string::npos);
}

TEST(ConfigTest, TimeoutNotAboveIntervalIsRejected) {
  auto config = ParseConfig(std::string(kValid) + "\n[heartbeat]\ninterval_ms = 80\n");
  ASSERT_FALSE(config.ok());
}

TEST(ConfigTest, UnknownEnumValuesAreRejectedNotGuessed) {
  const std::pair<const char*, const char*> bad[] = {{"[replication]\nio_engine = uring\n", "replication.io_engine"},
                                                      {"[replication]\ncompression = gzip\n", "replication.compression"},
                                                      {"[witness]\ntwo_host_policy = maybe\n", "witness.two_host_policy"},
                                                      {"[vm]\non_guest_crash = failover\n", "vm.on_guest_crash"}};
  for (const auto& [extra, key] : bad) {
    auto c = ParseConfig(std::string(kValid) + extra);
    ASSERT_FALSE(c.ok()) << extra;
    // The error names the key, so the operator knows which line to fix.
    EXPECT_NE(c.status().ToString().find(key), std::string::npos) << c.status().ToString();
  }
  auto ok = ParseConfig(std::string(kValid) +
                        "[replication]\nio_engine = epoll\ncompression = zstd\nzstd_level = 3\napply_threads = 2\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->io_engine, replicator::IoEngine::kPoll);
  EXPECT_EQ(ok->compression, replicator::Compression::kZstd);
  EXPECT_FALSE(ok->compression_auto);
  EXPECT_EQ(ok->zstd_level, 3);
  EXPECT_EQ(ok->apply_threads, 2);
}

TEST(ConfigTest, CompressionIsAutoUnlessTheOperatorFixesIt) {
  auto defaults = ParseConfig(kValid);
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_TRUE(defaults->compression_auto);
  EXPECT_EQ(defaults->two_host_policy, heartbeat::TwoHostPolicy::kNeverPromote);
  EXPECT_FALSE(defaults->reset_guest_on_crash);
  auto fixed = ParseConfig(std::string(kValid) + "[replication]\ncompression = lz4\nlz4_acceleration = 64\n");
  ASSERT_TRUE(fixed.ok()) << fixed.status().ToString();
  EXPECT_FALSE(fixed->compression_auto);
  EXPECT_EQ(fixed->compression, replicator::Compression::kLz4);
  EXPECT_EQ(fixed->lz4_acceleration, 64);
  EXPECT_FALSE(ParseConfig(std::string(kValid) + "[replication]\nlz4_acceleration = 0\n").ok());
}

}  // namespace
}  // namespace tandem::cli
