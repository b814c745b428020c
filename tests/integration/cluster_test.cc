// The test harness's own judgement: what it takes for QEMU's known hang under TCG (Cluster::TcgColoHang).
#include <gtest/gtest.h>

#include <fstream>

#include "tests/integration/cluster.h"

namespace tandem::testing {
namespace {

constexpr const char* kHangLine =
    "2026-12-05T13:04:01.543Z ERROR standby main: checkpoint stream broke: Timeout: checkpoint: QEMU sent nothing "
    "for 20000 ms";

TEST(ClusterTest, AQemuHungInACheckpointUnderTcgIsRecognisedByTheRolesLogLine) {
  Cluster c("[vm]\naccel = \"tcg\"\n");
  EXPECT_EQ(c.TcgColoHang(), "");
  std::ofstream(c.dir() + "/standby.log") << "2026-12-05T13:03:39.642Z INFO  standby shipper: full epoch 0 sent\n"
                                          << kHangLine << "\nlater line\n";
  EXPECT_EQ(c.TcgColoHang(), std::string("standby: ") + kHangLine);
}

TEST(ClusterTest, ACheckpointThatNeverStartedIsNoQemuHang) {
  Cluster c("[vm]\naccel = \"tcg\"\n");
  std::ofstream(c.dir() + "/primary.log")
      << "2026-12-05T13:04:01.543Z ERROR primary main: checkpoint stream broke: Timeout: waiting for "
         "CHECKPOINT_REQUEST: QEMU sent nothing for 20000 ms\n";
  EXPECT_EQ(c.TcgColoHang(), "");
}

TEST(ClusterTest, TheSameLineUnderKvmIsNoExcuse) {
  Cluster c("[vm]\naccel = \"kvm\"\n");
  std::ofstream(c.dir() + "/primary.log") << kHangLine << "\n";
  EXPECT_EQ(c.TcgColoHang(), "");
}

}  // namespace
}  // namespace tandem::testing
