#include "sim.h"

#include <cmath>
#include <limits>

namespace tandem::heartbeat::sim {
namespace {

constexpr const char* kPsk = "simulated-pre-shared-key";
constexpr int kPrimary = 0, kStandby = 1, kWitness = 2;

MacKey Key() { return std::move(MacKey::Create(kPsk)).value(); }

}  // namespace

struct World::Node {
  int who = 0;
  bool alive = true;
  std::unique_ptr<PeerDetector> det;
  std::unique_ptr<WitnessClientCore> client;
  std::unique_ptr<PrimaryArbiter> parb;  // the primary, or the standby once promoted
  std::unique_ptr<StandbyArbiter> sarb;  // the standby until promoted
  bool promoted = false;
  bool vm_running = false;
  bool stop_pending = false;
  uint64_t vm_generation = 0;
  std::vector<uint64_t> next_seq;
  uint64_t incarnation = 0;
  int64_t pending_deadline_real = std::numeric_limits<int64_t>::max();
  uint64_t last_term = 0;
  bool was_alive = false;
};

struct World::WitnessNode {
  bool up = false;
  std::optional<WitnessCore> core;
  WitnessTable table;
  uint64_t next_incarnation = 0x1000;
};

World::World(Config config) : config_(config), rng_(config.seed) {
  options_ = MakeArbiterOptions(config.witness, config.policy, int(config.lease / kMs), int(config.promise / kMs),
                                int(config.interval / kMs));
  if (config.lease_margin >= 0) options_.lease_margin_ns = config.lease_margin;
  if (config.promise_margin >= 0) options_.promise_margin_ns = config.promise_margin;
  channels_.resize(config.links + 2);
  for (int i = 0; i < 3; ++i) offset_[i] = int64_t(rng_() % 1'000'000) * kMs;  // unrelated clocks
  for (int who : {kPrimary, kStandby}) {
    auto n = std::make_unique<Node>();
    n->who = who;
    n->incarnation = 0x100 + uint64_t(who);
    n->det = std::make_unique<PeerDetector>(who == kPrimary ? "primary" : "standby",
                                            who == kPrimary ? "standby" : "primary", config.links, config.timeout,
                                            Local(who, 0), who == kStandby ? config.promise : 0);
    n->client = std::make_unique<WitnessClientCore>("vm0", who == kPrimary ? "host-a" : "host-b", Key(),
                                                    0x200 + uint64_t(who));
    n->next_seq.assign(config.links, 1);
    if (who == kPrimary) {
      n->parb = std::make_unique<PrimaryArbiter>(options_, 0);
    } else {
      n->sarb = std::make_unique<StandbyArbiter>(options_);
    }
    (who == kPrimary ? primary_ : standby_) = std::move(n);
  }
  witness_ = std::make_unique<WitnessNode>();
  if (config.witness) StartWitness(0);
  Schedule(0, [this] { PrimaryTick(true); });
  Schedule(int64_t(rng_() % uint64_t(config.interval)), [this] { StandbyTick(true); });
}

World::~World() = default;

int64_t World::Local(int who, int64_t real) const {
  return offset_[who] + int64_t(std::floor(double(real) * config_.rate[who]));
}

int64_t World::RealAt(int who, int64_t local) const {
  return int64_t(std::ceil(double(local - offset_[who]) / config_.rate[who])) + 1;
}

void World::Schedule(int64_t t, std::function<void()> f) { events_.push(Event{t, event_seq_++, std::move(f)}); }

void World::At(int64_t t, std::function<void()> f) { Schedule(t, std::move(f)); }

void World::CutHostLinks(int64_t t, bool cut) {
  At(t, [this, cut] {
    for (size_t i = 0; i < config_.links; ++i) channels_[i].up = !cut;
  });
}

void World::CutPrimaryWitness(int64_t t, bool cut) {
  At(t, [this, cut] { channels_[pw()].up = !cut; });
}

void World::IsolatePrimary(int64_t t, bool isolated) {
  CutHostLinks(t, isolated);
  CutPrimaryWitness(t, isolated);
}

void World::KillPrimary(int64_t t) {
  At(t, [this] {
    primary_->alive = false;
    if (primary_->vm_running) trace_.primary_stopped_at = now_;
    primary_->vm_running = false;  // PDEATHSIG: QEMU dies with tandem
    killed_at_ = now_;
  });
}

void World::StopWitness(int64_t t) {
  At(t, [this] {
    witness_->up = false;
    witness_->core.reset();
  });
}

void World::StartWitness(int64_t t) {
  At(t, [this] {
    if (witness_->up) return;
    WitnessCore::Options o;
    o.lease_ns = config_.lease;
    o.startup_hold_ns = config_.lease;
    o.incarnation = witness_->next_incarnation++;
    witness_->core.emplace(o, Key(), witness_->table, Local(kWitness, now_), [this](const WitnessTable& table) {
      for (const auto& [vm, p] : table) {
        auto it = witness_->table.find(vm);
        if (it != witness_->table.end() && p.term < it->second.term) trace_.terms_went_backwards = true;
        trace_.max_witness_term = std::max(trace_.max_witness_term, p.term);
      }
      witness_->table = table;
      return Status::Ok();
    });
    witness_->up = true;
  });
}

void World::Send(size_t ch, int from, Payload p) {
  Channel& c = channels_[ch];
  if (!c.up) return;
  if (c.loss > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < c.loss) return;
  const int64_t delay = c.delay_max > c.delay_min
                            ? c.delay_min + int64_t(rng_() % uint64_t(c.delay_max - c.delay_min + 1))
                            : c.delay_min;
  int to;
  if (ch < config_.links) {
    to = from == kPrimary ? kStandby : kPrimary;
  } else if (from == kWitness) {
    to = ch == pw() ? kPrimary : kStandby;
  } else {
    to = kWitness;
  }
  Schedule(now_ + delay, [this, ch, to, p = std::move(p)] {
    if (channels_[ch].up) Deliver(ch, to, p);  // a cut also loses what was in flight
  });
}

void World::Deliver(size_t ch, int to, const Payload& p) {
  if (to == kWitness) {
    if (!witness_->up) return;
    const auto& bytes = std::get<std::vector<uint8_t>>(p);
    std::vector<uint8_t> reply(kWitnessMessageSize);
    const size_t n = witness_->core->OnDatagram(bytes, Local(kWitness, now_), reply);
    if (n == 0) return;
    auto req = DecodeWitnessMessage(bytes);
    auto rep = DecodeWitnessMessage(reply);
    if (req.ok() && rep.ok() && req->type == WitnessType::kPromote && rep->type == WitnessType::kGrant &&
        trace_.witness_promote_granted_at < 0) {
      trace_.witness_promote_granted_at = now_;
    }
    Send(ch, kWitness, std::move(reply));
    return;
  }
  Node& n = to == kPrimary ? *primary_ : *standby_;
  if (!n.alive) return;
  const int64_t local = Local(to, now_);
  if (ch < config_.links) {
    DetectorEvents ev;
    n.det->OnMessage(ch, std::get<Message>(p), local, &ev);
  } else {
    LeaseReply r;
    std::vector<uint8_t> resend(kWitnessMessageSize);
    switch (n.client->OnDatagram(std::get<std::vector<uint8_t>>(p), local, &r, resend)) {
      case WitnessClientCore::Outcome::kResend: Send(ch, to, std::move(resend)); return;
      case WitnessClientCore::Outcome::kRejected: return;
      case WitnessClientCore::Outcome::kReply: break;
    }
    if (n.parb) {
      n.parb->OnLeaseReply(r);
    } else {
      n.sarb->OnLeaseReply(r);
    }
  }
  Evaluate(to);
}

void World::PrimaryTick(bool) {
  Node& n = *primary_;
  if (!n.alive) return;
  const int64_t local = Local(kPrimary, now_);
  for (size_t i = 0; i < config_.links; ++i) {
    Message m;
    m.role = Role::kPrimary;
    m.link_index = uint8_t(i);
    m.sender.Set("primary");
    m.receiver.Set("standby");
    m.incarnation = n.incarnation;
    m.sequence = n.next_seq[i]++;
    m.send_ns = local;
    n.det->FillEcho(i, local, &m);
    m.term = n.parb->term();
    m.last_epoch = 1;
    Send(i, kPrimary, m);
  }
  if (n.parb->should_renew()) {
    std::vector<uint8_t> req(kWitnessMessageSize);
    if (n.client->BuildRequest(LeaseOp::kRenew, n.parb->renew_term(), 0, local, req).ok()) {
      Send(pw(), kPrimary, std::move(req));
    }
  }
  Evaluate(kPrimary);
  Schedule(RealAt(kPrimary, local + config_.interval), [this] { PrimaryTick(true); });
}

void World::StandbyTick(bool) {
  Node& n = *standby_;
  if (!n.alive) return;
  const int64_t local = Local(kStandby, now_);
  const bool as_primary = n.promoted;
  for (size_t i = 0; i < config_.links; ++i) {
    Message m;
    m.role = as_primary ? Role::kPrimary : Role::kStandby;
    m.link_index = uint8_t(i);
    m.sender.Set("standby");
    m.receiver.Set("primary");
    m.incarnation = n.incarnation;
    m.sequence = n.next_seq[i]++;
    m.send_ns = local;
    n.det->FillEcho(i, local, &m);
    m.term = as_primary ? n.parb->term() : n.sarb->term();
    m.last_epoch = 1;
    m.promise_ms = as_primary ? 0 : uint32_t(config_.promise / kMs);
    Send(i, kStandby, m);
  }
  if (as_primary && n.parb->should_renew()) {
    std::vector<uint8_t> req(kWitnessMessageSize);
    if (n.client->BuildRequest(LeaseOp::kRenew, n.parb->renew_term(), 0, local, req).ok()) {
      Send(sw(), kStandby, std::move(req));
    }
  }
  Evaluate(kStandby);
  Schedule(RealAt(kStandby, local + config_.interval), [this] { StandbyTick(true); });
}

void World::ScheduleDeadline(int who, int64_t local_deadline) {
  if (local_deadline == std::numeric_limits<int64_t>::max()) return;
  Node& n = who == kPrimary ? *primary_ : *standby_;
  int64_t real = RealAt(who, local_deadline);
  if (real <= now_) real = now_ + 1;
  if (n.pending_deadline_real > now_ && n.pending_deadline_real <= real) return;  // an earlier one is pending
  n.pending_deadline_real = real;
  Schedule(real, [this, who, real] {
    Node& m = who == kPrimary ? *primary_ : *standby_;
    if (m.pending_deadline_real == real) m.pending_deadline_real = std::numeric_limits<int64_t>::max();
    if (m.alive) Evaluate(who);
  });
}

void World::ApplyPrimaryDecision(Node& n, const PrimaryDecision& d, bool is_old_primary) {
  if (d.action == PrimaryAction::kRun) {
    if (n.stop_pending) {  // the stop had not happened yet: it is called off
      n.stop_pending = false;
      n.vm_generation++;
    }
    if (!n.vm_running) n.vm_running = true;
    if (is_old_primary) {
      if (trace_.primary_started_at < 0) trace_.primary_started_at = now_;
      if (trace_.primary_last == PrimaryAction::kSuperseded) trace_.primary_ran_after_superseded = true;
      if (standby_->promoted) trace_.primary_ran_after_standby_promoted = true;
    }
  } else if (n.vm_running && !n.stop_pending) {
    n.stop_pending = true;
    const uint64_t gen = ++n.vm_generation;
    Node* np = &n;
    Schedule(now_ + config_.fence_latency, [this, np, gen, is_old_primary] {
      if (np->vm_generation != gen || !np->stop_pending) return;
      np->stop_pending = false;
      np->vm_running = false;
      if (is_old_primary) trace_.primary_stopped_at = now_;
    });
    if (is_old_primary) {
      trace_.primary_fences++;
      if (trace_.primary_first_fence_at < 0) trace_.primary_first_fence_at = now_;
    }
  }
  if (is_old_primary) {
    trace_.primary_last = d.action;
    trace_.primary_alarm = d.alarm;
  }
}

void World::Evaluate(int who) {
  Node& n = who == kPrimary ? *primary_ : *standby_;
  if (!n.alive) return;
  const int64_t local = Local(who, now_);
  const DetectorEvents ev = n.det->Tick(local);
  if (who == kStandby && ev.peer_lost && trace_.standby_detected_loss_at < 0 && killed_at_ >= 0) {
    trace_.standby_detected_loss_at = now_;
  }
  if (who == kStandby && !n.promoted) {
    const PeerStatus peer = n.det->Snapshot(local);
    n.sarb->OnPeer(peer.alive, peer.ever_heard, peer.max_term_seen, peer.promise_until_ns);
    n.sarb->OnResumePoint(peer.ever_heard);
    const StandbyDecision d = n.sarb->Tick(local);
    trace_.standby_last = d.action;
    trace_.standby_last_reason = d.reason;
    if (d.changed && d.action == StandbyAction::kAlarm) trace_.standby_alarms.push_back(d.reason);
    if (d.send_promote) {
      std::vector<uint8_t> req(kWitnessMessageSize);
      if (n.client->BuildRequest(LeaseOp::kPromote, d.term, 1, local, req).ok()) Send(sw(), kStandby, std::move(req));
    }
    if (n.sarb->term() < n.last_term) trace_.terms_went_backwards = true;
    n.last_term = n.sarb->term();
    n.det->SetLocalTerm(n.sarb->term());
    if (d.action == StandbyAction::kPromote) {
      n.promoted = true;
      trace_.standby_promoted_at = now_;
      trace_.standby_promoted_term = d.term;
      n.parb = std::make_unique<PrimaryArbiter>(options_, d.term);
      if (n.sarb->grant()) n.parb->OnLeaseReply(*n.sarb->grant());
    } else {
      ScheduleDeadline(who, n.sarb->NextDeadline(local));
    }
  }
  if (n.parb) {
    n.parb->OnPeer(n.det->max_term_seen(), n.det->support_until_ns());
    const PrimaryDecision d = n.parb->Tick(local);
    ApplyPrimaryDecision(n, d, who == kPrimary);
    if (n.parb->term() < n.last_term && d.action != PrimaryAction::kSuperseded) trace_.terms_went_backwards = true;
    n.last_term = std::max(n.last_term, n.parb->term());
    n.det->SetLocalTerm(n.parb->term());
    ScheduleDeadline(who, n.parb->NextDeadline(local));
  }
}

void World::Check() {
  if (primary_->vm_running && standby_->vm_running && !trace_.split_brain) {
    trace_.split_brain = true;
    trace_.split_brain_at = now_;
  }
}

void World::Run() {
  while (!events_.empty()) {
    Event e = events_.top();
    if (e.t > config_.end) break;
    events_.pop();
    now_ = e.t;
    e.f();
    Check();
  }
}

}  // namespace tandem::heartbeat::sim
