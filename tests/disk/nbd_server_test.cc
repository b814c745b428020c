// The NBD server against real clients: libnbd, QEMU's own qemu-io, and a raw socket client for what the real
// clients never send (bad requests, lies, clients that vanish).
#include "disk/nbd_server.h"

#include <gtest/gtest.h>
#include <libnbd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "common/fd.h"
#include "disk/block_hash.h"
#include "disk/nbd_protocol.h"
#include "disk/replica.h"
#include "disk/write_log.h"
#include "tests/disk/disk_test_util.h"

namespace tandem::disk {
namespace {

using namespace testing;  // the disk tests' helpers (disk_test_util.h)

constexpr uint64_t kDisk = 4 << 20;
constexpr uint32_t kMaxPayload = 256 << 10;

struct NbdCloser {
  void operator()(nbd_handle* h) const { nbd_close(h); }
};
using Nbd = std::unique_ptr<nbd_handle, NbdCloser>;

class NbdServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WriteWholeFile(dir_ / "disk.img", Pattern(kDisk, 1));
    auto image = ImageDevice::Open(dir_ / "disk.img");
    ASSERT_TRUE(image.ok()) << image.status().ToString();
    image_ = std::move(image).value();
    log_ = std::make_unique<EpochWriteLog>(kDisk);
    disk_ = std::make_unique<ReplicatedDisk>(image_.get(), log_.get());
    NbdServerOptions options;
    options.socket_path = socket_;
    options.export_name = "vm0";
    options.description = "test disk";
    options.max_payload = kMaxPayload;
    options.handshake_timeout_ms = 300;
    auto server = NbdServer::Start(options, disk_.get());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  Nbd Connect(const char* export_name = "vm0") {
    Nbd h(nbd_create());
    EXPECT_EQ(nbd_set_export_name(h.get(), export_name), 0);
    if (nbd_connect_unix(h.get(), socket_.c_str()) != 0) return nullptr;
    return h;
  }

  DiskWrites Closed(uint64_t epoch) {
    auto payload = log_->CloseEpoch(epoch);
    EXPECT_TRUE(payload.ok());
    payloads_.push_back(std::move(payload).value());
    auto d = DecodeDiskWrites(payloads_.back());
    EXPECT_TRUE(d.ok()) << d.status().ToString();
    return d.ok() ? std::move(d).value() : DiskWrites{};
  }

  TempDir dir_;
  std::string socket_ = dir_ / "disk.sock";
  std::unique_ptr<ImageDevice> image_;
  std::unique_ptr<EpochWriteLog> log_;
  std::unique_ptr<ReplicatedDisk> disk_;
  std::unique_ptr<NbdServer> server_;
  std::vector<std::vector<uint8_t>> payloads_;
};

TEST_F(NbdServerTest, LibnbdReadsWritesFlushesZeroesAndTrims) {
  Nbd h = Connect();
  ASSERT_TRUE(h) << nbd_get_error();
  EXPECT_EQ(nbd_get_size(h.get()), int64_t(kDisk));
  EXPECT_EQ(nbd_can_flush(h.get()), 1);
  EXPECT_EQ(nbd_can_fua(h.get()), 1);
  EXPECT_EQ(nbd_can_trim(h.get()), 1);
  EXPECT_EQ(nbd_can_zero(h.get()), 1);
  EXPECT_EQ(nbd_is_read_only(h.get()), 0);

  std::vector<uint8_t> data = Pattern(64 << 10, 7), back(64 << 10);
  ASSERT_EQ(nbd_pwrite(h.get(), data.data(), data.size(), 4096, LIBNBD_CMD_FLAG_FUA), 0) << nbd_get_error();
  ASSERT_EQ(nbd_pread(h.get(), back.data(), back.size(), 4096, 0), 0) << nbd_get_error();
  EXPECT_EQ(back, data);
  ASSERT_EQ(nbd_flush(h.get(), 0), 0);
  ASSERT_EQ(nbd_zero(h.get(), 8192, 1 << 20, 0), 0) << nbd_get_error();
  ASSERT_EQ(nbd_trim(h.get(), 65536, 2 << 20, 0), 0) << nbd_get_error();
  std::vector<uint8_t> zeros(65536);
  ASSERT_EQ(nbd_pread(h.get(), zeros.data(), zeros.size(), 2 << 20, 0), 0);
  EXPECT_EQ(zeros, std::vector<uint8_t>(65536, 0));
  ASSERT_EQ(nbd_shutdown(h.get(), 0), 0);

  std::vector<uint8_t> file = ReadWholeFile(dir_ / "disk.img");
  EXPECT_TRUE(std::equal(data.begin(), data.end(), file.begin() + 4096));
  EXPECT_EQ(file[(1 << 20) + 100], 0);
  EXPECT_EQ(file[(1 << 20) + 8192], Pattern(kDisk, 1)[(1 << 20) + 8192]);  // just past the zeroed range

  DiskWrites w = Closed(1);
  ASSERT_EQ(w.writes.size(), 3u);
  EXPECT_EQ(w.writes[0].kind, WriteKind::kData);
  EXPECT_EQ(w.writes[0].offset, 4096u);
  EXPECT_EQ(w.writes[1].kind, WriteKind::kZero);
  EXPECT_EQ(w.writes[2].kind, WriteKind::kTrim);
}

TEST_F(NbdServerTest, LibnbdListsTheExportAndGetsItsInfo) {
  Nbd h(nbd_create());
  ASSERT_EQ(nbd_set_opt_mode(h.get(), true), 0);
  ASSERT_EQ(nbd_set_full_info(h.get(), true), 0);
  ASSERT_EQ(nbd_connect_unix(h.get(), socket_.c_str()), 0) << nbd_get_error();
  std::vector<std::string> names;
  nbd_list_callback list = {
      .callback = [](void* user, const char* name, const char*) {
        static_cast<std::vector<std::string>*>(user)->push_back(name);
        return 0;
      },
      .user_data = &names,
      .free = nullptr};
  ASSERT_EQ(nbd_opt_list(h.get(), list), 1) << nbd_get_error();
  EXPECT_EQ(names, std::vector<std::string>{"vm0"});
  ASSERT_EQ(nbd_set_export_name(h.get(), "vm0"), 0);
  ASSERT_EQ(nbd_opt_info(h.get()), 0) << nbd_get_error();
  EXPECT_EQ(nbd_get_size(h.get()), int64_t(kDisk));
  EXPECT_EQ(nbd_get_block_size(h.get(), LIBNBD_SIZE_MAXIMUM), int64_t(kMaxPayload));
  char* description = nbd_get_export_description(h.get());
  ASSERT_NE(description, nullptr) << nbd_get_error();
  EXPECT_STREQ(description, "test disk");
  free(description);
  ASSERT_EQ(nbd_set_export_name(h.get(), "other"), 0);
  EXPECT_EQ(nbd_opt_info(h.get()), -1);  // NBD_REP_ERR_UNKNOWN
  EXPECT_EQ(nbd_opt_abort(h.get()), 0);
}

TEST_F(NbdServerTest, AnUnknownExportIsRefused) {
  EXPECT_FALSE(Connect("nope"));
  EXPECT_TRUE(Connect("vm0"));  // and the server serves the next client
}

// The whole path: a client's writes, cut into epochs on the primary, applied epoch by epoch on a standby that
// started from the same image, leave the two images byte for byte equal.
TEST_F(NbdServerTest, EpochsAppliedOnTheStandbyReproduceThePrimaryImage) {
  WriteWholeFile(dir_ / "standby.img", Pattern(kDisk, 1));
  DiskReplicaOptions options;
  options.image_path = dir_ / "standby.img";
  auto replica = DiskReplica::Open(options);
  ASSERT_TRUE(replica.ok()) << replica.status().ToString();
  Nbd h = Connect();
  ASSERT_TRUE(h) << nbd_get_error();
  uint64_t x = 12345;
  auto next = [&](uint64_t bound) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    return (x >> 17) % bound;
  };
  for (uint64_t epoch = 1; epoch <= 5; ++epoch) {
    for (int op = 0; op < 30; ++op) {
      const uint64_t length = 1 + next(kMaxPayload - 1), offset = next(kDisk - length);
      switch (next(4)) {
        case 0:
        case 1: {
          std::vector<uint8_t> data = Pattern(length, uint8_t(epoch * 40 + op));
          ASSERT_EQ(nbd_pwrite(h.get(), data.data(), length, offset, 0), 0) << nbd_get_error();
          break;
        }
        case 2: ASSERT_EQ(nbd_zero(h.get(), length, offset, 0), 0) << nbd_get_error(); break;
        case 3: ASSERT_EQ(nbd_trim(h.get(), length, offset, 0), 0) << nbd_get_error(); break;
      }
    }
    auto payload = log_->CloseEpoch(epoch);
    ASSERT_TRUE(payload.ok());
    ASSERT_TRUE((*replica)->Apply(*payload).ok());
  }
  EXPECT_EQ(ReadWholeFile(dir_ / "standby.img"), ReadWholeFile(dir_ / "disk.img"));
  auto primary_hashes = HashBlocks(*image_);
  auto standby_hashes = HashBlocks((*replica)->image());
  ASSERT_TRUE(primary_hashes.ok() && standby_hashes.ok());
  EXPECT_TRUE(BlocksToSend(*primary_hashes, *standby_hashes).empty());
}

// QEMU's own NBD client (block/nbd.c), as the protected VM's QEMU will use it. No guest, no KVM: fast.
TEST_F(NbdServerTest, QemuIoWritesReadsZeroesAndDiscards) {
  if (access("/usr/bin/qemu-io", X_OK) != 0) GTEST_SKIP() << "qemu-io not installed (scripts/setup: qemu-utils)";
  std::string cmd = "qemu-io -f raw 'nbd+unix:///vm0?socket=" + socket_ +
                    "' -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' -c 'write -z 128k 64k'"
                    " -c 'discard 256k 64k' -c 'read -P 0 128k 64k' -c 'read -P 0 256k 64k' -c 'flush' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof(buf), p)) out += buf;
  ASSERT_EQ(pclose(p), 0) << out;
  EXPECT_EQ(out.find("fail"), std::string::npos) << out;
  EXPECT_EQ(out.find("rror"), std::string::npos) << out;
  EXPECT_NE(out.find("wrote 65536/65536"), std::string::npos) << out;
  EXPECT_NE(out.find("read 65536/65536 bytes at offset 262144"), std::string::npos) << out;

  std::vector<uint8_t> file = ReadWholeFile(dir_ / "disk.img");
  EXPECT_EQ(std::vector<uint8_t>(file.begin(), file.begin() + 65536), std::vector<uint8_t>(65536, 0xab));
  DiskWrites w = Closed(1);
  ASSERT_EQ(w.writes.size(), 3u);
  EXPECT_EQ(w.writes[0].kind, WriteKind::kData);
  EXPECT_EQ(w.writes[1].kind, WriteKind::kZero);
  EXPECT_EQ(w.writes[1].offset, 128u << 10);
  EXPECT_EQ(w.writes[2].kind, WriteKind::kTrim);
  EXPECT_EQ(w.writes[2].offset, 256u << 10);
}

// A client speaking the protocol by hand, to send what libnbd and QEMU never would.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path.c_str(), path.size());
    ok_ = ::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    uint8_t hello[18];
    ok_ = ok_ && ReadFull(fd_.get(), hello, sizeof(hello)).ok() && LoadBe64(hello) == nbd::kMagic;
    uint8_t flags[4];
    StoreBe32(flags, nbd::kClientFlagFixedNewstyle | nbd::kClientFlagNoZeroes);
    ok_ = ok_ && Send(flags, 4);
  }
  bool ok() const { return ok_; }
  int fd() const { return fd_.get(); }
  void Close() { fd_.reset(); }

  bool Send(const void* p, size_t n) { return WriteFull(fd_.get(), p, n).ok(); }
  void SendOption(uint32_t option, const std::vector<uint8_t>& data) {
    uint8_t h[16];
    StoreBe64(h, nbd::kOptionMagic);
    StoreBe32(h + 8, option);
    StoreBe32(h + 12, uint32_t(data.size()));
    Send(h, 16);
    if (!data.empty()) Send(data.data(), data.size());
  }
  // Reads option replies up to the final one; returns its type (0 if the connection broke).
  uint32_t FinalOptionReply() {
    for (;;) {
      uint8_t h[20];
      if (!ReadFull(fd_.get(), h, 20).ok()) return 0;
      uint32_t type = LoadBe32(h + 12), len = LoadBe32(h + 16);
      std::vector<uint8_t> skip(len);
      if (len && !ReadFull(fd_.get(), skip.data(), len).ok()) return 0;
      if (type != nbd::kRepInfo && type != nbd::kRepServer) return type;
    }
  }
  static std::vector<uint8_t> GoData(const std::string& name, uint32_t extra_length_lie = 0) {
    std::vector<uint8_t> d(4 + name.size() + 2);
    StoreBe32(d.data(), uint32_t(name.size()) + extra_length_lie);
    memcpy(d.data() + 4, name.data(), name.size());
    return d;
  }
  bool Go() {
    SendOption(nbd::kOptGo, GoData("vm0"));
    return FinalOptionReply() == nbd::kRepAck;
  }
  void Request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length) {
    uint8_t r[nbd::kRequestSize];
    StoreBe32(r, nbd::kRequestMagic);
    r[4] = uint8_t(flags >> 8), r[5] = uint8_t(flags);
    r[6] = uint8_t(type >> 8), r[7] = uint8_t(type);
    StoreBe64(r + 8, cookie);
    StoreBe64(r + 16, offset);
    StoreBe32(r + 24, length);
    Send(r, sizeof(r));
  }
  // The error of the next simple reply (and checks its cookie); -1 if the server hung up.
  int64_t ReplyError(uint64_t cookie) {
    uint8_t r[nbd::kSimpleReplySize];
    if (!ReadFull(fd_.get(), r, sizeof(r)).ok()) return -1;
    EXPECT_EQ(LoadBe32(r), nbd::kSimpleReplyMagic);
    EXPECT_EQ(LoadBe64(r + 8), cookie);
    return LoadBe32(r + 4);
  }
  // True if the server closed the connection.
  bool HungUp() {
    uint8_t b;
    return ::recv(fd_.get(), &b, 1, 0) == 0;
  }

 private:
  UniqueFd fd_;
  bool ok_ = false;
};

TEST_F(NbdServerTest, BadRequestsGetTheirNbdErrorAndTheConnectionStaysUsable) {
  RawClient c(socket_);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.Go());
  c.Request(nbd::kCmdRead, 0, 1, kDisk - 100, 200);  // past the end
  EXPECT_EQ(c.ReplyError(1), nbd::kEinval);
  c.Request(nbd::kCmdRead, 0, 2, 0, kMaxPayload + 1);  // bigger than advertised
  EXPECT_EQ(c.ReplyError(2), nbd::kEinval);
  c.Request(nbd::kCmdRead, 0, 3, 0, 0);  // zero length
  EXPECT_EQ(c.ReplyError(3), nbd::kEinval);
  c.Request(77, 0, 4, 0, 512);  // unknown command
  EXPECT_EQ(c.ReplyError(4), nbd::kEinval);
  c.Request(nbd::kCmdFlush, 0, 5, 512, 0);  // a flush has no range
  EXPECT_EQ(c.ReplyError(5), nbd::kEinval);
  c.Request(nbd::kCmdTrim, 0, 6, kDisk, 1);  // beyond the end
  EXPECT_EQ(c.ReplyError(6), nbd::kEnospc);
  c.Request(nbd::kCmdWriteZeroes, 1 << 4, 7, 0, 512);  // FAST_ZERO was not offered
  EXPECT_EQ(c.ReplyError(7), nbd::kEinval);
  c.Request(nbd::kCmdRead, 0, 8, UINT64_MAX - 10, 100);  // offset + length wraps
  EXPECT_EQ(c.ReplyError(8), nbd::kEinval);

  // Refused writes: their payload is read and dropped, so the next request is understood.
  std::vector<uint8_t> payload = Pattern(kMaxPayload + 4096, 4);
  c.Request(nbd::kCmdWrite, 0, 9, 0, uint32_t(payload.size()));  // oversize
  c.Send(payload.data(), payload.size());
  EXPECT_EQ(c.ReplyError(9), nbd::kEinval);
  c.Request(nbd::kCmdWrite, 0, 10, kDisk - 512, 1024);  // past the end
  c.Send(payload.data(), 1024);
  EXPECT_EQ(c.ReplyError(10), nbd::kEnospc);
  c.Request(nbd::kCmdWrite, 1 << 2, 11, 0, 512);  // DF flag on a write
  c.Send(payload.data(), 512);
  EXPECT_EQ(c.ReplyError(11), nbd::kEinval);

  c.Request(nbd::kCmdWrite, nbd::kCmdFlagFua, 12, 0, 512);
  c.Send(payload.data(), 512);
  EXPECT_EQ(c.ReplyError(12), 0);
  c.Request(nbd::kCmdRead, 0, 13, 0, 512);
  EXPECT_EQ(c.ReplyError(13), 0);
  std::vector<uint8_t> back(512);
  ASSERT_TRUE(ReadFull(c.fd(), back.data(), back.size()).ok());
  EXPECT_TRUE(std::equal(back.begin(), back.end(), payload.begin()));
  c.Request(nbd::kCmdDisc, 0, 14, 0, 0);
  EXPECT_TRUE(c.HungUp());

  EXPECT_EQ(Closed(1).writes.size(), 1u);  // only the one good write
  EXPECT_EQ(server_->stats().error_replies, 11u);
  EXPECT_EQ(server_->stats().disconnects, 0u);
}

TEST_F(NbdServerTest, BadOptionsGetOptionErrorsAndTheHandshakeGoesOn) {
  RawClient c(socket_);
  ASSERT_TRUE(c.ok());
  c.SendOption(nbd::kOptStructuredReply, {});
  EXPECT_EQ(c.FinalOptionReply(), nbd::kRepErrUnsup);
  c.SendOption(nbd::kOptStartTls, {});
  EXPECT_EQ(c.FinalOptionReply(), nbd::kRepErrUnsup);
  c.SendOption(12345, {1, 2, 3});
  EXPECT_EQ(c.FinalOptionReply(), nbd::kRepErrUnsup);
  c.SendOption(nbd::kOptGo, RawClient::GoData("vm0", /*extra_length_lie=*/100));
  EXPECT_EQ(c.FinalOptionReply(), nbd::kRepErrInvalid);
  c.SendOption(nbd::kOptGo, {0, 0});
  EXPECT_EQ(c.FinalOptionReply(), nbd::kRepErrInvalid);
  c.SendOption(nbd::kOptInfo, RawClient::GoData("elsewhere"));
  EXPECT_EQ(c.FinalOptionReply(), nbd::kRepErrUnknown);
  c.SendOption(nbd::kOptList, {1});
  EXPECT_EQ(c.FinalOptionReply(), nbd::kRepErrInvalid);
  c.SendOption(nbd::kOptList, std::vector<uint8_t>(100000, 0));  // too big: dropped, refused
  EXPECT_EQ(c.FinalOptionReply(), nbd::kRepErrTooBig);
  ASSERT_TRUE(c.Go());
  c.Request(nbd::kCmdFlush, 0, 1, 0, 0);
  EXPECT_EQ(c.ReplyError(1), 0);
}

TEST_F(NbdServerTest, AClientThatVanishesMidWriteLeavesNothingBehind) {
  {
    RawClient c(socket_);
    ASSERT_TRUE(c.ok());
    ASSERT_TRUE(c.Go());
    std::vector<uint8_t> part = Pattern(1000, 6);
    c.Request(nbd::kCmdWrite, 0, 1, 0, 64 << 10);
    c.Send(part.data(), part.size());
  }  // gone, 1000 of 65536 bytes sent
  Nbd h = Connect();  // served only once the server noticed the first one left
  ASSERT_TRUE(h) << nbd_get_error();
  std::vector<uint8_t> back(64 << 10);
  ASSERT_EQ(nbd_pread(h.get(), back.data(), back.size(), 0, 0), 0);
  EXPECT_TRUE(std::equal(back.begin(), back.end(), Pattern(kDisk, 1).begin()));
  EXPECT_TRUE(Closed(1).writes.empty());
  EXPECT_EQ(server_->stats().disconnects, 1u);
}

TEST_F(NbdServerTest, ARequestWithoutItsMagicEndsTheConnection) {
  RawClient c(socket_);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.Go());
  uint8_t junk[nbd::kRequestSize] = {1, 2, 3};
  c.Send(junk, sizeof(junk));
  EXPECT_TRUE(c.HungUp());
  EXPECT_TRUE(Connect());
}

TEST_F(NbdServerTest, ExportNameOptionAndAbortWork) {
  RawClient c(socket_);
  ASSERT_TRUE(c.ok());
  c.SendOption(nbd::kOptExportName, {'v', 'm', '0'});
  uint8_t info[10];
  ASSERT_TRUE(ReadFull(c.fd(), info, sizeof(info)).ok());  // no 124 zero bytes: NO_ZEROES was agreed
  EXPECT_EQ(LoadBe64(info), kDisk);
  c.Request(nbd::kCmdFlush, 0, 9, 0, 0);
  EXPECT_EQ(c.ReplyError(9), 0);

  c.Close();  // one client at a time: the next is greeted once this one is gone
  RawClient d(socket_);
  ASSERT_TRUE(d.ok());
  d.SendOption(nbd::kOptAbort, {});
  EXPECT_EQ(d.FinalOptionReply(), nbd::kRepAck);
  EXPECT_TRUE(d.HungUp());
}

TEST_F(NbdServerTest, StopDisconnectsAnIdleClientPromptly) {
  RawClient c(socket_);
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(c.Go());
  server_->Stop();
  EXPECT_TRUE(c.HungUp());
  EXPECT_NE(access(socket_.c_str(), F_OK), 0);  // the socket file is gone
}

TEST_F(NbdServerTest, AClientSilentInTheHandshakeIsDroppedAndTheNextOneServed) {
  RawClient silent(socket_);  // greeted, then says nothing
  ASSERT_TRUE(silent.ok());
  Nbd h = Connect();  // waits for the handshake deadline (300 ms here), then is served
  ASSERT_TRUE(h) << nbd_get_error();
  EXPECT_EQ(nbd_get_size(h.get()), int64_t(kDisk));
  EXPECT_TRUE(silent.HungUp());
}

TEST(NbdServerStart, NeverDeletesAFileThatIsNotASocket) {
  TempDir dir;
  WriteWholeFile(dir / "disk.img", Pattern(4096, 1));
  NbdServerOptions options;
  options.socket_path = dir / "disk.img";  // a configuration mistake
  auto server = NbdServer::Start(options, nullptr);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("not a socket"), std::string::npos);
  EXPECT_EQ(ReadWholeFile(dir / "disk.img"), Pattern(4096, 1));
}

TEST(NbdServerStart, RefusesASocketPathTooLongForUnixSockets) {
  NbdServerOptions options;
  options.socket_path = std::string(200, 'x');
  auto server = NbdServer::Start(options, nullptr);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(server.status().message().find("longer than"), std::string::npos);
}

}  // namespace
}  // namespace tandem::disk
