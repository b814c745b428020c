#include "roles/status_report.h"

#include <gtest/gtest.h>

namespace tandem::roles {
namespace {

TEST(StatusReportTest, MetricsAreATableWithOneColumnPerRole) {
  const nlohmann::json status = {
      {"primary", {{"state", "running"}, {"metrics", {{"tandem_protected", 1}, {"tandem_epoch_raw_bytes_total", 34152008}}}}},
      {"standby", {{"state", "standby"}, {"metrics", {{"tandem_protected", 1}, {"tandem_heartbeat_loss_ratio", 0.25}}}}},
      {"memory_files", nlohmann::json::array()}};
  const std::string text = FormatStatus("vm1", status);
  const size_t header = text.find("METRIC");
  ASSERT_NE(header, std::string::npos) << text;
  const std::string table = text.substr(header);
  EXPECT_NE(table.find("primary"), std::string::npos) << table;
  EXPECT_LT(table.find("primary"), table.find("standby")) << table;
  auto row = [&](const std::string& name) {
    const size_t at = table.find("\n" + name + " ");
    return at == std::string::npos ? std::string() : table.substr(at + 1, table.find('\n', at + 1) - at - 1);
  };
  EXPECT_NE(row("tandem_protected").find(" 1 "), std::string::npos) << row("tandem_protected");
  EXPECT_NE(row("tandem_epoch_raw_bytes_total").find("34152008"), std::string::npos) << table;
  EXPECT_EQ(row("tandem_epoch_raw_bytes_total").back(), '-') << "the standby has no such figure: " << table;
  EXPECT_NE(row("tandem_heartbeat_loss_ratio").find("0.25"), std::string::npos) << table;
}

TEST(StatusReportTest, ThePrimarysRowSaysHowOftenItCheckpointsAndWhy) {
  const nlohmann::json status = {
      {"primary", {{"state", "running"}, {"epoch_interval", "at 40 ms (paused 10.0%, limit 5%) (epoch_ms = auto)"}}},
      {"memory_files", nlohmann::json::array()}};
  EXPECT_NE(FormatStatus("vm1", status).find("checkpoints at 40 ms (paused 10.0%, limit 5%) (epoch_ms = auto)"),
            std::string::npos)
      << FormatStatus("vm1", status);
}

TEST(StatusReportTest, NoMetricsNoTable) {
  const nlohmann::json status = {{"primary", {{"state", "not running here"}}}, {"memory_files", nlohmann::json::array()}};
  EXPECT_EQ(FormatStatus("vm1", status).find("METRIC"), std::string::npos);
}

}  // namespace
}  // namespace tandem::roles
