// qemu-integration's host operations go through an Env: a FaultInjectingEnv fails the QMP connect, the COLO
// listen/accept, the standby's incoming-socket connect and the QEMU spawn/kill, and each failure must come back as
// a Status that says what failed. No QEMU runs here: the QMP peer is a scripted one on a real unix socket.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/fault_injecting_env.h"
#include "qemu-integration/colo_endpoint.h"
#include "qemu-integration/qemu_process.h"
#include "qemu-integration/qmp.h"
#include "qemu-integration/resume.h"
#include "tests/qemu/qemu_test_util.h"

namespace tandem::qemu {
namespace {

using Op = FaultInjectingEnv::Op;
using testing::TempDir;

bool Contains(const Status& st, const std::string& text) { return st.ToString().find(text) != std::string::npos; }

// The injected errno surfaces as an IoError that also names what tandem was doing.
void ExpectIoError(const Status& st, const std::string& doing, int err) {
  EXPECT_EQ(st.code(), Status::Code::kIoError) << st.ToString();
  EXPECT_TRUE(Contains(st, doing)) << st.ToString();
  EXPECT_TRUE(Contains(st, std::strerror(err))) << st.ToString();
}

// Plays QEMU's QMP side for one client: the greeting, then {"return": replies[command]} to every command.
class ScriptedQmp {
 public:
  ScriptedQmp(const std::string& path, std::map<std::string, nlohmann::json> replies) : replies_(std::move(replies)) {
    auto listener = Env::Default()->ListenUnix(path);
    EXPECT_TRUE(listener.ok()) << listener.status().ToString();
    if (!listener.ok()) return;
    listener_ = std::move(listener).value();
    thread_ = std::thread([this] { Serve(); });
  }
  ~ScriptedQmp() {
    ::shutdown(listener_.get(), SHUT_RDWR);
    if (conn_.valid()) ::shutdown(conn_.get(), SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Serve() {
    auto conn = Env::Default()->Accept(listener_.get());
    if (!conn.ok()) return;
    conn_ = std::move(conn).value();
    Send({{"QMP", {{"version", {}}, {"capabilities", nlohmann::json::array()}}}});
    std::string buffer;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::recv(conn_.get(), chunk, sizeof(chunk), 0);
      if (n <= 0) return;
      buffer.append(chunk, size_t(n));
      for (size_t nl = buffer.find('\n'); nl != std::string::npos; nl = buffer.find('\n')) {
        const nlohmann::json request = nlohmann::json::parse(buffer.substr(0, nl));
        buffer.erase(0, nl + 1);
        const std::string command = request["execute"];
        auto it = replies_.find(command);
        Send({{"return", it == replies_.end() ? nlohmann::json::object() : it->second}, {"id", request["id"]}});
      }
    }
  }
  void Send(const nlohmann::json& message) {
    const std::string line = message.dump() + "\r\n";
    (void)WriteFull(conn_.get(), line.data(), line.size());
  }

  std::map<std::string, nlohmann::json> replies_;
  UniqueFd listener_, conn_;
  std::thread thread_;
};

TEST(QmpEnvTest, ConnectsAndNegotiatesThroughTheEnv) {
  TempDir dir;
  ScriptedQmp qemu(dir / "qmp.sock", {{"query-status", {{"status", "running"}}}});
  FaultInjectingEnv env;
  auto qmp = QmpClient::Connect(dir / "qmp.sock", 2000, &env);
  ASSERT_TRUE(qmp.ok()) << qmp.status().ToString();
  EXPECT_EQ(env.calls(Op::kConnect), 1);
  auto status = (*qmp)->Execute("query-status");
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  EXPECT_EQ((*status)["status"], "running");
}

// A refusal is retried until the deadline (on the Env's clock: a FakeClock makes it instantaneous), then Timeout
// names the refusal.
TEST(QmpEnvTest, ARefusedConnectTimesOutNamingTheRefusal) {
  FakeClock clock;
  FaultInjectingEnv env(Env::Default(), &clock);
  env.Fail(Op::kConnect, Status::NotFound("connect to qmp.sock: Connection refused"));
  auto qmp = QmpClient::Connect("/tmp/tandem-no-such-dir/qmp.sock", 200, &env);
  ASSERT_FALSE(qmp.ok());
  EXPECT_TRUE(qmp.status().IsTimeout()) << qmp.status().ToString();
  EXPECT_TRUE(Contains(qmp.status(), "Connection refused")) << qmp.status().ToString();
  EXPECT_EQ(env.calls(Op::kConnect), 41);  // every 5 ms from 0 to 200 ms
}

TEST(QmpEnvTest, APermissionErrorIsReturnedAtOnce) {
  FakeClock clock;
  FaultInjectingEnv env(Env::Default(), &clock);
  env.Fail(Op::kConnect, Status::FromErrno("connect to qmp.sock", EACCES));
  auto qmp = QmpClient::Connect("/tmp/tandem-no-such-dir/qmp.sock", 200, &env);
  ExpectIoError(qmp.status(), "QMP socket", EACCES);
  EXPECT_EQ(env.calls(Op::kConnect), 1);
}

TEST(ColoEndpointEnvTest, AListenFailureIsAClearError) {
  TempDir dir;
  FaultInjectingEnv env;
  env.Fail(Op::kListen, Status::FromErrno("bind", EADDRINUSE), -1, "colo.sock");
  auto endpoint = ColoEndpoint::Listen(dir / "colo.sock", &env);
  ASSERT_FALSE(endpoint.ok());
  ExpectIoError(endpoint.status(), "COLO socket", EADDRINUSE);
}

TEST(ColoEndpointEnvTest, AnAcceptFailureIsAClearError) {
  TempDir dir;
  FaultInjectingEnv env;
  env.Fail(Op::kAccept, Status::FromErrno("accept", EMFILE));
  auto endpoint = ColoEndpoint::Listen(dir / "colo.sock", &env);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status().ToString();
  auto qemu = Env::Default()->ConnectUnix(dir / "colo.sock");  // makes the listener readable
  ASSERT_TRUE(qemu.ok());
  ExpectIoError((*endpoint)->Accept(2000), "COLO connection", EMFILE);
}

// The standby QEMU waits for the migration, but tandem cannot reach its incoming socket.
TEST(ResumeEnvTest, AnUnreachableIncomingSocketIsAClearError) {
  TempDir dir;
  ScriptedQmp qemu(dir / "qmp.sock", {{"query-status", {{"status", "inmigrate"}}}});
  auto qmp = QmpClient::Connect(dir / "qmp.sock", 2000);
  ASSERT_TRUE(qmp.ok()) << qmp.status().ToString();
  FaultInjectingEnv env;
  env.Fail(Op::kConnect, Status::FromErrno("connect", EACCES), -1, "incoming.sock");
  ExpectIoError(ResumeStandbyQemu(**qmp, "stream", dir / "incoming.sock", 2000, &env), "incoming socket", EACCES);
  EXPECT_EQ(env.calls(Op::kConnect), 1);
}

TEST(QemuProcessEnvTest, ASpawnFailureIsAClearError) {
  TempDir dir;
  FaultInjectingEnv env;
  env.Fail(Op::kSpawn, Status::FromErrno("fork", EAGAIN));
  auto p = QemuProcess::Spawn({"/bin/true"}, dir / "log", &env);
  ASSERT_FALSE(p.ok());
  ExpectIoError(p.status(), "start QEMU", EAGAIN);
}

TEST(QemuProcessEnvTest, AFailedSignalIsReportedAndTheChildKeepsRunning) {
  TempDir dir;
  FaultInjectingEnv env;
  auto p = QemuProcess::Spawn({"/bin/sleep", "100"}, dir / "log", &env);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  env.Fail(Op::kKill, Status::FromErrno("kill", EPERM), 1);
  ExpectIoError((*p)->Signal(SIGTERM), "QEMU", EPERM);
  EXPECT_TRUE((*p)->Running());
  ASSERT_TRUE((*p)->Signal(SIGTERM).ok());  // the fault was used up
  auto code = (*p)->Wait(5000);
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 128 + SIGTERM);
}

}  // namespace
}  // namespace tandem::qemu
