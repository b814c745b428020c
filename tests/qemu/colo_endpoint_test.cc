// ColoEndpoint over a real unix socket against a scripted "QEMU" that replays a stream recorded from QEMU 7.2
// and checks every COLO message tandem answers with, in order.
#include "qemu-integration/colo_endpoint.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <thread>

#include "common/fd.h"
#include "common/net_address.h"
#include "tests/qemu/qemu_test_util.h"

namespace tandem::qemu {
namespace {

using testing::TempDir;

// Where the recorded session splits into what QEMU sends between tandem's answers.
struct Script {
  std::vector<uint8_t> bytes;
  size_t precopy_end = 0;
  std::vector<std::pair<size_t, size_t>> checkpoints;  // [start (REQUEST), end) of each checkpoint
};

Script LoadScript() {
  Script s;
  s.bytes = testing::ReadFixture("colo-kvm-16m-running.bin.zst");
  MemorySource source(s.bytes);
  StreamReader reader(&source);
  ColoStreamParser parser(&reader);
  replicator::VmDescriptor d;
  std::vector<uint8_t> devices;
  std::unique_ptr<replicator::RamImage> image;
  Status st = parser.ParsePrecopy(
      [&](const replicator::VmDescriptor& layout) -> Result<replicator::PageSink*> {
        image = std::move(replicator::RamImage::Create(layout, {})).value();
        return static_cast<replicator::PageSink*>(image.get());
      },
      &d, &devices);
  EXPECT_TRUE(st.ok()) << st.ToString();
  s.precopy_end = reader.offset();
  replicator::Epoch epoch;
  while (st.ok() && reader.offset() < s.bytes.size()) {
    const size_t start = reader.offset();
    st = parser.ExpectMessage(ColoMessage::kCheckpointRequest);
    if (st.ok()) st = parser.ExpectMessage(ColoMessage::kVmstateSend);
    if (st.ok()) st = parser.ParseCheckpointState(&epoch, &epoch.device_state());
    EXPECT_TRUE(st.ok()) << st.ToString();
    s.checkpoints.push_back({start, reader.offset()});
  }
  return s;
}

UniqueFd ConnectTo(const std::string& path) {
  sockaddr_un addr;
  if (!MakeUnixSockaddr(path, &addr).ok()) return UniqueFd();
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) return UniqueFd();
  return fd;
}

// Reads `n` be32 messages and returns them.
std::vector<uint32_t> ReadMessages(int fd, int n) {
  std::vector<uint32_t> out;
  for (int i = 0; i < n; ++i) {
    uint8_t b[4];
    if (!ReadFull(fd, b, 4).ok()) break;
    out.push_back(LoadBe32(b));
  }
  return out;
}

TEST(ColoEndpointTest, ReplaysRecordedSessionAnsweringEachColoMessageAndRecordsEveryByte) {
  const Script script = LoadScript();
  ASSERT_EQ(script.checkpoints.size(), 2u);
  TempDir dir;
  auto endpoint = ColoEndpoint::Listen(dir / "colo.sock");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  std::vector<uint32_t> answers;
  std::thread qemu([&] {
    UniqueFd fd = ConnectTo(dir / "colo.sock");
    if (!fd.valid()) return;
    const uint8_t* b = script.bytes.data();
    if (!WriteFull(fd.get(), b, script.precopy_end).ok()) return;
    for (uint32_t m : ReadMessages(fd.get(), 1)) answers.push_back(m);  // READY
    for (auto [start, end] : script.checkpoints) {
      if (!WriteFull(fd.get(), b + start, 4).ok()) return;                // REQUEST
      for (uint32_t m : ReadMessages(fd.get(), 1)) answers.push_back(m);  // REPLY: only then the rest
      if (!WriteFull(fd.get(), b + start + 4, end - start - 4).ok()) return;
      for (uint32_t m : ReadMessages(fd.get(), 2)) answers.push_back(m);  // RECEIVED, LOADED
    }
  });
  ASSERT_TRUE((*endpoint)->Accept(5000).ok());
  EXPECT_NE(::access((dir / "colo.sock").c_str(), F_OK), 0) << "socket file left after accept";
  UniqueFd record(::open((dir / "record").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  (*endpoint)->SetRecordFd(record.get());
  auto precopy = (*endpoint)->ReceivePrecopyImage(5000);
  ASSERT_TRUE(precopy.ok()) << precopy.status().ToString();
  Status st;
  ASSERT_TRUE((*endpoint)->SendCheckpointReady().ok());
  replicator::Epoch epoch;
  for (int i = 1; i <= 2; ++i) {
    epoch.Reset(uint64_t(i), false);
    CheckpointTiming timing;
    st = (*endpoint)->ReceiveCheckpoint(&epoch, 5000, &timing);
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_GT(timing.request_ns, 0);
    EXPECT_LE(timing.request_ns, timing.reply_ns);
    EXPECT_LE(timing.reply_ns, timing.loaded_ready_ns);
    EXPECT_EQ(epoch.pages().size(), (*endpoint)->last_checkpoint().pages + (*endpoint)->last_checkpoint().filled_pages);
    EXPECT_GT(epoch.device_state().size(), 0u);
    ASSERT_TRUE((*endpoint)->ResumeVm().ok());
  }
  qemu.join();
  // The scripted QEMU closed the socket after the last checkpoint.
  CheckpointTiming timing;
  EXPECT_TRUE((*endpoint)->ReceiveCheckpoint(&epoch, 5000, &timing).IsClosed());
  EXPECT_EQ(answers, (std::vector<uint32_t>{0, 2, 5, 6, 2, 5, 6}));
  const std::string recorded = testing::ReadFileOrEmpty(dir / "record");
  EXPECT_TRUE(recorded == std::string(script.bytes.begin(), script.bytes.end()))
      << "recorded " << recorded.size() << " bytes of " << script.bytes.size();
}

TEST(ColoEndpointTest, AcceptTimesOutWithoutQemu) {
  TempDir dir;
  auto endpoint = ColoEndpoint::Listen(dir / "colo.sock");
  ASSERT_TRUE(endpoint.ok());
  EXPECT_TRUE((*endpoint)->Accept(100).IsTimeout());
}

TEST(ColoEndpointTest, ListenReplacesAStaleSocketFile) {
  TempDir dir;
  { UniqueFd f(::open((dir / "colo.sock").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600)); }
  auto endpoint = ColoEndpoint::Listen(dir / "colo.sock");
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  UniqueFd fd = ConnectTo(dir / "colo.sock");
  EXPECT_TRUE(fd.valid());
  EXPECT_TRUE((*endpoint)->Accept(1000).ok());
}

// Precopy delivered, READY read; then `after_ready` plays QEMU's part of the first checkpoint.
Status FirstCheckpointAgainst(const std::function<void(int fd, const Script&)>& after_ready, int timeout_ms) {
  const Script script = LoadScript();
  TempDir dir;
  auto endpoint = ColoEndpoint::Listen(dir / "colo.sock");
  if (!endpoint.ok()) return endpoint.status();
  std::thread qemu([&] {
    UniqueFd fd = ConnectTo(dir / "colo.sock");
    if (!fd.valid() || !WriteFull(fd.get(), script.bytes.data(), script.precopy_end).ok()) return;
    if (ReadMessages(fd.get(), 1).size() != 1) return;
    after_ready(fd.get(), script);
  });
  Status st = (*endpoint)->Accept(5000);
  if (st.ok()) st = (*endpoint)->ReceivePrecopyImage(5000).status();
  if (st.ok()) st = (*endpoint)->SendCheckpointReady();
  if (st.ok()) {
    replicator::Epoch epoch;
    CheckpointTiming timing;
    st = (*endpoint)->ReceiveCheckpoint(&epoch, timeout_ms, &timing);
  }
  qemu.join();
  return st;
}

TEST(ColoEndpointTest, QemuDyingMidCheckpointIsClosed) {
  Status st = FirstCheckpointAgainst(
      [](int fd, const Script& s) {
        auto [start, end] = s.checkpoints[0];
        (void)WriteFull(fd, s.bytes.data() + start, 4);
        ReadMessages(fd, 1);
        (void)WriteFull(fd, s.bytes.data() + start + 4, (end - start) / 2);
      },
      5000);
  EXPECT_TRUE(st.IsClosed()) << st.ToString();
}

TEST(ColoEndpointTest, NoCheckpointRequestInTimeIsTimeout) {
  // QEMU stays silent for a second (then hangs up); tandem gives up after 100 ms.
  Status st =
      FirstCheckpointAgainst([](int, const Script&) { std::this_thread::sleep_for(std::chrono::seconds(1)); }, 100);
  EXPECT_TRUE(st.IsTimeout()) << st.ToString();
}

}  // namespace
}  // namespace tandem::qemu
