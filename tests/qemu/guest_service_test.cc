// The test guest's request service on real QEMU 7.2: virtio-net on the netdev tandem will own (`-netdev dgram`
// over unix datagram sockets, one Ethernet frame per datagram; this test plays the network) and virtio-blk on a
// raw image. Requests are counted 1, 2, 3...; each is on the disk before its reply; after a kill the guest
// resumes from the disk; a damaged or lost record is reported. Runs under KVM when usable, else TCG.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "common/fd.h"
#include "disk/block_device.h"
#include "disk/disk_writes.h"
#include "disk/nbd_server.h"
#include "disk/write_log.h"
#include "qemu-integration/qemu_args.h"
#include "qemu-integration/qemu_process.h"
#include "tests/guest/guest_image.h"
#include "tests/guest/guest_layout.h"
#include "tests/qemu/qemu_test_util.h"
#include "tests/support/frame_link.h"

namespace tandem::qemu {
namespace {

using testing::ReadFileOrEmpty;
using testing::TempDir;
using testing::WaitUntil;
using namespace ::tandem::testing::net;

const MacAddr kGuestMac = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
const Endpoint kHost{{0x02, 0, 0, 0, 0, 0x01}, Ipv4Addr{0x0a000001}, 40000};  // 10.0.0.1
const Ipv4Addr kGuestIp{0x0a000002};                                           // 10.0.0.2
constexpr uint16_t kGuestPort = 7;
constexpr uint32_t kDiskSectors = 2048;  // 1 MiB
constexpr int kBootMs = 60000;           // firmware + boot under TCG on a busy 2-core host
constexpr int kReplyMs = 10000;

// Why this test cannot run here ("" when it can).
std::string UnavailableReason() {
  static const std::string reason = [] {
    auto binary = FindQemuBinary();
    if (!binary.ok()) return "no QEMU: " + binary.status().ToString();
    if (::access(testing::TestGuestPath().c_str(), R_OK) != 0) return "test guest not built: " + testing::TestGuestPath();
    std::string out;
    if (FILE* p = ::popen((*binary + " -netdev help 2>&1").c_str(), "r")) {
      char buf[256];
      while (std::fgets(buf, sizeof buf, p)) out += buf;
      ::pclose(p);
    }
    if (out.find("\ndgram") == std::string::npos) return *binary + " has no dgram netdev (needs QEMU >= 7.2)";
    return std::string();
  }();
  return reason;
}

#define REQUIRE_SERVICE_QEMU() TANDEM_SKIP_UNLESS_AVAILABLE(UnavailableReason(), "")

// KVM when it runs the test guest here (the checkpoint path needs it), else TCG; said once in the test log.
std::string Accel() {
  static const std::string accel = [] {
    const std::string why = testing::KvmUnusableReason();
    std::fprintf(stderr, "guest service tests run under %s%s%s\n", why.empty() ? "KVM" : "TCG",
                 why.empty() ? "" : ": ", why.c_str());
    return why.empty() ? "kvm" : "tcg";
  }();
  return accel;
}

void MakeDisk(const std::string& path, uint32_t sectors = kDiskSectors) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::ftruncate(fd.get(), off_t{sectors} * TANDEM_GUEST_SECTOR_SIZE), 0);
}

std::vector<uint32_t> ReadSector(const std::string& disk, uint32_t k) {
  std::vector<uint32_t> words(TANDEM_GUEST_SECTOR_SIZE / 4);
  UniqueFd fd(::open(disk.c_str(), O_RDONLY | O_CLOEXEC));
  EXPECT_EQ(::pread(fd.get(), words.data(), TANDEM_GUEST_SECTOR_SIZE, off_t{k} * TANDEM_GUEST_SECTOR_SIZE),
            ssize_t{TANDEM_GUEST_SECTOR_SIZE});
  return words;
}

void WriteSector(const std::string& disk, uint32_t k, const std::vector<uint32_t>& words) {
  UniqueFd fd(::open(disk.c_str(), O_WRONLY | O_CLOEXEC));
  ASSERT_EQ(::pwrite(fd.get(), words.data(), TANDEM_GUEST_SECTOR_SIZE, off_t{k} * TANDEM_GUEST_SECTOR_SIZE),
            ssize_t{TANDEM_GUEST_SECTOR_SIZE});
}

// Sector k holds the guest's record of request k (guest_layout.h).
bool HoldsRecord(const std::vector<uint32_t>& s, uint32_t k) {
  return s[TANDEM_GUEST_REC_W_MAGIC] == TANDEM_GUEST_REC_MAGIC && s[TANDEM_GUEST_REC_W_VALUE] == k &&
         s[TANDEM_GUEST_REC_W_CHECK] == tandem_guest_rec_check(k) && s[TANDEM_GUEST_REC_W_TAIL] == k;
}

// The test guest with a NIC on a dgram netdev whose other end is this test, and (optionally) a disk.
class ServiceGuest {
 public:
  ServiceGuest(const TempDir& dir, const std::string& tag, const std::string& disk, bool nic = true)
      : vm_(testing::TestGuestVm(dir.path(), tag, Accel(), 32, "pages=256 ip=10.0.0.2 port=7")) {
    const std::string qemu_sock = dir / (tag + ".qemu.sock"), our_sock = dir / (tag + ".test.sock");
    if (nic) {
      vm_.extra_args = {"-netdev", "dgram,id=n0,local.type=unix,local.path=" + qemu_sock +
                                       ",remote.type=unix,remote.path=" + our_sock,
                        "-device", "virtio-net-pci,netdev=n0,disable-modern=on,romfile=,mac=" + FormatMac(kGuestMac)};
      auto link = UnixDgramLink::Open(our_sock, qemu_sock);
      EXPECT_TRUE(link.ok()) << link.status().ToString();
      if (link.ok()) {
        link_ = std::move(*link);
        peer_ = std::make_unique<NetPeer>(*link_, kHost);
      }
    }
    if (!disk.empty())
      vm_.extra_args.insert(vm_.extra_args.end(),
                            {"-drive", "file=" + disk + ",format=raw,if=none,id=d0", "-device",
                             "virtio-blk-pci,drive=d0,disable-modern=on"});
    log_ = dir / (tag + ".qemu.log");
  }

  // Starts QEMU and waits until the guest's service runs (its first "reqs=" status line).
  void Start() {
    ::unlink(vm_.serial_log.c_str());
    std::vector<std::string> args = BuildQemuArgs(vm_, QemuRole::kPrimary);
    auto binary = FindQemuBinary();
    ASSERT_TRUE(binary.ok());
    args.insert(args.begin(), *binary);
    auto p = QemuProcess::Spawn(args, log_);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    process_ = std::move(*p);
    ASSERT_TRUE(WaitUntil(kBootMs, [&] { return Serial().find("\nreqs=") != std::string::npos || !process_->Running(); }))
        << "no service status line within " << kBootMs << " ms (" << vm_.accel << ")\n" << Diagnostics();
    ASSERT_TRUE(process_->Running()) << "QEMU exited\n" << Diagnostics();
  }

  // The guest's MAC through ARP; then "req id=<token>" and the reply's text.
  Result<std::string> Request(const std::string& token) {
    if (!peer_) return Status::Aborted("no link to the guest's NIC");
    if (!guest_mac_) {
      TANDEM_ASSIGN_OR_RETURN(MacAddr mac, peer_->Resolve(kGuestIp, kReplyMs));
      guest_mac_ = mac;
    }
    TANDEM_ASSIGN_OR_RETURN(UdpDatagram reply,
                            peer_->Exchange({*guest_mac_, kGuestIp, kGuestPort}, "req id=" + token, kReplyMs));
    return std::string(reply.text());
  }

  // Requests from..to, each with id <prefix><i>, must be answered "reply=<i> id=<prefix><i>" in order; with a
  // disk image, record i must be in it once its reply arrived (the reply leaves after the write completed).
  void ExpectCounted(uint32_t from, uint32_t to, const std::string& prefix, const std::string& disk = "") {
    for (uint32_t i = from; i <= to; ++i) {
      const std::string id = prefix + std::to_string(i);
      auto reply = Request(id);
      ASSERT_TRUE(reply.ok()) << reply.status().ToString() << "\n" << Diagnostics();
      EXPECT_EQ(*reply, "reply=" + std::to_string(i) + " id=" + id + "\n");
      if (!disk.empty()) {
        EXPECT_TRUE(HoldsRecord(ReadSector(disk, i), i)) << "no record " << i << " after its reply";
      }
    }
  }

  // Waits for a complete serial line equal to `line`.
  bool WaitForLine(const std::string& line, int timeout_ms) {
    return WaitUntil(timeout_ms, [&] { return Serial().find("\n" + line + "\n") != std::string::npos; });
  }

  void Kill() { process_.reset(); }  // SIGKILL and reap

  // SIGSTOP, returning once every QEMU thread has stopped. kill() returns before the group stop completes: a
  // vCPU that runs on while the RAM file is read makes the image a mix of two instants (the RAM check then
  // finds a page of round c + 1 after pages of round c). The parent sees the child stopped only once all its
  // threads are; WNOWAIT leaves that state (and an exit) for QemuProcess to reap.
  void Freeze() {
    ASSERT_TRUE(process_->Signal(SIGSTOP).ok());
    siginfo_t info{};
    ASSERT_EQ(::waitid(P_PID, id_t(pid()), &info, WSTOPPED | WEXITED | WNOWAIT), 0) << std::strerror(errno);
    ASSERT_EQ(info.si_code, CLD_STOPPED) << "QEMU exited instead of stopping\n" << Diagnostics();
  }
  void Thaw() { ASSERT_TRUE(process_->Signal(SIGCONT).ok()); }
  pid_t pid() const { return process_->pid(); }
  std::string Serial() const { return "\n" + ReadFileOrEmpty(vm_.serial_log); }
  std::string Diagnostics() const { return "--- serial:" + Serial() + "\n--- qemu:\n" + ReadFileOrEmpty(log_); }
  const VmConfig& vm() const { return vm_; }
  VmConfig& mutable_vm() { return vm_; }
  const NetPeer& peer() const { return *peer_; }

 private:
  VmConfig vm_;
  std::string log_;
  std::unique_ptr<UnixDgramLink> link_;
  std::unique_ptr<NetPeer> peer_;
  std::optional<MacAddr> guest_mac_;
  std::unique_ptr<QemuProcess> process_;
};

// Every test gets a fresh directory and an empty 1 MiB disk image in it.
class GuestService : public ::testing::Test {
 protected:
  void SetUp() override {
    REQUIRE_SERVICE_QEMU();
    MakeDisk(disk);
  }
  TempDir dir;
  const std::string disk = dir / "disk.img";
};

TEST_F(GuestService, CountsRequestsInOrderRecordsEachOnDiskAndResumesFromTheDiskAfterAKill) {
  {
    ServiceGuest guest(dir, "a", disk);
    ASSERT_NO_FATAL_FAILURE(guest.Start());
    EXPECT_NE(guest.Serial().find("\ntandem-guest disk: 0 records\n"), std::string::npos) << guest.Diagnostics();
    EXPECT_NE(guest.Serial().find("mac=52:54:00:12:34:56 ip=10.0.0.2 port=7\n"), std::string::npos);
    ASSERT_NO_FATAL_FAILURE(guest.ExpectCounted(1, 5, "t", disk));
    EXPECT_EQ(guest.peer().bad_frames(), 0u);
    EXPECT_TRUE(guest.WaitForLine("reqs=5 disk=5 ok", 5000)) << guest.Diagnostics();
    EXPECT_EQ(guest.Serial().find("INVARIANT BROKEN"), std::string::npos) << guest.Diagnostics();

    // The RAM file of the stopped VM says the same (what a replica holds).
    ASSERT_NO_FATAL_FAILURE(guest.Freeze());
    UniqueFd fd(::open(guest.vm().ram_path.c_str(), O_RDONLY | O_CLOEXEC));
    const size_t size = size_t{32} << 20;
    void* ram = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd.get(), 0);
    ASSERT_NE(ram, MAP_FAILED);
    auto image = testguest::CheckGuestImage({static_cast<const uint8_t*>(ram), size});
    ::munmap(ram, size);
    std::vector<uint8_t> disk_bytes(size_t{kDiskSectors} * TANDEM_GUEST_SECTOR_SIZE);
    UniqueFd disk_fd(::open(disk.c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_EQ(::pread(disk_fd.get(), disk_bytes.data(), disk_bytes.size(), 0), ssize_t(disk_bytes.size()));
    auto disk_last = testguest::LastDiskRecord(disk_bytes);
    ASSERT_NO_FATAL_FAILURE(guest.Thaw());
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    ASSERT_TRUE(disk_last.ok()) << disk_last.status().ToString();
    EXPECT_EQ(disk_last.value(), 5u);
    EXPECT_TRUE(testguest::CheckServiceMatchesDisk(*image, disk_last.value()).ok());
    EXPECT_TRUE(image->has_service);
    EXPECT_EQ(image->reqs, 5u);
    EXPECT_EQ(image->reqs_pending, 0u);
    EXPECT_EQ(image->service_devices, TANDEM_GUEST_SVC_NIC | TANDEM_GUEST_SVC_DISK);
    guest.Kill();
  }
  EXPECT_FALSE(HoldsRecord(ReadSector(disk, 6), 6));
  // A new QEMU on the same disk: the count goes on from the disk's last record.
  ServiceGuest again(dir, "b", disk);
  ASSERT_NO_FATAL_FAILURE(again.Start());
  EXPECT_NE(again.Serial().find("\ntandem-guest disk: 5 records\n"), std::string::npos) << again.Diagnostics();
  ASSERT_NO_FATAL_FAILURE(again.ExpectCounted(6, 7, "r", disk));
  EXPECT_TRUE(again.WaitForLine("reqs=7 disk=7 ok", 5000)) << again.Diagnostics();
  EXPECT_EQ(again.Serial().find("INVARIANT BROKEN"), std::string::npos) << again.Diagnostics();
}

// The disk as tandem's primary serves it (disk/README.md): QEMU's NBD client on tandem's socket, every write
// applied to the image and logged in the open epoch before QEMU completes it to the guest. So a request's
// record is in the log by the time its reply (sent after the write completed) arrives, and closing the epoch
// yields exactly the guest's records.
TEST_F(GuestService, TheGuestsDiskThroughTandemsNbdServerLogsEveryCompletedWriteInTheOpenEpoch) {
  auto image = disk::ImageDevice::Open(disk);
  ASSERT_TRUE(image.ok()) << image.status().ToString();
  disk::EpochWriteLog log((*image)->size());
  disk::ReplicatedDisk served(image->get(), &log);
  ServiceGuest guest(dir, "nbd", /*disk=*/"");
  guest.mutable_vm().disk_socket = dir / "disk.sock";
  disk::NbdServerOptions nbd;
  nbd.socket_path = guest.vm().disk_socket;
  nbd.export_name = guest.vm().name;
  auto server = disk::NbdServer::Start(nbd, &served);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_NO_FATAL_FAILURE(guest.Start());
  EXPECT_NE(guest.Serial().find("\ntandem-guest disk: 0 records\n"), std::string::npos) << guest.Diagnostics();
  ASSERT_NO_FATAL_FAILURE(guest.ExpectCounted(1, 3, "n", disk));
  EXPECT_TRUE(guest.WaitForLine("reqs=3 disk=3 ok", 10000)) << guest.Diagnostics();
  auto payload = log.CloseEpoch(1);
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  auto writes = disk::DecodeDiskWrites(*payload);
  ASSERT_TRUE(writes.ok()) << writes.status().ToString();
  // Each record k, as the guest wrote it, is in the epoch (absolute writes in completion order: the last write
  // covering a sector is what the standby ends with).
  for (uint32_t k = 1; k <= 3; ++k) {
    std::vector<uint32_t> last;
    for (const disk::DiskWrite& w : writes->writes) {
      const uint64_t at = uint64_t{k} * TANDEM_GUEST_SECTOR_SIZE;
      if (w.kind != disk::WriteKind::kData || w.offset > at || w.offset + w.length < at + TANDEM_GUEST_SECTOR_SIZE) {
        continue;
      }
      last.resize(TANDEM_GUEST_SECTOR_SIZE / 4);
      memcpy(last.data(), w.data.data() + (at - w.offset), TANDEM_GUEST_SECTOR_SIZE);
    }
    ASSERT_FALSE(last.empty()) << "record " << k << " is not in the epoch's writes";
    EXPECT_TRUE(HoldsRecord(last, k)) << "record " << k;
  }
  EXPECT_GT((*server)->stats().requests, 3u);
  guest.Kill();
  log.Shutdown();
  (*server)->Stop();
}

TEST_F(GuestService, DamagedDiskRecordIsReportedAtBootAndRequestsAreRefused) {
  for (uint32_t k = 1; k <= 3; ++k) {
    std::vector<uint32_t> s(TANDEM_GUEST_SECTOR_SIZE / 4, 0);
    s[TANDEM_GUEST_REC_W_MAGIC] = TANDEM_GUEST_REC_MAGIC;
    s[TANDEM_GUEST_REC_W_VALUE] = k;
    s[TANDEM_GUEST_REC_W_CHECK] = tandem_guest_rec_check(k) ^ (k == 3 ? 1u : 0u);  // record 3 damaged
    s[TANDEM_GUEST_REC_W_TAIL] = k;
    WriteSector(disk, k, s);
  }
  ServiceGuest guest(dir, "a", disk);
  ASSERT_NO_FATAL_FAILURE(guest.Start());
  const std::string serial = guest.Serial();
  EXPECT_NE(serial.find("\ntandem-guest disk: 2 records\n"), std::string::npos) << guest.Diagnostics();
  EXPECT_NE(serial.find("\nINVARIANT BROKEN disk=2 ram=2 damaged sector 3: "), std::string::npos) << guest.Diagnostics();
  EXPECT_TRUE(guest.WaitForLine("reqs=2 disk=2 INVARIANT BROKEN", 5000)) << guest.Diagnostics();
  auto reply = guest.Request("x");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString() << "\n" << guest.Diagnostics();
  EXPECT_EQ(*reply, "error=disk-broken id=x\n");
}

TEST_F(GuestService, RecordLostUnderTheRunningGuestBreaksTheInvariant) {
  ServiceGuest guest(dir, "a", disk);
  ASSERT_NO_FATAL_FAILURE(guest.Start());
  ASSERT_NO_FATAL_FAILURE(guest.ExpectCounted(1, 2, "l", disk));
  ASSERT_TRUE(guest.WaitForLine("reqs=2 disk=2 ok", 5000)) << guest.Diagnostics();
  // The disk loses request 2's record (as a replica that missed a write would): RAM says 2, disk says 1.
  WriteSector(disk, 2, std::vector<uint32_t>(TANDEM_GUEST_SECTOR_SIZE / 4, 0));
  EXPECT_TRUE(guest.WaitForLine("INVARIANT BROKEN disk=1 ram=2", 5000)) << guest.Diagnostics();
  EXPECT_TRUE(guest.WaitForLine("reqs=2 disk=1 INVARIANT BROKEN", 5000)) << guest.Diagnostics();
}

TEST_F(GuestService, FullDiskRefusesRequestsWithoutCountingThem) {
  MakeDisk(disk, 4);  // sector 0 unused: room for records 1..3
  ServiceGuest guest(dir, "a", disk);
  ASSERT_NO_FATAL_FAILURE(guest.Start());
  ASSERT_NO_FATAL_FAILURE(guest.ExpectCounted(1, 3, "f", disk));
  auto reply = guest.Request("over");
  ASSERT_TRUE(reply.ok()) << reply.status().ToString() << "\n" << guest.Diagnostics();
  EXPECT_EQ(*reply, "error=disk-full id=over\n");
  EXPECT_TRUE(guest.WaitForLine("reqs=3 disk=3 ok", 5000)) << guest.Diagnostics();
}

TEST_F(GuestService, NicWithoutDiskCountsInRamOnly) {
  ServiceGuest guest(dir, "a", "");
  ASSERT_NO_FATAL_FAILURE(guest.Start());
  ASSERT_NO_FATAL_FAILURE(guest.ExpectCounted(1, 2, "n"));
  EXPECT_TRUE(guest.WaitForLine("reqs=2 disk=none ok", 5000)) << guest.Diagnostics();
}

TEST_F(GuestService, WithoutNicOrDiskTheGuestPrintsWhatItAlwaysDid) {
  ServiceGuest guest(dir, "a", "", /*nic=*/false);
  std::vector<std::string> args = BuildQemuArgs(guest.vm(), QemuRole::kPrimary);
  auto binary = FindQemuBinary();
  ASSERT_TRUE(binary.ok());
  args.insert(args.begin(), *binary);
  auto p = QemuProcess::Spawn(args, dir / "plain.log");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_TRUE(WaitUntil(kBootMs, [&] { return testing::ParseCounters(ReadFileOrEmpty(guest.vm().serial_log)).size() >= 3; }))
      << guest.Diagnostics();
  const std::string serial = ReadFileOrEmpty(guest.vm().serial_log);
  EXPECT_EQ(serial.find("reqs="), std::string::npos) << serial;
  EXPECT_EQ(serial.find("tandem-guest net"), std::string::npos) << serial;
  EXPECT_EQ(serial.find("tandem-guest disk"), std::string::npos) << serial;
  for (const auto& line : testing::ParseCounters(serial)) EXPECT_TRUE(line.ok);
}

// Gives `name` the address `ip`/24 and brings it up.
Status ConfigureInterface(const std::string& name, Ipv4Addr ip) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  auto set_addr = [&](unsigned long request, uint32_t value) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(value);
    std::memcpy(&ifr.ifr_addr, &a, sizeof a);
    return ::ioctl(s.get(), request, &ifr) == 0;
  };
  if (!set_addr(SIOCSIFADDR, ip.value) || !set_addr(SIOCSIFNETMASK, 0xffffff00u))
    return Status::FromErrno("address on " + name, errno);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) != 0) return Status::FromErrno("SIOCGIFFLAGS " + name, errno);
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) != 0) return Status::FromErrno("SIOCSIFFLAGS " + name, errno);
  return Status::Ok();
}

// The same guest behind a TAP device in a private network namespace: Linux's own ARP and UDP (which drops
// datagrams whose checksums are wrong) talk to it, and so does a NetPeer through an AF_PACKET socket on the TAP:
// the frame library works on a real interface, not only on QEMU's dgram socket.
TEST_F(GuestService, AnswersTheLinuxStackAndAPacketSocketThroughATapDevice) {
  if (::unshare(CLONE_NEWNET) != 0) {
    const std::string why = std::string("cannot create a network namespace (needs CAP_SYS_ADMIN): ") + std::strerror(errno);
    fprintf(stderr, "\n!!! SKIPPED: %s\n", why.c_str());
    GTEST_SKIP() << why;
  }
  ServiceGuest guest(dir, "tap", "", /*nic=*/false);
  guest.mutable_vm().extra_args = {"-netdev", "tap,id=n0,ifname=tg0,script=no,downscript=no", "-device",
                                   "virtio-net-pci,netdev=n0,disable-modern=on,romfile=,mac=" + FormatMac(kGuestMac)};
  ASSERT_NO_FATAL_FAILURE(guest.Start());
  ASSERT_TRUE(WaitUntil(5000, [] { return ::if_nametoindex("tg0") != 0; })) << "QEMU did not create tg0";
  Status up = ConfigureInterface("tg0", kHost.ip);
  ASSERT_TRUE(up.ok()) << up.ToString();

  // Linux: a plain UDP socket from 10.0.0.1.
  UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval tv{kReplyMs / 1000, 0};
  ASSERT_EQ(::setsockopt(udp.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(kGuestPort);
  to.sin_addr.s_addr = htonl(kGuestIp.value);
  const std::string req = "req id=linux";
  ASSERT_EQ(::sendto(udp.get(), req.data(), req.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
            ssize_t(req.size()));
  char buf[128];
  ssize_t n = ::recv(udp.get(), buf, sizeof buf, 0);
  ASSERT_GT(n, 0) << "no reply through the kernel: " << std::strerror(errno) << "\n" << guest.Diagnostics();
  EXPECT_EQ(std::string(buf, size_t(n)), "reply=1 id=linux\n");

  // A second host on the same link (10.0.0.3, its own MAC), speaking through an AF_PACKET socket on tg0.
  auto link = PacketSocketLink::Open("tg0");
  ASSERT_TRUE(link.ok()) << link.status().ToString();
  NetPeer peer(**link, {{0x02, 0, 0, 0, 0, 0x03}, Ipv4Addr{0x0a000003}, 40003});
  auto mac = peer.Resolve(kGuestIp, kReplyMs);
  ASSERT_TRUE(mac.ok()) << mac.status().ToString() << "\n" << guest.Diagnostics();
  EXPECT_EQ(*mac, kGuestMac);
  auto reply = peer.Exchange({*mac, kGuestIp, kGuestPort}, "req id=packet", kReplyMs);
  ASSERT_TRUE(reply.ok()) << reply.status().ToString() << "\n" << guest.Diagnostics();
  EXPECT_EQ(reply->text(), "reply=2 id=packet\n");
}

}  // namespace
}  // namespace tandem::qemu
