#include "heartbeat/guard.h"

#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <limits>
#include <mutex>
#include <thread>

#include "common/fd.h"
#include "common/log.h"
#include "common/waker.h"

namespace tandem::heartbeat {
namespace {

constexpr const char* kLog = "role";

// What both guards share: their configuration, a thread with a stop flag and a wake-up, the decision callback and
// the latest decision. Each guard's Impl adds its arbiter and its Run().
template <typename Decision>
struct GuardBase {
  GuardBase(const ArbiterOptions& o, int interval_ms, HeartbeatService* h, LeaseAuthority* a, Clock* c,
            const char* name)
      : options(o), interval_ns(int64_t(std::max(1, interval_ms)) * 1'000'000), hb(h), authority(a), clock(c),
        thread_name(name) {}
  virtual ~GuardBase() = default;
  virtual void Run() = 0;

  // Once, with an authority in witness mode, on a named thread.
  Status Start() {
    if (thread.joinable()) return Status::InvalidArgument("guard: already started");
    if (options.witness && authority == nullptr) {
      return Status::InvalidArgument("guard: witness mode needs an authority");
    }
    TANDEM_RETURN_IF_ERROR(wake.Open("guard"));
    thread = std::thread([this] { Run(); });
    pthread_setname_np(thread.native_handle(), thread_name);
    return Status::Ok();
  }
  // Sleeps until `deadline_ns` on the clock (bounded by one interval of real time, so a FakeClock moved by a test
  // is noticed), an authority reply on `authority_fd`, or a wake-up.
  void Wait(int64_t deadline_ns, int authority_fd) {
    const int64_t wait_ns = std::clamp<int64_t>(deadline_ns - clock->NowNanos(), 0, interval_ns);
    pollfd fds[2] = {{wake.fd(), POLLIN, 0}, {authority_fd, POLLIN, 0}};
    timespec ts{time_t(wait_ns / 1'000'000'000), long(wait_ns % 1'000'000'000)};
    ppoll(fds, authority_fd >= 0 ? 2 : 1, &ts, nullptr);
    if (fds[0].revents & POLLIN) wake.Drain();
  }
  void Join() {
    stop.store(true);
    wake.Wake();
    if (thread.joinable() && thread.get_id() != std::this_thread::get_id()) thread.join();
  }
  Decision Latest() const {
    std::lock_guard<std::mutex> lock(mu);
    return latest;
  }

  const ArbiterOptions options;
  const int64_t interval_ns;
  HeartbeatService* const hb;
  LeaseAuthority* const authority;
  Clock* const clock;
  const char* const thread_name;
  Waker wake;
  std::thread thread;
  std::atomic<bool> stop{false};
  std::function<void(const Decision&)> callback;  // set before Start
  mutable std::mutex mu;
  Decision latest;  // guarded by mu
};

int64_t RemainingMs(int64_t until, int64_t now) { return until > now ? (until - now) / 1'000'000 : -1; }

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// PrimaryGuard.

struct PrimaryGuard::Impl final : GuardBase<PrimaryDecision> {
  Impl(ArbiterOptions o, int interval, HeartbeatService* h, LeaseAuthority* a, Clock* c, uint64_t term,
       std::optional<LeaseReply> g)
      : GuardBase(o, interval, h, a, c, "tandem-primary"), arbiter(o, term) {
    if (g) arbiter.OnLeaseReply(*g);
  }

  void Run() override;

  std::atomic<uint64_t> last_epoch{0};
  PrimaryArbiter arbiter;  // guarded by mu (the thread holds it only to decide, never during the callback)
  const char* last_alarm = nullptr;
};

void PrimaryGuard::Impl::Run() {
  int64_t next_renew = clock->NowNanos();
  const int fd = authority ? authority->wait_fd() : -1;
  while (!stop.load()) {
    const int64_t now = clock->NowNanos();
    PrimaryDecision d;
    int64_t deadline;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (authority) {
        if (arbiter.should_renew() && now >= next_renew) {
          (void)authority->RequestRenew(arbiter.renew_term());  // errors: counted; the lease simply runs out
          next_renew += interval_ns;
          if (next_renew <= now) next_renew = now + interval_ns;
        }
        LeaseReply r;
        while (authority->PollReply(&r)) arbiter.OnLeaseReply(r);
      }
      const PeerStatus peer = hb->peer();
      arbiter.OnPeer(peer.max_term_seen, peer.support_until_ns);
      d = arbiter.Tick(now);
      latest = d;
      deadline = std::min(arbiter.NextDeadline(now), arbiter.should_renew() ? next_renew : now + interval_ns);
    }
    hb->SetLocalState({Role::kPrimary, d.term, last_epoch.load()});
    if (d.changed) {
      if (d.action == PrimaryAction::kRun || d.action == PrimaryAction::kAcquire) {
        TLOG_INFO(kLog, "primary %s, term %" PRIu64 ": %s", PrimaryActionName(d.action), d.term, d.reason);
      } else {
        TLOG_WARN(kLog, "primary %s, term %" PRIu64 ": %s", PrimaryActionName(d.action), d.term, d.reason);
      }
      if (callback) callback(d);
    }
    if (d.alarm != last_alarm) {
      if (d.alarm) TLOG_ERROR(kLog, "ALARM: %s", d.alarm);
      if (!d.alarm && last_alarm) TLOG_INFO(kLog, "alarm cleared: %s", last_alarm);
      last_alarm = d.alarm;
    }
    Wait(deadline, fd);
  }
}

PrimaryGuard::PrimaryGuard(ArbiterOptions options, int interval_ms, HeartbeatService* heartbeats,
                           LeaseAuthority* authority, Clock* clock, uint64_t term, std::optional<LeaseReply> grant)
    : impl_(std::make_unique<Impl>(options, interval_ms, heartbeats, authority, clock, term, std::move(grant))) {}

PrimaryGuard::~PrimaryGuard() { Stop(); }

void PrimaryGuard::OnDecision(std::function<void(const PrimaryDecision&)> callback) {
  impl_->callback = std::move(callback);
}

Status PrimaryGuard::Start() { return impl_->Start(); }

void PrimaryGuard::Stop() { impl_->Join(); }

void PrimaryGuard::SetLastEpoch(uint64_t epoch) { impl_->last_epoch.store(epoch); }

PrimaryDecision PrimaryGuard::decision() const { return impl_->Latest(); }

GuardStatus PrimaryGuard::status() const {
  const Impl& s = *impl_;
  GuardStatus st;
  const int64_t now = s.clock->NowNanos();
  std::lock_guard<std::mutex> lock(s.mu);
  st.state = PrimaryActionName(s.latest.action);
  st.reason = s.latest.reason;
  st.alarm = s.latest.alarm ? s.latest.alarm : "";
  st.term = s.latest.term;
  st.lease_valid_ms = RemainingMs(s.arbiter.lease_valid_until_ns(), now);
  st.support_valid_ms = RemainingMs(s.arbiter.support_valid_until_ns(), now);
  st.witness_configured = s.authority != nullptr;
  if (s.authority) st.witness_reachable = s.authority->status().reachable;
  if (s.arbiter.last_deny() != WitnessReason::kNone) st.last_deny = WitnessReasonName(s.arbiter.last_deny());
  st.held_by = s.arbiter.refused_for_holder();
  st.held_term = s.arbiter.refused_for_term();
  return st;
}

// ---------------------------------------------------------------------------------------------------------------
// StandbyGuard.

struct StandbyGuard::Impl final : GuardBase<StandbyDecision> {
  Impl(ArbiterOptions o, int interval, HeartbeatService* h, LeaseAuthority* a, Clock* c)
      : GuardBase(o, interval, h, a, c, "tandem-standby"), arbiter(o) {}

  void Run() override;

  std::atomic<bool> ready{false}, manual{false};
  std::atomic<uint64_t> last_applied{0};
  StandbyArbiter arbiter;  // guarded by mu
};

void StandbyGuard::Impl::Run() {
  const int fd = authority ? authority->wait_fd() : -1;
  while (!stop.load()) {
    const int64_t now = clock->NowNanos();
    StandbyDecision d;
    uint64_t term;
    int64_t deadline;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (authority) {
        LeaseReply r;
        while (authority->PollReply(&r)) arbiter.OnLeaseReply(r);
      }
      const PeerStatus peer = hb->peer();
      arbiter.OnPeer(peer.alive, peer.ever_heard, peer.max_term_seen, peer.promise_until_ns);
      arbiter.OnResumePoint(ready.load());
      if (manual.load()) arbiter.AllowManualPromotion();
      d = arbiter.Tick(now);
      latest = d;
      term = arbiter.term();
      if (d.send_promote && authority) (void)authority->RequestPromote(d.term, last_applied.load());
      deadline = std::min(arbiter.NextDeadline(now), now + interval_ns);
    }
    // The granted term travels at once (the old primary stands down on it), still as a standby until promoted.
    if (d.action != StandbyAction::kPromote) hb->SetLocalState({Role::kStandby, term, last_applied.load()});
    if (d.changed) {
      if (d.action == StandbyAction::kWait) {
        TLOG_INFO(kLog, "standby %s, term %" PRIu64 ": %s", StandbyActionName(d.action), d.term, d.reason);
      } else if (d.action == StandbyAction::kAlarm) {
        TLOG_ERROR(kLog, "ALARM: standby, term %" PRIu64 ": %s", d.term, d.reason);
      } else {
        TLOG_WARN(kLog, "standby %s, term %" PRIu64 ": %s", StandbyActionName(d.action), d.term, d.reason);
      }
      if (callback) callback(d);
    }
    if (d.action == StandbyAction::kPromote) return;
    Wait(deadline, fd);
  }
}

StandbyGuard::StandbyGuard(ArbiterOptions options, int interval_ms, HeartbeatService* heartbeats,
                           LeaseAuthority* authority, Clock* clock)
    : impl_(std::make_unique<Impl>(options, interval_ms, heartbeats, authority, clock)) {}

StandbyGuard::~StandbyGuard() { Stop(); }

void StandbyGuard::OnDecision(std::function<void(const StandbyDecision&)> callback) {
  impl_->callback = std::move(callback);
}

Status StandbyGuard::Start() { return impl_->Start(); }

void StandbyGuard::Stop() { impl_->Join(); }

void StandbyGuard::SetResumePoint(bool ready, uint64_t last_applied_epoch) {
  impl_->last_applied.store(last_applied_epoch);
  impl_->ready.store(ready);
}

void StandbyGuard::AllowManualPromotion() {
  impl_->manual.store(true);
  impl_->wake.Wake();
}

StandbyDecision StandbyGuard::decision() const { return impl_->Latest(); }

std::optional<LeaseReply> StandbyGuard::grant() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->arbiter.grant();
}

GuardStatus StandbyGuard::status() const {
  const Impl& s = *impl_;
  GuardStatus st;
  std::lock_guard<std::mutex> lock(s.mu);
  st.state = StandbyActionName(s.latest.action);
  st.reason = s.latest.reason;
  if (s.latest.action == StandbyAction::kAlarm) st.alarm = s.latest.reason;
  st.term = s.arbiter.term();
  st.witness_configured = s.authority != nullptr;
  if (s.authority) st.witness_reachable = s.authority->status().reachable;
  if (s.arbiter.last_deny() != WitnessReason::kNone) st.last_deny = WitnessReasonName(s.arbiter.last_deny());
  return st;
}

}  // namespace tandem::heartbeat
