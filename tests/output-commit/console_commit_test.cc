#include "output-commit/console_commit.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <fstream>
#include <sstream>

#include "output-commit/qemu_options.h"
#include "tests/output-commit/test_util.h"

namespace tandem::output_commit {
namespace {

// The module between a stand-in for QEMU's socket chardev (a client of console.sock) and the log file.
class ConsoleCommitTest : public ::testing::Test {
 protected:
  void SetUp() override { Open({.max_bytes = 1 << 20, .max_records = 4096, .max_record_bytes = 4096}); }

  void Open(HoldLimits limits) {
    console_.reset();
    log_path_ = dir_.path() + "/console.log";
    auto console = ConsoleOutputCommit::Create(
        {.socket_path = PathsIn(dir_.path()).console_socket, .log_path = log_path_, .limits = limits}, &clock_);
    ASSERT_TRUE(console.ok()) << console.status().ToString();
    console_ = std::move(console.value());
    qemu_ = Connect();
  }

  // What QEMU's chardev does at startup (server=off): connect, then write the guest's bytes non-blocking.
  UniqueFd Connect() {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_un a = UnixAddr(PathsIn(dir_.path()).console_socket);
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_TRUE(console_->PollOnce(0).ok());  // accept
    return fd;
  }
  void GuestWrites(const std::string& s) { ASSERT_EQ(::send(qemu_.get(), s.data(), s.size(), 0), ssize_t(s.size())); }
  void Poll() { ASSERT_TRUE(console_->PollOnce(0).ok()); }
  std::string Log() {
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  TempDir dir_;
  FakeClock clock_;
  std::string log_path_;
  std::unique_ptr<ConsoleOutputCommit> console_;
  UniqueFd qemu_;
};

TEST_F(ConsoleCommitTest, BytesReachTheLogOnlyOnceTheirEpochIsAcked) {
  EXPECT_TRUE(console_->stats().source_connected);
  GuestWrites("boot: hello\n");
  Poll();
  ASSERT_TRUE(console_->OnEpochBoundary(1).ok());
  GuestWrites("counter=1\n");
  ASSERT_TRUE(console_->OnEpochBoundary(2).ok());  // drains what was written before it, loop or not
  GuestWrites("counter=2\n");
  Poll();
  EXPECT_EQ(Log(), "");
  console_->ReleaseThrough(1);
  EXPECT_EQ(Log(), "boot: hello\n");
  console_->ReleaseThrough(2);
  EXPECT_EQ(Log(), "boot: hello\ncounter=1\n");
  ASSERT_TRUE(console_->OnEpochBoundary(3).ok());
  console_->ReleaseThrough(3);
  EXPECT_EQ(Log(), "boot: hello\ncounter=1\ncounter=2\n");
}

TEST_F(ConsoleCommitTest, FullQueueStopsReadingSoQemuIsHeldAndNoByteIsLost) {
  Open({.max_bytes = 8192, .max_records = 64, .max_record_bytes = 4096});
  // The guest writes until the socket refuses (QEMU's serial then keeps the byte and waits for POLLOUT).
  std::string written;
  char chunk[1000];
  for (uint32_t i = 0;; ++i) {
    for (size_t j = 0; j < sizeof(chunk); ++j) chunk[j] = char('a' + (i * 7 + j) % 26);
    const ssize_t n = ::send(qemu_.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
    if (n < 0) {
      ASSERT_EQ(errno, EAGAIN);
      break;
    }
    written.append(chunk, size_t(n));
    Poll();
    ASSERT_LT(written.size(), 64u << 20) << "the socket never filled up";
  }
  EXPECT_TRUE(console_->stats().backpressured);
  EXPECT_EQ(console_->stats().hold.held_bytes, 8192u);
  std::string released;
  for (uint64_t epoch = 1; released.size() < written.size() && epoch < 100000; ++epoch) {
    ASSERT_TRUE(console_->OnEpochBoundary(epoch).ok());
    console_->ReleaseThrough(epoch);
    Poll();
    released = Log();
  }
  EXPECT_EQ(released, written);
  EXPECT_FALSE(console_->stats().backpressured);
}

TEST_F(ConsoleCommitTest, DropUnreleasedKeepsTheLogAsReleased) {
  GuestWrites("released\n");
  ASSERT_TRUE(console_->OnEpochBoundary(1).ok());
  console_->ReleaseThrough(1);
  GuestWrites("never seen\n");
  ASSERT_TRUE(console_->OnEpochBoundary(2).ok());
  EXPECT_EQ(console_->DropUnreleased(), 1u);
  console_->ReleaseThrough(2);
  EXPECT_EQ(Log(), "released\n");
}

TEST_F(ConsoleCommitTest, ARestartedQemuReconnects) {
  GuestWrites("first\n");
  Poll();
  qemu_.reset();
  Poll();  // EOF: the connection is closed, what it sent stays held
  EXPECT_FALSE(console_->stats().source_connected);
  qemu_ = Connect();
  EXPECT_TRUE(console_->stats().source_connected);
  GuestWrites("second\n");
  ASSERT_TRUE(console_->OnEpochBoundary(1).ok());
  console_->ReleaseThrough(1);
  EXPECT_EQ(Log(), "first\nsecond\n");
}

TEST(ConsoleCommitOptionsTest, RefusesAPathThatIsNotASocket) {
  TempDir dir;
  FakeClock clock;
  const std::string path = dir.path() + "/console.sock";
  std::ofstream(path) << "a regular file";
  auto console = ConsoleOutputCommit::Create({.socket_path = path, .log_path = dir.path() + "/log"}, &clock);
  EXPECT_EQ(console.status().code(), Status::Code::kInvalidArgument);
  std::ifstream in(path);
  std::string kept;
  std::getline(in, kept);
  EXPECT_EQ(kept, "a regular file");  // not removed
}

}  // namespace
}  // namespace tandem::output_commit
