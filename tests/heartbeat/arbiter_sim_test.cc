// The scenarios and a randomized safety property, on simulated time (sim.h): real detectors, arbiters,
// witness and client cores, real encoders and MACs; simulated sockets, clocks (each host its own rate and
// offset) and faults.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "sim.h"

namespace tandem::heartbeat::sim {
namespace {

constexpr double kRho = 1e-3;  // assumed bound on |clock rate - 1|: twice NTP's maximum slew of 500 ppm

// The worst case for the rule: the primary's clock slow (it fences late), the others fast (they expire early).
Config Adversarial(Config c = {}) {
  c.rate[0] = 1 - kRho;
  c.rate[1] = 1 + kRho;
  c.rate[2] = 1 + kRho;
  return c;
}

void ExpectSafe(const World& w) {
  EXPECT_FALSE(w.trace().split_brain) << "two VMs running at t=" << w.trace().split_brain_at / 1e6 << " ms";
  EXPECT_FALSE(w.trace().terms_went_backwards);
  EXPECT_FALSE(w.trace().primary_ran_after_superseded);
  EXPECT_FALSE(w.trace().primary_ran_after_standby_promoted);
}

bool HasAlarm(const World& w, const char* text) {
  for (const auto& a : w.trace().standby_alarms) {
    if (a.find(text) != std::string::npos) return true;
  }
  return w.trace().standby_last_reason.find(text) != std::string::npos;
}

TEST(ArbiterScenarioTest, StartupRunsThePrimaryOnceTheWitnessRegistersIt) {
  World w(Adversarial());
  w.Run();
  ExpectSafe(w);
  // The witness holds registrations for one lease after its own start.
  EXPECT_GE(w.trace().primary_started_at, 150 * kMs * (1 - kRho));
  EXPECT_LT(w.trace().primary_started_at, 200 * kMs);
  EXPECT_EQ(w.trace().primary_fences, 0);
  EXPECT_EQ(w.trace().standby_promoted_at, -1);
  EXPECT_EQ(w.trace().primary_last, PrimaryAction::kRun);
  EXPECT_EQ(w.trace().standby_last, StandbyAction::kWait);
}

TEST(ArbiterScenarioTest, PrimaryKilledStandbyPromotesAfterTheLeaseExpires) {
  World w(Adversarial());
  w.KillPrimary(1000 * kMs);
  w.Run();
  ExpectSafe(w);
  const Trace& t = w.trace();
  ASSERT_GT(t.standby_promoted_at, 0);
  EXPECT_EQ(t.standby_promoted_term, 2u);
  const double detect_ms = (t.standby_detected_loss_at - w.killed_at()) / 1e6;
  const double failover_ms = (t.standby_promoted_at - w.killed_at()) / 1e6;
  printf("primary killed: detection %.1f ms, promotion %.1f ms after the kill (simulated time)\n", detect_ms,
         failover_ms);
  EXPECT_GE(detect_ms, 50);  // timeout 60 ms after the last heartbeat, sent <= 10 ms before the kill
  EXPECT_LE(detect_ms, 62);
  EXPECT_GE(failover_ms, 139);  // the witness lease (150 ms from the last renew's arrival) must run out first
  EXPECT_LE(failover_ms, 165);
}

TEST(ArbiterScenarioTest, IsolatedPrimaryFencesBeforeTheWitnessCouldGrant) {
  World w(Adversarial());
  w.IsolatePrimary(1000 * kMs, true);
  w.Run();
  ExpectSafe(w);
  const Trace& t = w.trace();
  ASSERT_GT(t.primary_first_fence_at, 0);
  ASSERT_GT(t.witness_promote_granted_at, 0);
  ASSERT_GT(t.primary_stopped_at, 0);
  // The VM is actually stopped (decision + fence latency) strictly before the witness grants anyone.
  EXPECT_LT(t.primary_stopped_at, t.witness_promote_granted_at);
  printf("isolated primary: fenced at +%.1f ms, VM stopped at +%.1f ms, witness grant at +%.1f ms, standby running "
         "at +%.1f ms\n",
         (t.primary_first_fence_at - 1000 * kMs) / 1e6, (t.primary_stopped_at - 1000 * kMs) / 1e6,
         (t.witness_promote_granted_at - 1000 * kMs) / 1e6, (t.standby_promoted_at - 1000 * kMs) / 1e6);
  EXPECT_GT(t.standby_promoted_at, 0);
  EXPECT_NE(t.primary_last, PrimaryAction::kRun);
}

TEST(ArbiterScenarioTest, OnlyHostLinksCutNoFailover) {
  World w(Adversarial());
  w.CutHostLinks(1000 * kMs, true);
  w.Run();
  ExpectSafe(w);
  EXPECT_EQ(w.trace().standby_promoted_at, -1);
  EXPECT_EQ(w.trace().primary_fences, 0);  // the witness lease keeps it running
  EXPECT_EQ(w.trace().primary_last, PrimaryAction::kRun);
  EXPECT_EQ(w.trace().standby_last, StandbyAction::kAlarm);
  EXPECT_TRUE(HasAlarm(w, "still holds the witness lease"));
}

TEST(ArbiterScenarioTest, WitnessDownNoFailoverAlarmPrimaryRunsOnThePromise) {
  World w(Adversarial());
  w.StopWitness(1000 * kMs);
  w.KillPrimary(2000 * kMs);
  World healthy(Adversarial());
  healthy.StopWitness(1000 * kMs);
  w.Run();
  healthy.Run();
  ExpectSafe(w);
  ExpectSafe(healthy);
  EXPECT_EQ(healthy.trace().primary_fences, 0);
  EXPECT_EQ(healthy.trace().primary_last, PrimaryAction::kRun);
  ASSERT_NE(healthy.trace().primary_alarm, nullptr);
  EXPECT_NE(std::string(healthy.trace().primary_alarm).find("failover impossible"), std::string::npos);
  // Once the primary also dies, nobody runs: the standby alarms instead of promoting.
  EXPECT_EQ(w.trace().standby_promoted_at, -1);
  EXPECT_EQ(w.trace().standby_last, StandbyAction::kAlarm);
  EXPECT_TRUE(HasAlarm(w, "witness unreachable"));
}

TEST(ArbiterScenarioTest, OneLinkCutChangesNothing) {
  World w(Adversarial());
  w.At(1000 * kMs, [&] { w.channel(0).up = false; });
  w.Run();
  ExpectSafe(w);
  EXPECT_EQ(w.trace().standby_promoted_at, -1);
  EXPECT_EQ(w.trace().primary_fences, 0);
  EXPECT_TRUE(w.trace().standby_alarms.empty());
}

TEST(ArbiterScenarioTest, FlappingLinkChangesNothing) {
  World w(Adversarial());
  for (int64_t t = 500 * kMs; t < 2500 * kMs; t += 25 * kMs) {
    const bool up = (t / (25 * kMs)) % 2 == 0;
    w.At(t, [&w, up] { w.channel(0).up = up; });
  }
  w.At(0, [&w] { w.channel(1).loss = 0.3; });
  w.Run();
  ExpectSafe(w);
  EXPECT_EQ(w.trace().standby_promoted_at, -1);
  EXPECT_EQ(w.trace().primary_fences, 0);
}

// 30% loss and 20 +- 10 ms delay on every channel (host links and both witness links) for 20 s.
Trace LossyWorld(Config c) {
  c.end = 20'000 * kMs;
  World w(c);
  w.At(0, [&w] {
    for (size_t i = 0; i < 4; ++i) {
      w.channel(i).loss = 0.3;
      w.channel(i).delay_min = 10 * kMs;
      w.channel(i).delay_max = 30 * kMs;
    }
  });
  w.Run();
  ExpectSafe(w);
  return w.trace();
}

TEST(ArbiterScenarioTest, LossAndDelayOnEveryLinkNoFalseFailover) {
  // Default timings: no failover, but the 60 ms promise is shorter than the round trip plus losses now and then,
  // so the primary may pause briefly when the lease renewals are unlucky at the same time.
  const Trace t = LossyWorld(Adversarial());
  EXPECT_EQ(t.standby_promoted_at, -1);
  EXPECT_EQ(t.primary_last, PrimaryAction::kRun);
  printf("30%% loss, 20+-10 ms delay, default timings: %d brief fences in 20 s, no failover\n", t.primary_fences);
  // With timings sized for that network (timeout 150, promise 150, lease 400 ms): not even a pause.
  Config c = Adversarial();
  c.timeout = 150 * kMs;
  c.promise = 150 * kMs;
  c.lease = 400 * kMs;
  const Trace wide = LossyWorld(c);
  EXPECT_EQ(wide.standby_promoted_at, -1);
  EXPECT_EQ(wide.primary_fences, 0);
}

TEST(ArbiterScenarioTest, OldPrimaryComesBackSupersededNeverRuns) {
  World w(Adversarial());
  w.IsolatePrimary(1000 * kMs, true);
  w.IsolatePrimary(2000 * kMs, false);
  w.Run();
  ExpectSafe(w);
  ASSERT_GT(w.trace().standby_promoted_at, 0);
  EXPECT_EQ(w.trace().primary_last, PrimaryAction::kSuperseded);
  EXPECT_EQ(w.trace().primary_fences, 1);
}

TEST(ArbiterScenarioTest, WitnessRestartWhilePrimaryDeadDelaysPromotionByItsStartupHold) {
  World w(Adversarial());
  w.KillPrimary(1000 * kMs);
  w.StopWitness(1050 * kMs);
  w.StartWitness(1100 * kMs);
  w.Run();
  ExpectSafe(w);
  ASSERT_GT(w.trace().standby_promoted_at, 0);
  EXPECT_GE(w.trace().witness_promote_granted_at, 1100 * kMs + 149 * kMs);
  EXPECT_EQ(w.trace().standby_promoted_term, 2u);
}

TEST(ArbiterScenarioTest, WitnessRestartDuringNormalOperationChangesNothing) {
  World w(Adversarial());
  w.StopWitness(1000 * kMs);
  w.StartWitness(1030 * kMs);
  w.Run();
  ExpectSafe(w);
  EXPECT_EQ(w.trace().standby_promoted_at, -1);
  EXPECT_EQ(w.trace().primary_fences, 0);
  EXPECT_EQ(w.trace().max_witness_term, 1u);
}

TEST(ArbiterScenarioTest, TwoHostNeverPromoteWaitsForTheOperator) {
  Config c = Adversarial();
  c.witness = false;
  World w(c);
  w.KillPrimary(1000 * kMs);
  w.Run();
  ExpectSafe(w);
  EXPECT_EQ(w.trace().standby_promoted_at, -1);
  EXPECT_TRUE(HasAlarm(w, "start the VM again by hand"));
}

TEST(ArbiterScenarioTest, TwoHostStandbyPromotesSplitsTheBrainUnderAFullPartition) {
  // The documented price of standby-promotes: this is why it is not the default.
  Config c = Adversarial();
  c.witness = false;
  c.policy = TwoHostPolicy::kStandbyPromotes;
  World w(c);
  w.CutHostLinks(1000 * kMs, true);
  w.Run();
  EXPECT_TRUE(w.trace().split_brain);
  // ...whereas the fenced variant keeps them apart with the promise alone.
  c.policy = TwoHostPolicy::kStandbyPromotesPrimaryFences;
  World f(c);
  f.CutHostLinks(1000 * kMs, true);
  f.Run();
  ExpectSafe(f);
  EXPECT_GT(f.trace().standby_promoted_at, 0);
}

// The property: whatever the interleaving of loss, delay, cuts, witness restarts and a kill, with clock rates
// anywhere within 1 +- rho, there is no instant at which both VMs run, and terms never go backwards.
struct Fuzzed {
  int runs = 0, promotions = 0, fences = 0, split_brains = 0;
};

Fuzzed RunRandomWorlds(int count, uint64_t seed0, int64_t lease_margin, int64_t promise_margin, int64_t fence_latency,
                       int64_t max_delay = 40 * kMs) {
  Fuzzed f;
  for (int i = 0; i < count; ++i) {
    std::mt19937_64 rng(seed0 + uint64_t(i));
    auto uniform = [&](double a, double b) { return std::uniform_real_distribution<double>(a, b)(rng); };
    Config c;
    c.seed = rng();
    if (i % 3 == 0) {
      c = Adversarial(c);
    } else {
      for (double& r : c.rate) r = 1 + uniform(-kRho, kRho);
    }
    c.end = 3000 * kMs;
    if (lease_margin >= 0) c.lease_margin = lease_margin;
    if (promise_margin >= 0) c.promise_margin = promise_margin;
    c.fence_latency = fence_latency;
    World w(c);
    w.At(0, [&w, &rng, uniform, max_delay] {
      for (size_t ch = 0; ch < 4; ++ch) {
        w.channel(ch).loss = rng() % 3 == 0 ? uniform(0, 0.5) : 0;
        w.channel(ch).delay_min = int64_t(uniform(0, double(max_delay) / 8));
        w.channel(ch).delay_max = w.channel(ch).delay_min + int64_t(uniform(0, double(max_delay)));
      }
    });
    const int faults = 2 + int(rng() % 6);
    for (int k = 0; k < faults; ++k) {
      const int64_t t = 300 * kMs + int64_t(rng() % 2400) * kMs;
      switch (rng() % 8) {
        case 0: w.KillPrimary(t); break;
        case 1: w.CutHostLinks(t, true); w.CutHostLinks(t + int64_t(rng() % 800) * kMs, false); break;
        case 2: w.IsolatePrimary(t, true); w.IsolatePrimary(t + int64_t(rng() % 800) * kMs, false); break;
        case 3: w.CutPrimaryWitness(t, true); w.CutPrimaryWitness(t + int64_t(rng() % 800) * kMs, false); break;
        case 4: w.StopWitness(t); w.StartWitness(t + int64_t(rng() % 600) * kMs); break;
        case 5: {
          const size_t ch = rng() % 4;
          const int64_t until = t + int64_t(rng() % 800) * kMs;
          w.At(t, [&w, ch] { w.channel(ch).up = false; });
          w.At(until, [&w, ch] { w.channel(ch).up = true; });
          break;
        }
        case 6: {  // a burst of heavy loss and delay everywhere
          w.At(t, [&w] {
            for (size_t ch = 0; ch < 4; ++ch) w.channel(ch).loss = 0.6, w.channel(ch).delay_max = 80 * kMs;
          });
          break;
        }
        case 7: w.At(t, [&w] { w.channel(w.sw()).up = false; }); break;
      }
    }
    w.Run();
    f.runs++;
    if (w.trace().standby_promoted_at > 0) f.promotions++;
    f.fences += w.trace().primary_fences;
    if (w.trace().split_brain || w.trace().terms_went_backwards || w.trace().primary_ran_after_superseded ||
        w.trace().primary_ran_after_standby_promoted) {
      f.split_brains++;
    }
  }
  return f;
}

TEST(ArbiterPropertyTest, RandomInterleavingsNeverRunTwoVms) {
  // Long delays (up to 45 ms, reordering) and short ones (up to 2 ms, where the margins are all that is left).
  for (int64_t max_delay : {40 * kMs, 2 * kMs}) {
    const Fuzzed f = RunRandomWorlds(300, 1000, -1, -1, 2 * kMs, max_delay);
    printf("random worlds (delay <= %lld ms): %d runs, %d promotions, %d primary fences, %d unsafe\n",
           (long long)(max_delay / kMs), f.runs, f.promotions, f.fences, f.split_brains);
    EXPECT_EQ(f.split_brains, 0);
    // The property is only worth something if the worlds actually fail over and fence.
    EXPECT_GT(f.promotions, 30);
    EXPECT_GT(f.fences, 30);
  }
}

TEST(ArbiterPropertyTest, WithoutMarginsTheCheckFindsSplitBrains) {
  // Negative control: the same worlds with no margin and a slow fence must be caught, or the check is blind.
  const Fuzzed f = RunRandomWorlds(300, 1000, 0, 0, 8 * kMs, 2 * kMs);
  printf("random worlds without margins: %d runs, %d unsafe\n", f.runs, f.split_brains);
  EXPECT_GT(f.split_brains, 0);
}

}  // namespace
}  // namespace tandem::heartbeat::sim
