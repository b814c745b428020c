// Issue 4's fault scenarios: real tandem processes (witness, standby, primary) on three namespaced "hosts" joined by
// a router, real QEMU under KVM running the bare-metal test guest, faults injected in the router. Throughout every
// scenario the invariant monitor checks that no two VMs run at once and that no term goes backwards. Each scenario
// appends one JSON line to $TANDEM_FAULT_RESULTS (scripts/fault-tests aggregates them).
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <sstream>
#include <thread>

#include "tests/faults/fault_cluster.h"

namespace tandem::faults {
namespace {

using nlohmann::json;

#define REQUIRE_LAB_AND_KVM()                                                                    \
  do {                                                                                           \
    TANDEM_SKIP_UNLESS_AVAILABLE(LabUnavailableReason(), "FAULT LAB UNAVAILABLE: ");             \
    TANDEM_REQUIRE_KVM();                                                                        \
  } while (0)

void Sleep(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

bool EverInState(const RoleReport* r, const std::string& state) {
  if (!r) return false;
  return std::any_of(r->states.begin(), r->states.end(), [&](const auto& s) { return s.second == state; });
}

// The standby took over: it said so, or its VM was seen running.
bool StandbyTookOver(const MonitorReport& r) {
  const RoleReport* s = r.role("standby");
  return EverInState(s, "active") || (s && s->running_samples > 0);
}

// First RESUME event of `role`'s QEMU at or after realtime t0 (ms), or -1.
double FirstResumeAfter(const MonitorReport& r, const std::string& role, double t0) {
  const RoleReport* x = r.role(role);
  if (!x) return -1;
  for (double t : x->resume_events_ms) {
    if (t >= t0) return t;
  }
  return -1;
}

// A line of `log` containing every word (case-insensitive).
bool LogHasLine(const std::string& log, std::initializer_list<const char*> words) {
  std::istringstream in(log);
  for (std::string line; std::getline(in, line);) {
    std::string lower = line;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    bool all = true;
    for (const char* w : words) all = all && lower.find(w) != std::string::npos;
    if (all) return true;
  }
  return false;
}

// The monitor's invariants, into the record and as expectations.
void CheckInvariants(FaultCluster& c, ScenarioRecord& rec) {
  const MonitorReport r = c.monitor().Report();
  rec.split_brain = r.split_brain;
  rec.term_regressions = r.term_regressions();
  rec.extra["looked_both_running"] = r.looked_both_running;
  EXPECT_EQ(r.split_brain, 0u) << "TWO VMs RAN AT THE SAME TIME: " << r.first_violation << c.Diagnostics();
  EXPECT_EQ(r.term_regressions(), 0u) << r.first_violation << c.Diagnostics();
  // The monitor really watched: both QEMUs answered many polls.
  EXPECT_GT(r.role("primary")->samples, 50u) << c.Diagnostics();
  EXPECT_GT(r.role("standby")->samples, 50u) << c.Diagnostics();
}

// Detection (fault -> standby declares the primary lost) and failover (fault -> standby's VM running), from the
// standby QEMU's RESUME event and the standby's own detection->running time.
void MeasureFailover(FaultCluster& c, ScenarioRecord& rec, double fault_ms) {
  const MonitorReport r = c.monitor().Report();
  const double resumed = FirstResumeAfter(r, "standby", fault_ms);
  const json s = c.StatusOf("standby");
  if (resumed > 0) rec.failover_ms = resumed - fault_ms;
  if (s.is_object() && s.contains("detected_unix_ms") && s["detected_unix_ms"].is_number()) {
    rec.detect_ms = s["detected_unix_ms"].get<double>() - fault_ms;
  } else if (resumed > 0 && s.is_object() && s.contains("resume_ms") && s["resume_ms"].is_number()) {
    rec.detect_ms = rec.failover_ms - s["resume_ms"].get<double>();
  }
  fprintf(stderr, "[%s] detect_ms=%.1f failover_ms=%.1f\n", rec.name.c_str(), rec.detect_ms, rec.failover_ms);
}

std::unique_ptr<FaultCluster> StartCluster(ClusterOptions options = {}, uint64_t epochs = 10) {
  auto c = std::make_unique<FaultCluster>(options);
  EXPECT_TRUE(c->init_status().ok()) << c->init_status().ToString();
  if (!c->init_status().ok()) return nullptr;
  std::string why;
  const bool ok = c->StartProtected(epochs, &why);
  EXPECT_TRUE(ok) << why << c->Diagnostics();
  return ok ? std::move(c) : nullptr;
}

// A primary that stopped its VM: "fenced" (may resume at the same term) or "superseded" (a newer term exists).
bool Fenced(const json& s) {
  const std::string state = s.value("state", "");
  return state == "fenced" || state == "superseded";
}

// Lines "counter=<n> ok" the role's guest printed on its serial console.
size_t CounterLines(const FaultCluster& c, const std::string& role) {
  const std::string serial = c.Serial(role);
  size_t n = 0;
  for (size_t pos = serial.find(" ok\n"); pos != std::string::npos; pos = serial.find(" ok\n", pos + 1)) ++n;
  return n;
}

bool WaitForCounters(const FaultCluster& c, const std::string& role, size_t lines, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 50) {
    if (CounterLines(c, role) >= lines) return true;
    Sleep(50);
  }
  return false;
}

// The guest the standby resumed continues: it prints counters again, did not reboot, and never saw a state mixing
// two epochs.
void ExpectResumedGuestConsistent(const FaultCluster& c) {
  EXPECT_TRUE(WaitForCounters(c, "standby", 1, 10000)) << "the resumed guest prints nothing" << c.Diagnostics();
  const std::string serial = c.Serial("standby");
  EXPECT_EQ(serial.find("tandem-guest boot"), std::string::npos) << "the resumed guest rebooted" << c.Diagnostics();
  EXPECT_EQ(serial.find("INVARIANT BROKEN"), std::string::npos) << "mixed-epoch state" << c.Diagnostics();
}

bool PrimaryVmRunningNow(FaultCluster& c) {
  const MonitorReport r = c.monitor().Report();
  return r.role("primary")->last_running_ms > WallMs() - 500;
}

TEST(FaultTest, PrimaryKilledStandbyTakesOverWithoutSplitBrain) {
  ScenarioRecord rec("primary_killed");
  REQUIRE_LAB_AND_KVM();
  auto c = StartCluster();
  ASSERT_TRUE(c);
  // The guest's firmware boot is slow under this nested KVM: let it print before the fault, to judge the takeover.
  ASSERT_TRUE(WaitForCounters(*c, "primary", 2, 20000)) << c->Diagnostics();
  const double t0 = WallMs();
  c->Kill9("primary");  // its QEMU, then tandem
  ASSERT_TRUE(c->WaitFor("standby", 15000, [](const json& s) { return s.value("state", "") == "active"; }))
      << c->Diagnostics();
  Sleep(500);
  MeasureFailover(*c, rec, t0);
  EXPECT_GT(rec.failover_ms, 0) << "no RESUME event from the standby's QEMU" << c->Diagnostics();
  const json s = c->StatusOf("standby");
  if (s.contains("term")) {
    EXPECT_GE(s["term"].get<uint64_t>(), 2u) << "a takeover must start a new term";
  }
  ExpectResumedGuestConsistent(*c);
  CheckInvariants(*c, rec);
}

TEST(FaultTest, PrimaryIsolatedFencesItselfBeforeStandbyTakesOver) {
  ScenarioRecord rec("primary_isolated");
  REQUIRE_LAB_AND_KVM();
  auto c = StartCluster();
  ASSERT_TRUE(c);
  ASSERT_TRUE(WaitForCounters(*c, "primary", 2, 20000)) << c->Diagnostics();
  const double t0 = WallMs();
  ASSERT_TRUE(c->lab().Isolate(Host::kPrimary).ok());
  ASSERT_TRUE(c->WaitFor("standby", 15000, [](const json& s) { return s.value("state", "") == "active"; }))
      << c->Diagnostics();
  EXPECT_TRUE(c->WaitFor("primary", 5000, Fenced))
      << "the isolated primary did not fence itself" << c->Diagnostics();
  Sleep(500);
  MeasureFailover(*c, rec, t0);
  const MonitorReport r = c->monitor().Report();
  const double resumed = FirstResumeAfter(r, "standby", t0);
  ASSERT_GT(resumed, 0) << c->Diagnostics();
  // The isolated primary's VM was last seen running before the standby's VM resumed.
  EXPECT_LT(r.role("primary")->last_running_ms, resumed)
      << "primary VM still running at " << r.role("primary")->last_running_ms << " after the standby resumed at "
      << resumed << c->Diagnostics();
  rec.extra["primary_last_running_before_resume_ms"] = resumed - r.role("primary")->last_running_ms;
  ExpectResumedGuestConsistent(*c);
  CheckInvariants(*c, rec);
}

TEST(FaultTest, HostLinksCutButWitnessReachableNoFailover) {
  ScenarioRecord rec("host_links_cut");
  REQUIRE_LAB_AND_KVM();
  auto c = StartCluster();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->lab().SetLinkUp(Host::kPrimary, Link::kData0, false).ok());
  ASSERT_TRUE(c->lab().SetLinkUp(Host::kPrimary, Link::kData1, false).ok());
  // The standby loses the primary on every link, but the witness still hears the primary: no grant, no failover.
  EXPECT_TRUE(c->WaitFor("standby", 5000, [](const json& s) {
    return s.contains("peer") && !s["peer"].value("alive", true);
  })) << "the standby never noticed the cut" << c->Diagnostics();
  Sleep(5000);
  MonitorReport r = c->monitor().Report();
  rec.false_failover = StandbyTookOver(r);
  EXPECT_FALSE(rec.false_failover) << "the standby took over while the primary held the witness lease"
                                   << c->Diagnostics();
  EXPECT_TRUE(PrimaryVmRunningNow(*c)) << "the primary's VM stopped although the witness supports it"
                                       << c->Diagnostics();
  EXPECT_FALSE(Fenced(c->StatusOf("primary"))) << c->Diagnostics();
  // Links back: replication resumes (the standby applies new epochs again).
  const uint64_t applied = c->StatusOf("standby").value("last_applied", uint64_t(0));
  ASSERT_TRUE(c->lab().Reconnect(Host::kPrimary).ok());
  EXPECT_TRUE(c->WaitFor("standby", 20000, [&](const json& s) {
    return s.value("last_applied", uint64_t(0)) > applied + 5 && s.value("state", "") == "standby";
  })) << "replication did not resume after the links came back" << c->Diagnostics();
  r = c->monitor().Report();
  rec.false_failover = StandbyTookOver(r);
  EXPECT_FALSE(rec.false_failover) << c->Diagnostics();
  CheckInvariants(*c, rec);
}

// Whether role's status reports link `index` up.
bool LinkUp(const json& s, size_t index) {
  if (!s.is_object() || !s.contains("peer") || !s["peer"].contains("links")) return false;
  const json& links = s["peer"]["links"];
  return links.is_array() && index < links.size() && links[index].value("up", false);
}

TEST(FaultTest, OneOfTwoLinksCutNoFailoverLinkReportedDown) {
  ScenarioRecord rec("one_link_cut");
  REQUIRE_LAB_AND_KVM();
  auto c = StartCluster();
  ASSERT_TRUE(c);
  // data1 carries heartbeats only; data0 also carries the replication stream.
  for (Link link : {Link::kData1, Link::kData0}) {
    const size_t index = link == Link::kData0 ? 0 : 1;
    ASSERT_TRUE(c->lab().SetLinkUp(Host::kPrimary, link, false).ok());
    EXPECT_TRUE(c->WaitFor("standby", 3000, [&](const json& s) { return !LinkUp(s, index) && LinkUp(s, 1 - index); }))
        << "standby does not report " << LinkName(link) << " down and the other up" << c->Diagnostics();
    EXPECT_TRUE(c->WaitFor("primary", 3000, [&](const json& s) { return !LinkUp(s, index) && LinkUp(s, 1 - index); }))
        << "primary does not report " << LinkName(link) << " down" << c->Diagnostics();
    Sleep(2500);
    EXPECT_TRUE(c->StatusOf("standby")["peer"].value("alive", false)) << c->Diagnostics();
    ASSERT_TRUE(c->lab().SetLinkUp(Host::kPrimary, link, true).ok());
    EXPECT_TRUE(c->WaitFor("standby", 5000, [&](const json& s) { return LinkUp(s, 0) && LinkUp(s, 1); }))
        << LinkName(link) << " not reported up again" << c->Diagnostics();
  }
  const MonitorReport r = c->monitor().Report();
  rec.false_failover = StandbyTookOver(r);
  EXPECT_FALSE(rec.false_failover) << c->Diagnostics();
  EXPECT_TRUE(PrimaryVmRunningNow(*c)) << c->Diagnostics();
  EXPECT_FALSE((EverInState(r.role("primary"), "fenced") || EverInState(r.role("primary"), "superseded"))) << c->Diagnostics();
  CheckInvariants(*c, rec);
}

// How often the primary fenced itself (and un-fenced): availability, not safety, but worth reporting.
size_t FenceCount(const FaultCluster& c) {
  size_t n = 0;
  const std::string log = c.Log("primary");
  for (size_t pos = log.find("FENCED at term"); pos != std::string::npos; pos = log.find("FENCED at term", pos + 1)) ++n;
  return n;
}

// 30% loss in each direction and 20 +- 10 ms of delay on every link (heartbeats, replication, witness) for 10 s.
void LossAndDelayScenario(ScenarioRecord& rec, ClusterOptions options) {
  options.relay = true;
  rec.extra["timeout_ms"] = options.timeout_ms;
  rec.extra["promise_ms"] = options.promise_ms;
  rec.extra["lease_ms"] = options.lease_ms;
  auto c = StartCluster(options);
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->lab().SetRelay(20, 10).ok());
  ASSERT_TRUE(c->lab().SetLoss(30).ok());
  const uint64_t applied_before = c->StatusOf("standby").value("last_applied", uint64_t(0));
  Sleep(10000);
  const json during = c->StatusOf("standby");
  ASSERT_TRUE(c->lab().SetLoss(0).ok());
  ASSERT_TRUE(c->lab().SetRelay(0, 0).ok());
  Sleep(2000);
  auto stats = c->lab().RelayStats();
  if (stats.ok()) rec.extra["relay"] = *stats;
  // The links really were degraded: the detector saw a round trip of tens of ms. A status without the links
  // fails here rather than skipping the check.
  ASSERT_TRUE(during.contains("peer") && during["peer"].contains("links"))
      << "standby status has no peer links: " << during.dump() << c->Diagnostics();
  double max_rtt = 0;
  for (const auto& l : during["peer"]["links"]) max_rtt = std::max(max_rtt, l.value("rtt_ms", 0.0));
  rec.extra["rtt_ms_during"] = max_rtt;
  EXPECT_GT(max_rtt, 20.0) << "the relay did not delay heartbeats" << c->Diagnostics();
  const MonitorReport r = c->monitor().Report();
  rec.false_failover = StandbyTookOver(r);
  EXPECT_FALSE(rec.false_failover) << c->Diagnostics();
  EXPECT_TRUE(PrimaryVmRunningNow(*c)) << c->Diagnostics();
  EXPECT_FALSE(Fenced(c->StatusOf("primary"))) << c->Diagnostics();
  rec.extra["primary_fences"] = FenceCount(*c);
  rec.extra["standby_detector_fired"] = LogHasLine(c->Log("standby"), {"peer", "lost", "every link"});
  rec.extra["epochs_applied_during"] = c->StatusOf("standby").value("last_applied", uint64_t(0)) - applied_before;
  CheckInvariants(*c, rec);
}

TEST(FaultTest, LossAndDelayOnAllLinksNoFalseFailover) {
  ScenarioRecord rec("loss_and_delay");
  REQUIRE_LAB_AND_KVM();
  // Larger than the LAN defaults (the design allows it): one-way delay reaches 30 ms and 30% of the packets are
  // lost in each direction.
  ClusterOptions options;
  options.timeout_ms = 150;
  options.promise_ms = 200;
  options.lease_ms = 400;
  LossAndDelayScenario(rec, options);
}

TEST(FaultTest, LossAndDelayWithLanDefaultTimeoutsNoFalseFailover) {
  ScenarioRecord rec("loss_and_delay_lan_defaults");
  REQUIRE_LAB_AND_KVM();
  // The LAN defaults (timeout 60, promise 60, lease 150 ms): the detector may fire falsely, the witness must not
  // grant while the primary renews its lease.
  LossAndDelayScenario(rec, ClusterOptions{});
}

TEST(FaultTest, WitnessDownNoFailoverAlarmAndNoPromotionWithoutGrant) {
  ScenarioRecord rec("witness_down");
  REQUIRE_LAB_AND_KVM();
  auto c = StartCluster();
  ASSERT_TRUE(c);
  c->Kill9("witness");
  Sleep(3000);
  // Alarm: the hosts say the witness is unreachable (status or log).
  auto alarmed = [&](const std::string& role) {
    const json s = c->StatusOf(role);
    if (s.contains("witness") && s["witness"].is_object() && !s["witness"].value("reachable", true)) return true;
    if (s.contains("guard") && s["guard"].is_object() &&
        LogHasLine(s["guard"].value("alarm", std::string()), {"witness", "unreachable"})) {
      return true;
    }
    return LogHasLine(c->Log(role), {"witness", "unreachable"});
  };
  EXPECT_TRUE(alarmed("primary")) << "no witness alarm on the primary" << c->Diagnostics();
  // The issue has both hosts heartbeat the witness; a standby that only talks to it to promote notices later.
  rec.extra["standby_alarm_while_primary_alive"] = alarmed("standby");
  // The primary keeps running on the standby's promise.
  EXPECT_TRUE(PrimaryVmRunningNow(*c)) << c->Diagnostics();
  EXPECT_FALSE(Fenced(c->StatusOf("primary"))) << c->Diagnostics();
  // Second fault: the primary dies while the witness is down. Nobody can grant a new term: the standby must not
  // resume (availability is lost, safety is kept).
  c->Kill9("primary");
  Sleep(3000);
  MonitorReport r = c->monitor().Report();
  rec.false_failover = StandbyTookOver(r);
  EXPECT_FALSE(rec.false_failover) << "the standby promoted itself without the witness's grant" << c->Diagnostics();
  EXPECT_TRUE(alarmed("standby")) << "no witness alarm on the standby although it cannot fail over"
                                  << c->Diagnostics();
  // The witness comes back (its persisted state says the primary held the lease): the lease expires on its clock and
  // the standby is granted the next term.
  const double t_back = WallMs();
  ASSERT_GT(c->Start("witness"), 0);
  EXPECT_TRUE(c->WaitFor("standby", 15000, [](const json& s) { return s.value("state", "") == "active"; }))
      << "no failover once the witness returned" << c->Diagnostics();
  Sleep(300);
  r = c->monitor().Report();
  const double resumed = FirstResumeAfter(r, "standby", t_back - 1);
  if (resumed > 0) rec.extra["witness_back_to_resume_ms"] = resumed - t_back;
  CheckInvariants(*c, rec);
}

TEST(FaultTest, FlappingLinksNoFailover) {
  ScenarioRecord rec("flapping_link");
  REQUIRE_LAB_AND_KVM();
  auto c = StartCluster();
  ASSERT_TRUE(c);
  // One data link flaps fast: the other link carries the heartbeats.
  ASSERT_TRUE(c->lab().StartFlapping(Host::kPrimary, Link::kData0, 50, 50, 4000).ok());
  Sleep(4300);
  c->lab().StopFlapping();
  const uint64_t link_flaps = c->lab().flaps();
  // The whole primary host flaps: down 80 ms (longer than the heartbeat timeout, well inside the lease), up
  // 400 ms. The standby detects every outage, but the witness still sees a valid lease: no failover, no fencing.
  for (Link l : {Link::kData0, Link::kData1, Link::kMgmt}) ASSERT_TRUE(c->lab().SetLinkUp(Host::kPrimary, l, true).ok());
  const double start = WallMs();
  int outages = 0;
  while (WallMs() - start < 5000) {
    ASSERT_TRUE(c->lab().Isolate(Host::kPrimary).ok());
    Sleep(80);
    ASSERT_TRUE(c->lab().Reconnect(Host::kPrimary).ok());
    ++outages;
    Sleep(400);
  }
  Sleep(1000);
  rec.extra["link_flaps"] = link_flaps;
  rec.extra["host_outages"] = outages;
  const MonitorReport r = c->monitor().Report();
  rec.false_failover = StandbyTookOver(r);
  EXPECT_FALSE(rec.false_failover) << c->Diagnostics();
  EXPECT_TRUE(PrimaryVmRunningNow(*c)) << c->Diagnostics();
  rec.extra["primary_fences"] = FenceCount(*c);
  EXPECT_FALSE(Fenced(c->StatusOf("primary"))) << c->Diagnostics();
  CheckInvariants(*c, rec);
}

TEST(FaultTest, OldPrimaryReturnsAfterFailoverStaysFenced) {
  ScenarioRecord rec("old_primary_returns");
  REQUIRE_LAB_AND_KVM();
  auto c = StartCluster();
  ASSERT_TRUE(c);
  const double t0 = WallMs();
  ASSERT_TRUE(c->lab().Isolate(Host::kPrimary).ok());
  ASSERT_TRUE(c->WaitFor("standby", 15000, [](const json& s) { return s.value("state", "") == "active"; }))
      << c->Diagnostics();
  ASSERT_TRUE(c->WaitFor("primary", 5000, Fenced)) << c->Diagnostics();
  Sleep(300);
  MeasureFailover(*c, rec, t0);
  // The partition heals: the old primary hears the new term from the witness and the new active, and must stay
  // fenced; the new active keeps running.
  const double healed = WallMs();
  ASSERT_TRUE(c->lab().Reconnect(Host::kPrimary).ok());
  Sleep(5000);
  const MonitorReport r = c->monitor().Report();
  EXPECT_LT(r.role("primary")->last_running_ms, healed) << "the old primary's VM ran again" << c->Diagnostics();
  EXPECT_TRUE(Fenced(c->StatusOf("primary"))) << c->Diagnostics();
  // Never back to running or active once the standby took over.
  const double took_over = FirstResumeAfter(r, "standby", t0);
  EXPECT_GT(took_over, 0) << c->Diagnostics();
  for (const auto& [ms, state] : r.role("primary")->states) {
    if (ms > took_over) {
      EXPECT_TRUE(state != "running" && state != "active") << state << " at " << ms << c->Diagnostics();
    }
  }
  EXPECT_EQ(c->State("standby"), "active") << c->Diagnostics();
  EXPECT_GT(r.role("standby")->last_running_ms, WallMs() - 500) << "the new active's VM stopped" << c->Diagnostics();
  const json p = c->StatusOf("primary");
  const json s = c->StatusOf("standby");
  if (p.contains("term") && s.contains("term")) {
    rec.extra["old_primary_term"] = p["term"];
    rec.extra["new_active_term"] = s["term"];
    EXPECT_GT(s["term"].get<uint64_t>(), 1u) << c->Diagnostics();
  }
  CheckInvariants(*c, rec);
}

}  // namespace
}  // namespace tandem::faults
