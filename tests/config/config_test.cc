#include "config/config.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "tests/support/temp_dir.h"
#include "tests/support/text_file.h"
#include "tests/support/toml_overlay.h"

namespace tandem::config {
namespace {

using testing::OverlayToml;

constexpr const char* kValid = R"(
# a comment
[vm]
name = "demo"
memory_mb = 32
kernel = "/opt/guest.elf"
append = "pages=128 rate=0"
epoch_ms = 40

[primary]
state_dir = "/tmp/p"
heartbeat = ["127.0.0.1:7101", "127.0.0.2:7101"]

[standby]
state_dir = "/tmp/s"
replication = "127.0.0.1:7400"
heartbeat = ["127.0.0.1:7201", "127.0.0.2:7201"]

[heartbeat]
psk = "a-secret-of-21-bytes!"
timeout_ms = 80
)";

std::string Message(const Result<Config>& config) { return config.ok() ? "" : config.status().message(); }

// kValid with `overlay`'s keys laid over it.
Result<Config> ParseValidWith(const std::string& overlay) { return ParseConfig(OverlayToml(kValid, overlay)); }

TEST(ConfigTest, ParsesEveryTable) {
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

// The example at the top of the repository, with its key file pointed at a real one.
std::string ExampleText(const testing::TempDir& dir) {
  std::ofstream(dir / "web1.key") << "  example-key-of-21-bytes\n";
  ::chmod((dir / "web1.key").c_str(), 0600);  // a key file others may read is refused
  std::string text = testing::ReadWholeFile(std::string(TANDEM_SOURCE_DIR) + "/tandem.example.toml");
  const std::string key_file = "\"/etc/tandem/web1.key\"";
  const size_t at = text.find(key_file);
  if (at != std::string::npos) text.replace(at, key_file.size(), "\"" + (dir / "web1.key") + "\"");
  return text;
}

TEST(ConfigTest, ExampleFileParses) {
  testing::TempDir dir;
  const std::string text = ExampleText(dir);
  ASSERT_FALSE(text.empty());
  auto config = ParseConfig(text, "tandem.example.toml");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->vm_name, "web1");
  EXPECT_EQ(config->memory_mb, 2048u);
  EXPECT_EQ(config->psk, "example-key-of-21-bytes") << "psk_file is read and trimmed";
  EXPECT_EQ(config->primary_heartbeat.size(), 2u);
  EXPECT_TRUE(config->nic);
  EXPECT_TRUE(config->HasWitness());
}

// Every key the parser accepts is in the example, set or commented out, under its own table.
TEST(ConfigTest, ExampleFileDocumentsEveryKey) {
  testing::TempDir dir;
  std::istringstream lines(ExampleText(dir));
  std::string line, table;
  std::vector<std::string> documented;
  while (std::getline(lines, line)) {
    if (line.rfind("[", 0) == 0) table = line.substr(1, line.find(']') - 1);
    std::string key = line.rfind("# ", 0) == 0 ? line.substr(2) : line;
    const size_t eq = key.find(" = ");
    if (eq != std::string::npos && key.find_first_of(" #") == eq) documented.push_back(table + "." + key.substr(0, eq));
  }
  for (const std::string& key : ConfigKeyNames()) {
    EXPECT_NE(std::find(documented.begin(), documented.end(), key), documented.end()) << key << " is not documented";
  }
}

TEST(ConfigTest, EpochMsIsAnIntegerOrAutoWithItsLimitsInTheEpochTable) {
  auto fixed = ParseValidWith("");
  ASSERT_TRUE(fixed.ok()) << fixed.status().ToString();
  EXPECT_FALSE(fixed->epoch_auto);
  auto automatic = ParseValidWith("[vm]\nepoch_ms = \"auto\"\n[epoch]\nmax_ms = 200\nmax_paused_percent = 0.5\n");
  ASSERT_TRUE(automatic.ok()) << automatic.status().ToString();
  EXPECT_TRUE(automatic->epoch_auto);
  EXPECT_EQ(automatic->epoch_min_ms, 10);
  EXPECT_EQ(automatic->epoch_max_ms, 200);
  EXPECT_DOUBLE_EQ(automatic->epoch_max_paused_percent, 0.5);
  EXPECT_NE(Message(ParseValidWith("[vm]\nepoch_ms = \"fast\"\n")).find("an integer in [1, 60000] ms or \"auto\""),
            std::string::npos)
      << Message(ParseValidWith("[vm]\nepoch_ms = \"fast\"\n"));
  EXPECT_NE(Message(ParseValidWith("[vm]\nepoch_ms = \"auto\"\n[epoch]\nmax_paused_percent = 0\n"))
                .find("out of range (0, 100] %"),
            std::string::npos);
  EXPECT_NE(Message(ParseValidWith("[vm]\nepoch_ms = \"auto\"\n[epoch]\nmin_ms = 300\nmax_ms = 200\n"))
                .find("epoch.min_ms is larger than epoch.max_ms"),
            std::string::npos);
}

TEST(ConfigTest, AnEpochLimitWithAFixedEpochMsIsRefusedAtItsLine) {
  auto config = ParseConfig("[vm]\nname = \"a\"\nkernel = \"/k\"\n[epoch]\n\nmax_ms = 200\n", "t.toml");
  EXPECT_NE(Message(config).find("t.toml:6:1: epoch.max_ms is a limit of epoch_ms = \"auto\""), std::string::npos)
      << Message(config);
}

TEST(ConfigTest, UnknownKeyIsRefusedWithFileLineAndTheKeysOfItsTable) {
  auto config = ParseConfig("[vm]\nname = \"a\"\nmemroy_mb = 64\n", "t.toml");
  EXPECT_NE(Message(config).find("t.toml:3:1: unknown key vm.memroy_mb"), std::string::npos) << Message(config);
  EXPECT_NE(Message(config).find("memory_mb, vcpus"), std::string::npos) << Message(config);
}

TEST(ConfigTest, UnknownTableIsRefusedWithFileLineAndTheTables) {
  auto config = ParseConfig("[vm]\nname = \"a\"\n\n[vms]\nname = \"b\"\n", "t.toml");
  EXPECT_NE(Message(config).find("t.toml:4:"), std::string::npos) << Message(config);
  EXPECT_NE(Message(config).find("unknown table [vms]"), std::string::npos) << Message(config);
  EXPECT_NE(Message(config).find("[vm], [epoch], [nic], [disk], [libvirt], [primary]"), std::string::npos) << Message(config);
  auto top = ParseConfig("name = \"a\"\n", "t.toml");
  EXPECT_NE(Message(top).find("t.toml:1:1: 'name' outside any table"), std::string::npos) << Message(top);
}

TEST(ConfigTest, WrongTypeIsRefusedWithFileLine) {
  auto number = ParseConfig("[vm]\nmemory_mb = \"32\"\n", "t.toml");
  EXPECT_NE(Message(number).find("t.toml:2:13: vm.memory_mb: expected an integer in [16, 1048576] MiB, not a string"),
            std::string::npos)
      << Message(number);
  // The INI way of writing a list is a string now, and refused as such.
  auto list = ParseConfig("[primary]\nheartbeat = \"127.0.0.1:7101, 127.0.0.2:7101\"\n", "t.toml");
  EXPECT_NE(Message(list).find("t.toml:2:13: primary.heartbeat: expected an array of strings"), std::string::npos)
      << Message(list);
  auto item = ParseConfig("[vm]\nqemu_extra = [\"-rtc\", 7]\n", "t.toml");
  EXPECT_NE(Message(item).find("t.toml:2:14: vm.qemu_extra: item 2: expected an array of strings, not an integer"),
            std::string::npos)
      << Message(item);
  auto boolean = ParseConfig("[vm]\nallow_unprotected_devices = \"yes\"\n", "t.toml");
  EXPECT_NE(Message(boolean).find("t.toml:2:29: vm.allow_unprotected_devices: expected true or false"),
            std::string::npos)
      << Message(boolean);
}

TEST(ConfigTest, OutOfRangeIsRefusedWithFileLineAndTheRange) {
  auto config = ParseConfig("[vm]\nmemory_mb = 1\n", "t.toml");
  EXPECT_NE(Message(config).find("t.toml:2:13: vm.memory_mb: 1 is out of range [16, 1048576] MiB"), std::string::npos)
      << Message(config);
  EXPECT_FALSE(ParseValidWith("[replication]\nlz4_acceleration = 0\n").ok());
}

TEST(ConfigTest, UnknownEnumValuesAreRefusedWithFileLineAndTheWordsAllowed) {
  const std::pair<const char*, const char*> bad[] = {
      {"[replication]\nio_engine = \"uring\"\n", "t.toml:2:13: replication.io_engine: must be \"auto\", \"io_uring\""},
      {"[replication]\ncompression = \"gzip\"\n", "t.toml:2:15: replication.compression: must be \"auto\", \"lz4\""},
      {"[witness]\ntwo_host_policy = \"maybe\"\n", "t.toml:2:19: witness.two_host_policy: must be \"never-promote\""},
      {"[vm]\non_guest_crash = \"failover\"\n", "t.toml:2:18: vm.on_guest_crash: must be \"report\" or \"reset\""},
      {"[vm]\naccel = \"hvf\"\n", "t.toml:2:9: vm.accel: must be one of \"kvm\", \"tcg\", not \"hvf\""},
      {"[nic]\nwhen_unprotected = \"drop\"\n", "t.toml:2:20: nic.when_unprotected: must be \"release\" or \"hold\""}};
  for (const auto& [text, expected] : bad) {
    auto config = ParseConfig(text, "t.toml");
    EXPECT_NE(Message(config).find(expected), std::string::npos) << Message(config);
  }
  auto ok = ParseValidWith(
      "[replication]\nio_engine = \"epoll\"\ncompression = \"zstd\"\nzstd_level = 3\napply_threads = 2\n");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->io_engine, replicator::IoEngine::kPoll);
  EXPECT_EQ(ok->compression, replicator::Compression::kZstd);
  EXPECT_FALSE(ok->compression_auto);
  EXPECT_EQ(ok->zstd_level, 3);
  EXPECT_EQ(ok->apply_threads, 2);
}

TEST(ConfigTest, DuplicateKeyIsRefusedWithFileLine) {
  auto config = ParseConfig("[vm]\nname = \"a\"\nname = \"b\"\n", "t.toml");
  EXPECT_NE(Message(config).find("t.toml:3:"), std::string::npos) << Message(config);
  EXPECT_EQ(Message(config).find("INI"), std::string::npos) << "valid-looking TOML gets no INI note";
  auto table = ParseConfig("[vm]\nname = \"a\"\n[vm]\nvcpus = 2\n", "t.toml");
  EXPECT_NE(Message(table).find("t.toml:3:"), std::string::npos) << Message(table);
}

TEST(ConfigTest, TomlSyntaxErrorIsRefusedWithFileLine) {
  auto config = ParseConfig("[vm]\nname = \"a\nvcpus = 2\n", "t.toml");
  EXPECT_NE(Message(config).find("t.toml:2:"), std::string::npos) << Message(config);
}

TEST(ConfigTest, OldIniFileIsRefusedWithAConversionNote) {
  auto config = ParseConfig("# web1\n[vm]\nname = web1\nmemory_mb = 32\n", "/etc/tandem/web1.conf");
  ASSERT_FALSE(config.ok());
  EXPECT_NE(Message(config).find("/etc/tandem/web1.conf:3:"), std::string::npos) << Message(config);
  EXPECT_NE(Message(config).find("INI format"), std::string::npos) << Message(config);
  EXPECT_NE(Message(config).find("heartbeat = [\""), std::string::npos) << Message(config);
  EXPECT_EQ(Message(config).find('\n'), std::string::npos) << "one line";
  EXPECT_NE(Message(ParseConfig("[vm]\nqemu_extra =\n")).find("INI format"), std::string::npos);
  EXPECT_NE(Message(ParseConfig("[vm] ; old comment\n")).find("INI format"), std::string::npos);
}

TEST(ConfigTest, EveryBadKeyOfTheFileIsReportedInFileOrder) {
  auto config = ParseConfig("[witness]\nlease_ms = 1\n[vm]\nmemory_mb = 1\nvcpus = 0\n", "t.toml");
  const std::string message = Message(config);
  const size_t lease = message.find("t.toml:2:"), memory = message.find("t.toml:4:"), vcpus = message.find("t.toml:5:");
  ASSERT_NE(lease, std::string::npos) << message;
  ASSERT_NE(memory, std::string::npos) << message;
  ASSERT_NE(vcpus, std::string::npos) << message;
  EXPECT_LT(lease, memory);
  EXPECT_LT(memory, vcpus);
}

TEST(ConfigTest, KeysThatMustAgreeAreRefusedAtTheKey) {
  auto config = ParseConfig(std::string(kValid) + "interval_ms = 80\n", "t.toml");  // into [heartbeat], line 22
  EXPECT_NE(Message(config).find("t.toml:21:1: heartbeat.timeout_ms must be larger than heartbeat.interval_ms"),
            std::string::npos)
      << Message(config);
}

TEST(ConfigTest, OldReplicaDirKeyPointsToMemoryDir) {
  auto config = ParseValidWith("[standby]\nreplica_dir = \"/dev/shm\"\n");
  EXPECT_NE(Message(config).find("memory_dir"), std::string::npos) << Message(config);
}

TEST(ConfigTest, RelativeMemoryDirIsRejected) {
  auto config = ParseValidWith("[vm]\nmemory_dir = \"shm/tandem\"\n");
  EXPECT_NE(Message(config).find("vm.memory_dir"), std::string::npos) << Message(config);
}

TEST(ConfigTest, MismatchedHeartbeatLinksAreRejected) {
  auto config = ParseValidWith("[standby]\nheartbeat = [\"127.0.0.1:7201\"]\n");
  EXPECT_NE(Message(config).find("same number"), std::string::npos) << Message(config);
}

TEST(ConfigTest, MissingPreSharedKeyIsRejected) {
  std::string text = kValid;
  text.replace(text.find("psk = \"a-secret-of-21-bytes!\""), 29, "");
  auto config = ParseConfig(text);
  EXPECT_NE(Message(config).find("psk"), std::string::npos) << Message(config);
}

TEST(ConfigTest, CompressionIsAutoUnlessTheOperatorFixesIt) {
  auto defaults = ParseConfig(kValid);
  ASSERT_TRUE(defaults.ok()) << defaults.status().ToString();
  EXPECT_TRUE(defaults->compression_auto);
  EXPECT_EQ(defaults->two_host_policy, heartbeat::TwoHostPolicy::kNeverPromote);
  EXPECT_FALSE(defaults->reset_guest_on_crash);
  auto fixed = ParseValidWith("[replication]\ncompression = \"lz4\"\nlz4_acceleration = 64\n");
  ASSERT_TRUE(fixed.ok()) << fixed.status().ToString();
  EXPECT_FALSE(fixed->compression_auto);
  EXPECT_EQ(fixed->compression, replicator::Compression::kLz4);
  EXPECT_EQ(fixed->lz4_acceleration, 64);
}

TEST(ConfigTest, NicTableGivesTheVmAHeldNic) {
  auto config = ParseValidWith(
      "[nic]\nmac = \"52:54:00:12:34:56\"\ntap = \"tdweb1\"\nbridge = \"br0\"\nhold_max_kib = 8192\n"
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

TEST(ConfigTest, LibvirtDomainMakesThePrimarysVmThatDomain) {
  auto config = ParseValidWith("[libvirt]\ndomain = \"web1\"\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_TRUE(config->Libvirt());
  EXPECT_EQ(config->libvirt_domain, "web1");
  EXPECT_EQ(config->libvirt_uri, "qemu:///system");
  EXPECT_FALSE(ParseConfig(kValid)->Libvirt()) << "no [libvirt]: tandem spawns QEMU";
  auto empty = ParseValidWith("[libvirt]\nuri = \"qemu:///session\"\n");
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->Libvirt()) << "no domain named: no libvirt (the example's [libvirt] has none)";
  EXPECT_NE(Message(ParseValidWith("[libvirt]\ndomain = \"web1\"\nuri = \"\"\n")).find("libvirt.uri"),
            std::string::npos);
  EXPECT_NE(Message(ParseValidWith("[libvirt]\ndomian = \"web1\"\n")).find("unknown key libvirt.domian"),
            std::string::npos);
}

TEST(ConfigTest, NicWhenUnprotectedIsReleaseOrHold) {
  auto hold = ParseValidWith("[nic]\nmac = \"52:54:00:12:34:56\"\ntap = \"t0\"\nwhen_unprotected = \"hold\"\n");
  ASSERT_TRUE(hold.ok()) << hold.status().ToString();
  EXPECT_FALSE(hold->release_when_unprotected);
}

TEST(ConfigTest, NicNeedsAUnicastMacAndATap) {
  EXPECT_NE(Message(ParseValidWith("[nic]\ntap = \"t0\"\n")).find("nic.mac"), std::string::npos);
  EXPECT_NE(Message(ParseValidWith("[nic]\n")).find("nic.mac"), std::string::npos) << "an empty [nic] is a NIC";
  EXPECT_NE(Message(ParseValidWith("[nic]\nmac = \"52:54:00:12:34:56\"\n")).find("nic.tap"), std::string::npos);
  EXPECT_NE(Message(ParseValidWith("[nic]\nmac = \"01:00:5e:00:00:01\"\ntap = \"t0\"\n")).find("multicast"),
            std::string::npos);
  EXPECT_NE(Message(ParseValidWith("[nic]\nmac = \"52:54:00\"\ntap = \"t0\"\n")).find("52:54:00"),
            std::string::npos);
}

TEST(ConfigTest, DiskSectionGivesTheVmARawDiskServedByTandem) {
  auto config = ParseConfig(std::string(kValid) + "\n[disk]\nimage = \"/var/lib/tandem/web1.raw\"\nmax_epoch_mib = 128\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_TRUE(config->disk);
  EXPECT_EQ(config->disk_image, "/var/lib/tandem/web1.raw");
  EXPECT_EQ(config->disk_max_epoch_mib, 128u);
  EXPECT_FALSE(ParseConfig(kValid)->disk) << "no [disk]: no disk";
  EXPECT_NE(Message(ParseConfig(std::string(kValid) + "\n[disk]\nimage = \"/d.qcow2\"\nformat = \"qcow2\"\n")).find("raw"),
            std::string::npos);
  EXPECT_NE(Message(ParseConfig(std::string(kValid) + "\n[disk]\nformat = \"raw\"\n")).find("disk.image"),
            std::string::npos);
}

// qemu_extra as a TOML array: one string per QEMU argument.
std::string QemuExtra(const std::string& words) {
  std::string array;
  std::istringstream in(words);
  for (std::string word; in >> word;) array += (array.empty() ? "\"" : ", \"") + word + "\"";
  return "[vm]\nqemu_extra = [" + array + "]\n";
}

TEST(ConfigTest, QemuExtraDisksAreRefusedNamingTheOption) {
  for (const char* extra : {"-drive file=/d.img,if=virtio", "-blockdev driver=file,filename=/d", "-hda /d.img",
                            "--drive file=/d.img", "-device virtio-blk-pci,drive=d0", "-device driver=nvme,serial=1"}) {
    auto config = ParseValidWith(QemuExtra(extra));
    ASSERT_FALSE(config.ok()) << extra;
    EXPECT_NE(Message(config).find("[disk]"), std::string::npos) << Message(config);
    EXPECT_NE(Message(config).find(std::string(extra).substr(0, std::string(extra).find(' '))), std::string::npos)
        << Message(config);
    EXPECT_NE(Message(config).find("allow_unprotected_devices"), std::string::npos) << Message(config);
  }
}

TEST(ConfigTest, QemuExtraNicsAreRefusedPointingToTheNicTable) {
  for (const char* extra : {"-netdev user,id=u0", "-nic user", "-net nic", "-device e1000,netdev=u0",
                            "-device virtio-net-pci,netdev=u0"}) {
    auto config = ParseValidWith(QemuExtra(extra));
    ASSERT_FALSE(config.ok()) << extra;
    EXPECT_NE(Message(config).find("[nic]"), std::string::npos) << Message(config);
  }
}

TEST(ConfigTest, QemuExtraChardevsAndSerialPortsAreRefused) {
  for (const char* extra : {"-chardev socket,id=c0,path=/x", "-serial stdio"}) {
    auto config = ParseValidWith(QemuExtra(extra));
    ASSERT_FALSE(config.ok()) << extra;
    EXPECT_NE(Message(config).find("console"), std::string::npos) << Message(config);
  }
}

TEST(ConfigTest, QemuExtraMonitorsAndHarmlessDevicesStayAllowed) {
  auto config =
      ParseValidWith(QemuExtra("-qmp unix:observer.qmp,server=on,wait=off -rtc base=utc -device virtio-rng-pci"));
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  EXPECT_EQ(config->qemu_extra.size(), 6u);
  EXPECT_TRUE(config->unprotected_devices.empty());
}

TEST(ConfigTest, AllowUnprotectedDevicesAcceptsThemAndListsThem) {
  auto config = ParseValidWith(QemuExtra("-drive file=/d.img -rtc base=utc") + "allow_unprotected_devices = true\n");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  ASSERT_EQ(config->unprotected_devices.size(), 1u);
  EXPECT_NE(config->unprotected_devices[0].find("-drive file=/d.img"), std::string::npos);
}

TEST(ConfigTest, MetricsEndpointIsOffUnlessAnAddressIsSet) {
  auto off = ParseConfig(kValid);
  ASSERT_TRUE(off.ok()) << off.status().ToString();
  EXPECT_EQ(off->MetricsAddress(true), "");
  EXPECT_EQ(off->MetricsAddress(false), "");
}

TEST(ConfigTest, MetricsAddressServesEveryRoleUnlessARoleHasItsOwn) {
  auto both = ParseValidWith("[metrics]\naddress = \"127.0.0.1:9464\"\n");
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  EXPECT_EQ(both->MetricsAddress(true), "127.0.0.1:9464");
  EXPECT_EQ(both->MetricsAddress(false), "127.0.0.1:9464");
  auto own = ParseValidWith("[metrics]\naddress = \":9464\"\nstandby_address = \"[::1]:9465\"\n");
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ(own->MetricsAddress(true), ":9464");
  EXPECT_EQ(own->MetricsAddress(false), "[::1]:9465");
}

TEST(ConfigTest, BadMetricsAddressIsRefusedWithFileLine) {
  for (const char* bad : {"localhost:9464", "127.0.0.1", "unix:/run/m.sock", "127.0.0.1:0", "127.0.0.1:99999"}) {
    auto config = ParseConfig(OverlayToml(kValid, std::string("[metrics]\naddress = \"") + bad + "\"\n"), "t.toml");
    EXPECT_FALSE(config.ok()) << bad;
    EXPECT_NE(Message(config).find("t.toml:"), std::string::npos) << Message(config);
    EXPECT_NE(Message(config).find("metrics.address: "), std::string::npos) << Message(config);
  }
  auto type = ParseConfig(OverlayToml(kValid, "[metrics]\nprimary_address = 9464\n"), "t.toml");
  EXPECT_NE(Message(type).find("metrics.primary_address: expected a string"), std::string::npos) << Message(type);
}

}  // namespace
}  // namespace tandem::config
