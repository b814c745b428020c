// The real sd_notify (libsystemd) against a notification socket the test owns, as systemd would see it.
#include "common/systemd_notifier.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/fd.h"
#include "tests/support/temp_dir.h"

namespace tandem {
namespace {

// $NOTIFY_SOCKET = a unix datagram socket in a temp dir; the watchdog variables as the test sets them.
class SystemdNotifierTest : public ::testing::Test {
 protected:
  SystemdNotifierTest() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const std::string path = dir_ / "notify";
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    socket_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(socket_.valid());
    EXPECT_EQ(::bind(socket_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << strerror(errno);
    const timeval timeout{2, 0};
    ::setsockopt(socket_.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    setenv("NOTIFY_SOCKET", path.c_str(), 1);
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
  ~SystemdNotifierTest() override {
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
  }
  // The next datagram ("" after 2 s without one).
  std::string Next() {
    char buf[4096];
    const ssize_t n = ::recv(socket_.get(), buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, size_t(n)) : std::string();
  }
  // A datagram already queued, without waiting ("" if none).
  std::string Queued() {
    char buf[4096];
    const ssize_t n = ::recv(socket_.get(), buf, sizeof(buf), MSG_DONTWAIT);
    return n > 0 ? std::string(buf, size_t(n)) : std::string();
  }

  testing::TempDir dir_;
  UniqueFd socket_;
};

TEST_F(SystemdNotifierTest, ReadyStatusAndWatchdogReachTheNotifySocket) {
  setenv("WATCHDOG_USEC", "4000000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid()).c_str(), 1);
  SystemdNotifier notifier;
  ASSERT_TRUE(notifier.watchdog_enabled());
  notifier.Ready();
  EXPECT_EQ(Next(), "READY=1");
  notifier.Status("protected (term 7, epoch 12)\nsecond line");
  EXPECT_EQ(Next(), "STATUS=protected (term 7, epoch 12)") << "STATUS= is one line";
  notifier.Watchdog();
  EXPECT_EQ(Next(), "WATCHDOG=1");
  // The loops call it per epoch; systemd needs it once per WatchdogSec: the next one waits for a quarter of it.
  for (int i = 0; i < 100; ++i) notifier.Watchdog();
  EXPECT_EQ(Queued(), "");
}

TEST_F(SystemdNotifierTest, WithoutAWatchdogForThisProcessNothingIsSentForIt) {
  setenv("WATCHDOG_USEC", "4000000", 1);
  setenv("WATCHDOG_PID", std::to_string(getpid() + 1).c_str(), 1);  // the watchdog is another process's
  SystemdNotifier notifier;
  EXPECT_FALSE(notifier.watchdog_enabled());
  notifier.Watchdog();
  notifier.Ready();
  EXPECT_EQ(Next(), "READY=1") << "the first datagram must not be a WATCHDOG=1";
}

TEST(SystemdNotifierWithoutSystemd, DoesNothingWhenNotStartedBySystemd) {
  unsetenv("NOTIFY_SOCKET");
  SystemdNotifier notifier;
  notifier.Ready();
  notifier.Status("standby");
  notifier.Watchdog();
  SUCCEED() << "no socket, no error, no crash";
}

}  // namespace
}  // namespace tandem
