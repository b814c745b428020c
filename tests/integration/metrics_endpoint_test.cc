// The metrics endpoint of real tandem roles, scraped with a real HTTP client (cpp-httplib). Runs without KVM:
// under TCG the pair exists up to the first checkpoint (QEMU's COLO deadlocks there), which is enough to see the
// standby receive and apply epoch 0 (the full resync) and the primary ship it. The figures that need repeated
// checkpoints (the primary's epochs and pauses) are checked only where KVM runs the guest.
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <sstream>
#include <thread>

#include "tests/integration/cluster.h"
#include "tests/support/free_port.h"
#include "tests/support/text_file.h"

namespace tandem::testing {
namespace {

using nlohmann::json;

// What every role serves (the minimum).
const char* const kRequired[] = {"tandem_role", "tandem_protected", "tandem_term", "tandem_epochs_total",
                                 "tandem_checkpoint_pause_seconds", "tandem_replication_lag_epochs"};

struct Endpoint {
  int port = 0;
  // The exposition, or "" when the endpoint does not answer 200.
  std::string Scrape() const {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(1);
    client.set_read_timeout(3);
    auto response = client.Get("/metrics");
    return response && response->status == 200 ? response->body : "";
  }
};

// The value of `series` (name with its labels, as the exposition writes it), if the text has it.
std::optional<double> Value(const std::string& text, const std::string& series) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::strtod(line.c_str() + series.size() + 1, nullptr);
  }
  return std::nullopt;
}

double ValueOr0(const std::string& text, const std::string& series) { return Value(text, series).value_or(0); }

void ExpectRequiredFamilies(const std::string& text, const char* role) {
  for (const char* name : kRequired) {
    EXPECT_NE(text.find("# TYPE " + std::string(name) + " "), std::string::npos) << role << " lacks " << name << "\n"
                                                                                   << text;
  }
  EXPECT_NE(text.find("# TYPE tandem_checkpoint_pause_seconds histogram"), std::string::npos) << text;
  EXPECT_TRUE(Value(text, "tandem_checkpoint_pause_seconds_bucket{le=\"+Inf\"}").has_value()) << text;
}

// Scrapes every 50 ms for up to `timeout_ms` until `done(text)`; the last text.
template <typename Done>
std::string ScrapeUntil(const Endpoint& e, int timeout_ms, Done done) {
  std::string text;
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    text = e.Scrape();
    if (!text.empty() && done(text)) return text;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return text;
}

class MetricsEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(TANDEM_TEST_GUEST, R_OK) != 0) GTEST_SKIP() << "!!! SKIPPED: the test guest is not built";
    kvm_ = KvmUnusableReason().empty();
    primary_.port = FreePort(SOCK_STREAM);
    standby_.port = FreePort(SOCK_STREAM);
    // The same file for both roles on one host: each role its own port.
    config_ = std::string(kvm_ ? "" : "[vm]\naccel = \"tcg\"\n") + "[metrics]\nprimary_address = \"127.0.0.1:" +
              std::to_string(primary_.port) + "\"\nstandby_address = \"127.0.0.1:" + std::to_string(standby_.port) +
              "\"\n";
  }
  bool kvm_ = false;
  Endpoint primary_, standby_;
  std::string config_;
};

TEST_F(MetricsEndpointTest, StandbyWithNoPrimaryServesMetricsUnprotected) {
  Cluster c(config_);
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  const std::string text = ScrapeUntil(standby_, 5000, [](const std::string&) { return true; });
  ASSERT_FALSE(text.empty()) << "no answer on 127.0.0.1:" << standby_.port << c.Diagnostics();
  ExpectRequiredFamilies(text, "standby");
  EXPECT_EQ(Value(text, "tandem_protected"), 0) << text;
  EXPECT_EQ(Value(text, "tandem_role{role=\"standby\"}"), 1) << text;
  EXPECT_EQ(Value(text, "tandem_role{role=\"primary\"}"), 0) << text;
  EXPECT_EQ(Value(text, "tandem_epochs_total"), 0) << text;
  // One series per heartbeat link, named by its addresses.
  EXPECT_NE(text.find("tandem_heartbeat_link_up{local=\"127.0.0.1:"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_heartbeat_link_up{local=\"127.0.0.2:"), std::string::npos) << text;

  // `tandem status` shows the same figures as a table, --json under "metrics".
  const std::string out = c.dir() + "/status.out";
  ASSERT_EQ(system((std::string(TANDEM_BINARY) + " status --config " + c.config_path() + " > " + out).c_str()), 0);
  const std::string table = ReadWholeFile(out);
  EXPECT_NE(table.find("METRIC"), std::string::npos) << table;
  EXPECT_NE(table.find("tandem_protected"), std::string::npos) << table;
  ASSERT_EQ(system((std::string(TANDEM_BINARY) + " status --json --config " + c.config_path() + " > " + out).c_str()), 0);
  const json status = json::parse(ReadWholeFile(out), nullptr, false);
  ASSERT_TRUE(status.is_object()) << ReadWholeFile(out);
  EXPECT_EQ(status["standby"]["metrics"].value("tandem_protected", -1.0), 0) << status.dump(2);
  EXPECT_EQ(status["standby"]["metrics"].value("tandem_role{role=\"standby\"}", -1.0), 1) << status.dump(2);
}

TEST_F(MetricsEndpointTest, WitnessServesItsRoleAndItsDecisions) {
  Endpoint witness;
  witness.port = FreePort(SOCK_STREAM);
  // [metrics] address: every role without its own, here only the witness.
  Cluster c(config_ + "address = \"127.0.0.1:" + std::to_string(witness.port) + "\"\n");
  const std::string idle = ScrapeUntil(witness, 10000, [](const std::string&) { return true; });
  ASSERT_FALSE(idle.empty()) << "no answer on 127.0.0.1:" << witness.port << c.Diagnostics();
  EXPECT_EQ(Value(idle, "tandem_role{role=\"witness\"}"), 1) << idle;
  EXPECT_EQ(Value(idle, "tandem_witness_serving"), 1) << idle;
  EXPECT_EQ(Value(idle, "tandem_witness_grants_total"), 0) << idle;
  c.StartStandby();
  c.StartPrimary();
  // The primary's registration is granted, and its renewals every heartbeat interval.
  const std::string busy = ScrapeUntil(witness, 30000, [](const std::string& text) {
    return ValueOr0(text, "tandem_witness_grants_total") >= 2;
  });
  EXPECT_GE(ValueOr0(busy, "tandem_witness_grants_total"), 2) << busy << c.Diagnostics();
  EXPECT_GT(ValueOr0(busy, "tandem_witness_datagrams_total"), ValueOr0(idle, "tandem_witness_datagrams_total"));
}

TEST_F(MetricsEndpointTest, ScrapesOfARunningPairShowTheFiguresMove) {
  Cluster c(config_);
  c.StartStandby();
  ASSERT_TRUE(c.WaitFor("standby", 30000, [](const json& s) { return s.value("state", "") == "standby"; }))
      << c.Diagnostics();
  const std::string standby_before = standby_.Scrape();
  ASSERT_FALSE(standby_before.empty()) << c.Diagnostics();
  c.StartPrimary();
  // The primary serves from its start, before QEMU and before the guard lets it run the VM.
  const std::string primary_before = ScrapeUntil(primary_, 10000, [](const std::string&) { return true; });
  ASSERT_FALSE(primary_before.empty()) << "primary endpoint does not answer" << c.Diagnostics();
  ExpectRequiredFamilies(primary_before, "primary");
  EXPECT_EQ(Value(primary_before, "tandem_role{role=\"primary\"}"), 1) << primary_before;

  // The full resync (epoch 0, read from the live guest RAM) is sent and applied. It becomes a resume point only
  // with epoch 1 applied (FORMAT.md), which needs a checkpoint: under TCG neither role ever says protected.
  const std::string primary_after = ScrapeUntil(primary_, 60000, [&](const std::string& t) {
    return ValueOr0(t, "tandem_resyncs_total{kind=\"full\"}") == 1 && (!kvm_ || ValueOr0(t, "tandem_protected") == 1);
  });
  ASSERT_EQ(Value(primary_after, "tandem_resyncs_total{kind=\"full\"}"), 1) << primary_after << c.Diagnostics();
  const std::string standby_after = ScrapeUntil(standby_, 10000, [&](const std::string& t) {
    return ValueOr0(t, "tandem_epochs_total") >= 1 && (!kvm_ || ValueOr0(t, "tandem_protected") == 1);
  });
  ASSERT_FALSE(standby_after.empty()) << c.Diagnostics();

  // Primary: the resync's guest bytes (the guest's data pages: a fresh standby's replica is all zero pages, which
  // its page hashes keep) went out, fewer on the wire (they compress).
  const double raw = ValueOr0(primary_after, "tandem_epoch_raw_bytes_total");
  const double wire = ValueOr0(primary_after, "tandem_epoch_wire_bytes_total");
  EXPECT_GT(ValueOr0(primary_after, "tandem_resync_bytes"), 0) << primary_after;
  EXPECT_GE(raw, ValueOr0(primary_after, "tandem_resync_bytes")) << primary_after;
  EXPECT_GT(wire, ValueOr0(primary_before, "tandem_epoch_wire_bytes_total")) << primary_after;
  EXPECT_LT(wire, raw) << primary_after;
  EXPECT_EQ(Value(primary_after, "tandem_resyncs_total{kind=\"full\"}"), 1) << primary_after;
  EXPECT_EQ(Value(primary_after, "tandem_resync_progress_ratio"), 1) << primary_after;
  EXPECT_GE(ValueOr0(primary_after, "tandem_term"), 1) << "the witness granted a term" << primary_after;

  // Standby: epoch 0 applied, its bytes received, the primary heard on the heartbeat links.
  EXPECT_EQ(Value(standby_before, "tandem_epochs_total"), 0) << standby_before;
  EXPECT_GE(ValueOr0(standby_after, "tandem_epochs_total"), 1) << standby_after << c.Diagnostics();
  EXPECT_GT(ValueOr0(standby_after, "tandem_epoch_wire_bytes_total"),
            ValueOr0(standby_before, "tandem_epoch_wire_bytes_total"))
      << standby_after;
  bool heard = false;
  std::istringstream lines(standby_after);
  for (std::string line; std::getline(lines, line);) heard |= line.rfind("tandem_heartbeat_link_up{", 0) == 0 && line.back() == '1';
  EXPECT_TRUE(heard) << "no heartbeat link up on the standby\n" << standby_after;

  fprintf(stderr, "metrics: primary wire_bytes %.0f -> %.0f raw_bytes %.0f resync_bytes %.0f term %.0f; standby "
          "epochs_total %.0f -> %.0f wire_bytes %.0f -> %.0f\n",
          ValueOr0(primary_before, "tandem_epoch_wire_bytes_total"), wire, raw,
          ValueOr0(primary_after, "tandem_resync_bytes"), ValueOr0(primary_after, "tandem_term"),
          ValueOr0(standby_before, "tandem_epochs_total"), ValueOr0(standby_after, "tandem_epochs_total"),
          ValueOr0(standby_before, "tandem_epoch_wire_bytes_total"),
          ValueOr0(standby_after, "tandem_epoch_wire_bytes_total"));
  if (getenv("TANDEM_PRINT_METRICS")) fprintf(stderr, "%s\n%s\n", primary_after.c_str(), standby_after.c_str());
  if (!kvm_) {
    fprintf(stderr, "\n!!! NOT CHECKED (no KVM: %s): the primary's epochs and pauses, which need repeated "
            "checkpoints\n", KvmUnusableReason().c_str());
    return;
  }
  EXPECT_EQ(Value(primary_after, "tandem_protected"), 1) << primary_after;
  EXPECT_EQ(Value(standby_after, "tandem_protected"), 1) << standby_after;
  const std::string primary_later = ScrapeUntil(primary_, 30000, [&](const std::string& t) {
    return ValueOr0(t, "tandem_epochs_total") >= ValueOr0(primary_after, "tandem_epochs_total") + 10;
  });
  EXPECT_GE(ValueOr0(primary_later, "tandem_epochs_total"), ValueOr0(primary_after, "tandem_epochs_total") + 10)
      << primary_later << c.Diagnostics();
  EXPECT_GT(ValueOr0(primary_later, "tandem_checkpoint_pause_seconds_count"),
            ValueOr0(primary_after, "tandem_checkpoint_pause_seconds_count"))
      << primary_later;
  EXPECT_GT(ValueOr0(primary_later, "tandem_epoch"), ValueOr0(primary_after, "tandem_epoch")) << primary_later;
}

}  // namespace
}  // namespace tandem::testing
