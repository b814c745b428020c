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


std::string Message(const Result<Config>& config) { return config.ok() ? "" : config.status().message(); }

TEST(ConfigTest, NicSectionGivesTheVmAHeldNic) {
  auto config = ParseConfig(std::string(kValid) +
                            "\n[nic]\nmac = 52:54:00:12:34:56\ntap = tdweb1\nbridge = br0\nhold_max_kib = 8192\n"
                            "hold_max_frames = 100\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_TRUE(config->nic);
  EXPECT_EQ(config->nic_mac, "52:54:00:12:34:56");
  EXPECT_EQ(config->nic_tap, "tdweb1");
  EXPECT_EQ(config->nic_bridge, "br0");
  EXPECT_EQ(config->nic_hold_max_kib, 8192u);
  EXPECT_EQ(config->nic_hold_max_frames, 100u);
  EXPECT_TRUE(config->release_when_unprotected) << "default: like Remus/VMware FT, run unprotected";
  EXPECT_FALSE(ParseConfig(kValid)->nic) << "no [nic]: no NIC";
}

TEST(ConfigTest, NicWhenUnprotectedIsReleaseOrHold) {
  auto hold = ParseConfig(std::string(kValid) + "\n[nic]\nmac = 52:54:00:12:34:56\ntap = t0\nwhen_unprotected = hold\n");
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_FALSE(hold->release_when_unprotected);
  auto bad = ParseConfig(std::string(kValid) + "\n[nic]\nmac = 52:54:00:12:34:56\ntap = t0\nwhen_unprotected = drop\n");
  EXPECT_NE(Message(bad).find("release or hold"), std::string::npos) << Message(bad);
}

TEST(ConfigTest, NicNeedsAUnicastMacAndATap) {
  EXPECT_NE(Message(ParseConfig(std::string(kValid) + "\n[nic]\ntap = t0\n")).find("nic.mac"), std::string::npos);
  EXPECT_NE(Message(ParseConfig(std::string(kValid) + "\n[nic]\nmac = 52:54:00:12:34:56\n")).find("nic.tap"),
            std::string::npos);
  EXPECT_NE(Message(ParseConfig(std::string(kValid) + "\n[nic]\nmac = 01:00:5e:00:00:01\ntap = t0\n"))
                .find("multicast"),
            std::string::npos);
  EXPECT_NE(Message(ParseConfig(std::string(kValid) + "\n[nic]\nmac = 52:54:00\ntap = t0\n")).find("52:54:00"),
            std::string::npos);
}

TEST(ConfigTest, DiskSectionGivesTheVmARawDiskServedByTandem) {
  auto config = ParseConfig(std::string(kValid) + "\n[disk]\nimage = /var/lib/tandem/web1.raw\nmax_epoch_mib = 128\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_TRUE(config->disk);
  EXPECT_EQ(config->disk_image, "/var/lib/tandem/web1.raw");
  EXPECT_EQ(config->disk_max_epoch_mib, 128u);
  EXPECT_FALSE(ParseConfig(kValid)->disk) << "no [disk]: no disk";
  EXPECT_NE(Message(ParseConfig(std::string(kValid) + "\n[disk]\nimage = /d.qcow2\nformat = qcow2\n")).find("raw"),
            std::string::npos);
  EXPECT_NE(Message(ParseConfig(std::string(kValid) + "\n[disk]\nformat = raw\n")).find("disk.image"),
            std::string::npos);
}

TEST(ConfigTest, QemuExtraDisksAreRefusedNamingTheOption) {
  for (const char* extra : {"-drive file=/d.img,if=virtio", "-blockdev driver=file,filename=/d", "-hda /d.img",
                            "--drive file=/d.img", "-device virtio-blk-pci,drive=d0", "-device driver=nvme,serial=1"}) {
    auto config = ParseConfig(std::string(kValid) + "\n[vm]\nqemu_extra = " + extra + "\n");
    ASSERT_FALSE(config.ok()) << extra;
    EXPECT_NE(Message(config).find("[disk]"), std::string::npos) << Message(config);
    EXPECT_NE(Message(config).find(std::string(extra).substr(0, std::string(extra).find(' '))), std::string::npos)
        << Message(config);
    EXPECT_NE(Message(config).find("allow_unprotected_devices"), std::string::npos) << Message(config);
  }
}

TEST(ConfigTest, QemuExtraNicsAreRefusedPointingToTheNicSection) {
  for (const char* extra : {"-netdev user,id=u0", "-nic user", "-net nic", "-device e1000,netdev=u0",
                            "-device virtio-net-pci,netdev=u0"}) {
    auto config = ParseConfig(std::string(kValid) + "\n[vm]\nqemu_extra = " + extra + "\n");
    ASSERT_FALSE(config.ok()) << extra;
    EXPECT_NE(Message(config).find("[nic]"), std::string::npos) << Message(config);
  }
}

TEST(ConfigTest, QemuExtraChardevsAndSerialPortsAreRefused) {
  for (const char* extra : {"-chardev socket,id=c0,path=/x", "-serial stdio"}) {
    auto config = ParseConfig(std::string(kValid) + "\n[vm]\nqemu_extra = " + extra + "\n");
    ASSERT_FALSE(config.ok()) << extra;
    EXPECT_NE(Message(config).find("console"), std::string::npos) << Message(config);
  }
}

TEST(ConfigTest, QemuExtraMonitorsAndHarmlessDevicesStayAllowed) {
  auto config = ParseConfig(std::string(kValid) +
                            "\n[vm]\nqemu_extra = -qmp unix:observer.qmp,server=on,wait=off -rtc base=utc "
                            "-device virtio-rng-pci\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_TRUE(config->unprotected_devices.empty());
}

TEST(ConfigTest, AllowUnprotectedDevicesAcceptsThemAndListsThem) {
  auto config = ParseConfig(std::string(kValid) +
                            "\n[vm]\nallow_unprotected_devices = true\nqemu_extra = -drive file=/d.img -rtc base=utc\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->unprotected_devices.size(), 1u);
  EXPECT_NE(config->unprotected_devices[0].find("-drive file=/d.img"), std::string::npos);
}

}  // namespace
}  // namespace tandem::cli
