// Env::Default() on real files, sockets and processes, and FaultInjectingEnv failing chosen operations.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>

#include "common/env.h"
#include "common/fault_injecting_env.h"
#include "tests/support/temp_dir.h"

namespace tandem {
namespace {

using Op = FaultInjectingEnv::Op;

using TempDir = ::tandem::testing::TempDir;

std::string Contents(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(EnvTest, WriteFileAtomicallyReplacesTheFileAndLeavesNoTemporary) {
  TempDir dir;
  Env* env = Env::Default();
  ASSERT_TRUE(env->WriteFileAtomically(dir.file("f"), "old").ok());
  ASSERT_TRUE(env->WriteFileAtomically(dir.file("f"), "new contents").ok());
  auto back = env->ReadFile(dir.file("f"));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, "new contents");
  EXPECT_FALSE(std::filesystem::exists(dir.file("f.tmp")));
  EXPECT_EQ(std::filesystem::status(dir.file("f")).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

TEST(EnvTest, ReadFileOfAMissingFileIsNotFound) {
  TempDir dir;
  auto r = Env::Default()->ReadFile(dir.file("absent"));
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound) << r.status().ToString();
}

TEST(EnvTest, ReadFileRefusesAFileLargerThanAsked) {
  TempDir dir;
  ASSERT_TRUE(Env::Default()->WriteFileAtomically(dir.file("f"), std::string(100, 'x')).ok());
  EXPECT_TRUE(Env::Default()->ReadFile(dir.file("f"), 99).status().IsCorruption());
}

// Each step of the atomic write fails in turn: the error names the step, the old file is intact, no temporary.
TEST(EnvTest, AFailedStepOfAnAtomicWriteKeepsTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("state");
  ASSERT_TRUE(Env::Default()->WriteFileAtomically(path, "old").ok());
  struct Case {
    Op op;
    const char* subject;
    int err;
  };
  for (const Case& c : {Case{Op::kOpenFile, "state.tmp", EACCES}, Case{Op::kSyncFile, "state.tmp", EIO},
                        Case{Op::kRename, "state", ENOSPC}}) {
    FaultInjectingEnv env;
    env.Fail(c.op, Status::FromErrno("injected", c.err), -1, c.subject);
    Status st = env.WriteFileAtomically(path, "new");
    EXPECT_EQ(st.code(), Status::Code::kIoError) << st.ToString();
    EXPECT_NE(st.message().find(std::strerror(c.err)), std::string::npos) << st.ToString();
    EXPECT_EQ(env.failures(c.op), 1);
    EXPECT_EQ(Contents(path), "old");
    EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  }
}

// After the rename the new file is in place, but not yet durable: a failed directory fsync is still an error.
TEST(EnvTest, AFailedDirectorySyncIsReported) {
  TempDir dir;
  FaultInjectingEnv env;
  env.Fail(Op::kSyncFile, Status::FromErrno("injected", EIO), -1, dir.path());
  Status st = env.WriteFileAtomically(dir.file("state"), "new");
  EXPECT_EQ(st.code(), Status::Code::kIoError) << st.ToString();
  EXPECT_EQ(env.failures(Op::kSyncFile), 1);
  EXPECT_EQ(env.calls(Op::kSyncFile), 2);  // the file's fsync passed, the directory's failed
}

TEST(EnvTest, FaultsHonourTheirCountAndSubject) {
  TempDir dir;
  FaultInjectingEnv env;
  env.Fail(Op::kOpenFile, Status::IoError("twice"), 2, "/a");
  ASSERT_TRUE(env.WriteFileAtomically(dir.file("b"), "x").ok());  // another subject
  EXPECT_FALSE(env.ReadFile(dir.file("a")).ok());
  EXPECT_FALSE(env.ReadFile(dir.file("a")).ok());
  EXPECT_EQ(env.ReadFile(dir.file("a")).status().code(), Status::Code::kNotFound);  // the fault is used up
  EXPECT_EQ(env.failures(Op::kOpenFile), 2);
  env.Fail(Op::kOpenFile, Status::IoError("always"));
  env.Heal(Op::kOpenFile);
  EXPECT_TRUE(env.ReadFile(dir.file("b")).ok());
}

TEST(EnvTest, ASecondLockOnTheSameFileIsRefused) {
  TempDir dir;
  auto first = Env::Default()->LockFile(dir.file("lock"));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = Env::Default()->LockFile(dir.file("lock"));
  EXPECT_EQ(second.status().code(), Status::Code::kIoError);
  first->reset();
  EXPECT_TRUE(Env::Default()->LockFile(dir.file("lock")).ok());
}

TEST(EnvTest, UnixSocketsConnectListenAndAccept) {
  TempDir dir;
  Env* env = Env::Default();
  EXPECT_EQ(env->ConnectUnix(dir.file("sock")).status().code(), Status::Code::kNotFound);
  auto listener = env->ListenUnix(dir.file("sock"));
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  auto client = env->ConnectUnix(dir.file("sock"));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto server = env->Accept(listener->get());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_EQ(send(client->get(), "hi", 2, 0), 2);
  char buf[2];
  EXPECT_EQ(recv(server->get(), buf, 2, 0), 2);
  EXPECT_EQ(std::string(buf, 2), "hi");
  EXPECT_TRUE(env->ConnectUnix(std::string(200, 'x')).status().code() == Status::Code::kInvalidArgument);
}

// Retries of a refused connect run on the Env's clock: a FakeClock makes the whole wait instantaneous.
TEST(EnvTest, ConnectUnixUntilRetriesARefusalUntilTheDeadline) {
  FakeClock clock;
  FaultInjectingEnv env(Env::Default(), &clock);
  env.Fail(Op::kConnect, Status::NotFound("connect: Connection refused"));
  auto fd = env.ConnectUnixUntil("/nowhere.sock", clock.NowNanos() + 100'000'000, 10'000'000);
  EXPECT_TRUE(fd.status().IsTimeout()) << fd.status().ToString();
  EXPECT_NE(fd.status().message().find("Connection refused"), std::string::npos) << fd.status().ToString();
  EXPECT_EQ(env.calls(Op::kConnect), 11);  // at 0, 10, ..., 100 ms
}

TEST(EnvTest, ConnectUnixUntilReturnsAHardErrorAtOnce) {
  FakeClock clock;
  FaultInjectingEnv env(Env::Default(), &clock);
  env.Fail(Op::kConnect, Status::FromErrno("connect", EACCES));
  auto fd = env.ConnectUnixUntil("/nowhere.sock", clock.NowNanos() + 100'000'000, 10'000'000);
  EXPECT_EQ(fd.status().code(), Status::Code::kIoError) << fd.status().ToString();
  EXPECT_EQ(env.calls(Op::kConnect), 1);
}

TEST(EnvTest, SpawnWaitAndKillAChild) {
  TempDir dir;
  Env* env = Env::Default();
  auto exits = env->Spawn({"/bin/sh", "-c", "echo out; exit 3"}, dir.file("log"));
  ASSERT_TRUE(exits.ok()) << exits.status().ToString();
  auto code = env->Wait(*exits, /*block=*/true);
  ASSERT_TRUE(code.ok() && code->has_value());
  EXPECT_EQ(**code, 3);
  EXPECT_EQ(Contents(dir.file("log")), "out\n");

  auto sleeper = env->Spawn({"/bin/sleep", "100"}, dir.file("log"));
  ASSERT_TRUE(sleeper.ok());
  auto running = env->Wait(*sleeper, /*block=*/false);
  ASSERT_TRUE(running.ok());
  EXPECT_FALSE(running->has_value());
  ASSERT_TRUE(env->Kill(*sleeper, SIGKILL).ok());
  code = env->Wait(*sleeper, /*block=*/true);
  ASSERT_TRUE(code.ok() && code->has_value());
  EXPECT_EQ(**code, 128 + SIGKILL);
}

TEST(EnvTest, SpawnReportsAnExecFailure) {
  TempDir dir;
  auto pid = Env::Default()->Spawn({dir.file("no-such-binary")}, dir.file("log"));
  EXPECT_EQ(pid.status().code(), Status::Code::kIoError);
  EXPECT_NE(pid.status().message().find("No such file"), std::string::npos) << pid.status().ToString();
}

}  // namespace
}  // namespace tandem
