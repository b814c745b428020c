// A discrete-event world for the role arbiters: a primary, a standby and a witness, each with its own clock
// (rate within 1 +- rho of real time, arbitrary offset), joined by channels with delay, loss and cuts. Every part
// is the real code (PeerDetector, PrimaryArbiter, StandbyArbiter, WitnessCore, WitnessClientCore, the real
// encoders and MACs); only the sockets and the passage of time are simulated. The "VMs" are two booleans, and
// the world checks after every event that they are never both true.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <variant>
#include <vector>

#include "heartbeat/arbiter.h"
#include "heartbeat/detector.h"
#include "heartbeat/witness.h"
#include "heartbeat/witness_client.h"

namespace tandem::heartbeat::sim {

constexpr int64_t kMs = 1'000'000;

struct Config {
  uint64_t seed = 1;
  int64_t interval = 10 * kMs;
  int64_t timeout = 60 * kMs;
  int64_t promise = 60 * kMs;
  int64_t lease = 150 * kMs;
  size_t links = 2;
  bool witness = true;
  TwoHostPolicy policy = TwoHostPolicy::kNeverPromote;
  // Clock rates: primary, standby, witness (1.0 = real time).
  double rate[3] = {1.0, 1.0, 1.0};
  // From a Fence decision to the VM actually stopped (tick lateness + QMP stop). The margins must cover it.
  int64_t fence_latency = 2 * kMs;
  // Override the margins (negative: the defaults, 10%).
  int64_t lease_margin = -1, promise_margin = -1;
  int64_t end = 3000 * kMs;
};

// Channels 0..links-1 are the host links, then primary<->witness, then standby<->witness.
struct Channel {
  bool up = true;
  double loss = 0;
  int64_t delay_min = 100'000, delay_max = 300'000;
};

struct Trace {
  bool split_brain = false;
  int64_t split_brain_at = -1;
  bool terms_went_backwards = false;
  int64_t primary_started_at = -1;       // first Run
  int64_t primary_first_fence_at = -1;   // first Fence/Superseded decision after having run
  int64_t primary_stopped_at = -1;       // its VM actually stopped (after fence latency, or killed)
  bool primary_ran_after_superseded = false;
  bool primary_ran_after_standby_promoted = false;
  int primary_fences = 0;
  PrimaryAction primary_last = PrimaryAction::kAcquire;
  const char* primary_alarm = nullptr;
  int64_t standby_detected_loss_at = -1;  // first peer-lost after the kill/cut
  int64_t witness_promote_granted_at = -1;
  int64_t standby_promoted_at = -1;
  uint64_t standby_promoted_term = 0;
  StandbyAction standby_last = StandbyAction::kWait;
  std::string standby_last_reason;
  std::vector<std::string> standby_alarms;
  uint64_t max_witness_term = 0;
};

class World {
 public:
  explicit World(Config config);
  ~World();

  // Fault schedule (real times).
  void At(int64_t t, std::function<void()> f);
  Channel& channel(size_t i) { return channels_[i]; }
  size_t pw() const { return config_.links; }
  size_t sw() const { return config_.links + 1; }
  void CutHostLinks(int64_t t, bool cut);
  void CutPrimaryWitness(int64_t t, bool cut);
  void IsolatePrimary(int64_t t, bool isolated);
  void KillPrimary(int64_t t);
  void StopWitness(int64_t t);
  void StartWitness(int64_t t);  // a restart: new process, state from the persisted table

  void Run();
  const Trace& trace() const { return trace_; }
  int64_t killed_at() const { return killed_at_; }

 private:
  struct Node;
  struct WitnessNode;
  using Payload = std::variant<Message, std::vector<uint8_t>>;

  void Schedule(int64_t t, std::function<void()> f);
  void Send(size_t ch, int from, Payload p);  // from: 0 primary, 1 standby, 2 witness
  void Deliver(size_t ch, int to, const Payload& p);
  void PrimaryTick(bool send);
  void StandbyTick(bool send);
  void Evaluate(int who);
  void ApplyPrimaryDecision(Node& n, const PrimaryDecision& d, bool is_old_primary);
  void ScheduleDeadline(int who, int64_t local_deadline);
  void Check();
  int64_t Local(int who, int64_t real) const;
  int64_t RealAt(int who, int64_t local) const;

  Config config_;
  ArbiterOptions options_;
  std::mt19937_64 rng_;
  int64_t now_ = 0;
  uint64_t event_seq_ = 0;
  struct Event {
    int64_t t;
    uint64_t seq;
    std::function<void()> f;
    bool operator>(const Event& o) const { return t != o.t ? t > o.t : seq > o.seq; }
  };
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> events_;
  std::vector<Channel> channels_;
  int64_t offset_[3] = {0, 0, 0};
  std::unique_ptr<Node> primary_, standby_;
  std::unique_ptr<WitnessNode> witness_;
  int64_t killed_at_ = -1;
  Trace trace_;
};

}  // namespace tandem::heartbeat::sim
