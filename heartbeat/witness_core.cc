#include "heartbeat/witness_core.h"

#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdio>
#include <map>

#include "common/log.h"

namespace tandem::heartbeat {
namespace {

constexpr const char* kLog = "witness";
constexpr int64_t kDenyLogPeriodNs = 1'000'000'000;  // per sender: the first DENY of a kind, then one line per second

int64_t Ms(int64_t ns) { return ns / 1'000'000; }

struct SenderKey {
  NodeName vm, node;
};
struct SenderKeyLess {
  bool operator()(const SenderKey& a, const SenderKey& b) const {
    if (a.vm.view() != b.vm.view()) return a.vm.view() < b.vm.view();
    return a.node.view() < b.node.view();
  }
};

struct Sender {
  uint64_t incarnation = 0;
  uint64_t last_seq = 0;
  std::array<uint64_t, 4> retired{};
  size_t retired_next = 0;
  // DENY log throttling.
  WitnessReason last_deny = WitnessReason::kNone;
  int64_t last_deny_log_ns = 0;
  uint64_t denies_since_log = 0;
};

struct VmRecord {
  uint64_t term = 0;
  NodeName holder;
  uint64_t holder_incarnation = 0;  // the process that got the term (0: unknown since a witness restart)
  int64_t lease_expiry_ns = 0;
  bool term_from_promotion = false;  // the current term was created by PROMOTE (for idempotent retries)
  std::string last_grant;
  uint64_t grants = 0, denies = 0;
};

}  // namespace

struct WitnessCore::Impl {
  Options options;
  MacKey key;
  Persist persist;
  int64_t start_ns;
  int64_t hold_until_ns;
  uint64_t reply_seq = 0;
  std::map<std::string, VmRecord, std::less<>> vms;
  std::map<SenderKey, Sender, SenderKeyLess> senders;
  WitnessCounters counters;
  int64_t last_malformed_log_ns = -1;

  Impl(Options o, MacKey k, Persist p, int64_t start)
      : options(o), key(std::move(k)), persist(std::move(p)), start_ns(start),
        hold_until_ns(start + std::max(o.startup_hold_ns, o.lease_ns)) {}

  WitnessTable Table() const {
    WitnessTable t;
    for (const auto& [name, r] : vms) t.emplace(name, PersistedVm{r.term, std::string(r.holder.view())});
    return t;
  }

  size_t Reply(const WitnessMessage& req, WitnessType type, WitnessReason reason, const VmRecord* rec,
               int64_t now_ns, std::span<uint8_t> out) {
    WitnessMessage r;
    r.type = type;
    r.reason = reason;
    r.vm = req.vm;
    r.node = req.node;
    if (rec != nullptr) {
      r.holder = rec->holder;
      r.term = rec->term;
    }
    r.incarnation = options.incarnation;
    r.sequence = ++reply_seq;
    r.send_ns = now_ns;
    r.peer_incarnation = req.incarnation;
    r.echo_sequence = req.sequence;
    r.echo_send_ns = req.send_ns;
    if (type == WitnessType::kGrant || type == WitnessType::kStatusReply) {
      r.lease_ms = uint32_t(std::clamp<int64_t>(Ms(options.lease_ns), 1, UINT32_MAX));
    }
    if (type == WitnessType::kStatusReply) {
      if (rec != nullptr && now_ns < rec->lease_expiry_ns) {
        r.lease_remaining_ms = uint32_t(std::clamp<int64_t>(Ms(rec->lease_expiry_ns - now_ns), 0, UINT32_MAX));
      }
      if (now_ns < hold_until_ns) r.flags = kWitnessFlagStartupHold;
    }
    if (Status st = EncodeWitnessMessage(r, key, out); !st.ok()) {
      TLOG_ERROR(kLog, "cannot encode reply: %s", st.ToString().c_str());
      return 0;
    }
    return kWitnessMessageSize;
  }

  size_t Grant(const WitnessMessage& req, VmRecord& rec, int64_t now_ns, std::span<uint8_t> out) {
    counters.granted++;
    rec.grants++;
    return Reply(req, WitnessType::kGrant, WitnessReason::kNone, &rec, now_ns, out);
  }

  size_t Deny(const WitnessMessage& req, WitnessReason reason, VmRecord* rec, Sender& sender, int64_t now_ns,
              std::span<uint8_t> out, const char* detail = "") {
    counters.denied++;
    if (rec != nullptr) rec->denies++;
    sender.denies_since_log++;
    if (reason != sender.last_deny || now_ns - sender.last_deny_log_ns >= kDenyLogPeriodNs) {
      TLOG_WARN(kLog, "vm %.*s: DENY %s from %.*s (term %" PRIu64 "): %s%s; current holder %.*s term %" PRIu64
                " (%" PRIu64 " denies since the last report)",
                int(req.vm.view().size()), req.vm.view().data(), WitnessTypeName(req.type),
                int(req.node.view().size()), req.node.view().data(), req.term, WitnessReasonName(reason), detail,
                rec ? int(rec->holder.view().size()) : 4, rec ? rec->holder.view().data() : "none",
                rec ? rec->term : 0, sender.denies_since_log);
      sender.last_deny = reason;
      sender.last_deny_log_ns = now_ns;
      sender.denies_since_log = 0;
    }
    return Reply(req, WitnessType::kDeny, reason, rec, now_ns, out);
  }

  // Persists a holder change; on failure the record is restored and false returned.
  bool Commit(const std::string_view vm, VmRecord& rec, const VmRecord& before, bool created) {
    Status st = persist ? persist(Table()) : Status::Ok();
    if (st.ok()) return true;
    counters.persist_errors++;
    TLOG_ERROR(kLog, "vm %.*s: cannot persist term %" PRIu64 ": %s (change refused)", int(vm.size()), vm.data(),
               rec.term, st.ToString().c_str());
    if (created) {
      vms.erase(vms.find(vm));
    } else {
      rec = before;
    }
    return false;
  }

  size_t OnRenew(const WitnessMessage& m, Sender& sender, int64_t now_ns, std::span<uint8_t> out);
  size_t OnPromote(const WitnessMessage& m, Sender& sender, int64_t now_ns, std::span<uint8_t> out);
  size_t TakeOver(const WitnessMessage& m, VmRecord& rec, Sender& sender, int64_t now_ns, std::span<uint8_t> out);
};

// Registration (term 0) or PROMOTE once every check passed: new term, new holder, persisted before the GRANT.
size_t WitnessCore::Impl::TakeOver(const WitnessMessage& m, VmRecord& rec, Sender& sender, int64_t now_ns,
                                   std::span<uint8_t> out) {
  const VmRecord before = rec;
  const bool created = rec.term == 0;
  rec.term++;
  rec.holder = m.node;
  rec.holder_incarnation = m.incarnation;
  rec.lease_expiry_ns = now_ns + options.lease_ns;
  rec.term_from_promotion = m.type == WitnessType::kPromote;
  if (!Commit(m.vm.view(), rec, before, created)) {
    VmRecord* live = created ? nullptr : &rec;
    return Deny(m, WitnessReason::kInternal, live, sender, now_ns, out);
  }
  const std::string vm(m.vm.view());
  if (m.type == WitnessType::kPromote) {
    TLOG_WARN(kLog, "vm %s: PROMOTE GRANTED to %.*s: term %" PRIu64 " -> %" PRIu64 " (holder %.*s's lease expired %" PRId64
              " ms ago; last applied epoch %" PRIu64 ")",
              vm.c_str(), int(m.node.view().size()), m.node.view().data(), before.term, rec.term,
              int(before.holder.view().size()), before.holder.view().data(), Ms(now_ns - before.lease_expiry_ns),
              m.last_applied_epoch);
  } else if (created) {
    TLOG_INFO(kLog, "vm %s: registered %.*s as holder, term %" PRIu64, vm.c_str(), int(m.node.view().size()),
              m.node.view().data(), rec.term);
  } else {
    TLOG_WARN(kLog, "vm %s: registration by %.*s GRANTED: term %" PRIu64 " -> %" PRIu64
              " (previous holder %.*s's lease expired %" PRId64 " ms ago)",
              vm.c_str(), int(m.node.view().size()), m.node.view().data(), before.term, rec.term,
              int(before.holder.view().size()), before.holder.view().data(), Ms(now_ns - before.lease_expiry_ns));
  }
  rec.last_grant = std::string(WitnessTypeName(m.type)) + " " + std::string(m.node.view()) + " term " +
                   std::to_string(rec.term);
  return Grant(m, rec, now_ns, out);
}

size_t WitnessCore::Impl::OnRenew(const WitnessMessage& m, Sender& sender, int64_t now_ns, std::span<uint8_t> out) {
  auto it = vms.find(m.vm.view());
  if (it == vms.end()) {
    if (m.term != 0) return Deny(m, WitnessReason::kUnknownVm, nullptr, sender, now_ns, out, " (witness state lost?)");
    if (vms.size() >= options.max_vms) {
      counters.table_full++;
      return Deny(m, WitnessReason::kTooManyVms, nullptr, sender, now_ns, out);
    }
    if (now_ns < hold_until_ns) return Deny(m, WitnessReason::kStartupHold, nullptr, sender, now_ns, out);
    it = vms.emplace(std::string(m.vm.view()), VmRecord{}).first;
    return TakeOver(m, it->second, sender, now_ns, out);
  }
  VmRecord& rec = it->second;
  const bool same_process = rec.holder.view() == m.node.view() && rec.holder_incarnation == m.incarnation;
  if (m.term == 0) {
    if (same_process && !rec.term_from_promotion) {  // our GRANT of its registration was lost: grant again
      rec.lease_expiry_ns = now_ns + options.lease_ns;
      return Grant(m, rec, now_ns, out);
    }
    if (now_ns < hold_until_ns) return Deny(m, WitnessReason::kStartupHold, &rec, sender, now_ns, out);
    if (now_ns < rec.lease_expiry_ns) return Deny(m, WitnessReason::kHolderLeaseValid, &rec, sender, now_ns, out);
    return TakeOver(m, rec, sender, now_ns, out);
  }
  if (m.term < rec.term) return Deny(m, WitnessReason::kStaleTerm, &rec, sender, now_ns, out);
  if (m.term > rec.term) return Deny(m, WitnessReason::kFutureTerm, &rec, sender, now_ns, out);
  if (!(rec.holder.view() == m.node.view())) return Deny(m, WitnessReason::kNotHolder, &rec, sender, now_ns, out);
  if (rec.holder_incarnation != 0 && rec.holder_incarnation != m.incarnation) {
    return Deny(m, WitnessReason::kNotHolder, &rec, sender, now_ns, out, " (another process of the holder)");
  }
  if (now_ns >= rec.lease_expiry_ns && rec.grants > 0) {
    TLOG_INFO(kLog, "vm %.*s: %.*s regained its lease at term %" PRIu64 " (expired %" PRId64 " ms ago, nobody took over)",
              int(m.vm.view().size()), m.vm.view().data(), int(m.node.view().size()), m.node.view().data(), rec.term,
              Ms(now_ns - rec.lease_expiry_ns));
  } else {
    TLOG_DEBUG(kLog, "vm %.*s: renew GRANT %.*s term %" PRIu64, int(m.vm.view().size()), m.vm.view().data(),
               int(m.node.view().size()), m.node.view().data(), rec.term);
  }
  if (rec.holder_incarnation == 0) {
    TLOG_INFO(kLog, "vm %.*s: holder %.*s process %016" PRIx64 " renews term %" PRIu64 " after the witness restart",
              int(m.vm.view().size()), m.vm.view().data(), int(m.node.view().size()), m.node.view().data(),
              m.incarnation, rec.term);
  }
  rec.holder_incarnation = m.incarnation;
  rec.lease_expiry_ns = now_ns + options.lease_ns;
  return Grant(m, rec, now_ns, out);
}

size_t WitnessCore::Impl::OnPromote(const WitnessMessage& m, Sender& sender, int64_t now_ns, std::span<uint8_t> out) {
  auto it = vms.find(m.vm.view());
  if (it == vms.end()) return Deny(m, WitnessReason::kUnknownVm, nullptr, sender, now_ns, out);
  VmRecord& rec = it->second;
  if (m.term > rec.term) return Deny(m, WitnessReason::kFutureTerm, &rec, sender, now_ns, out);
  if (rec.holder.view() == m.node.view()) {
    if (rec.holder_incarnation == m.incarnation && rec.term_from_promotion && m.term + 1 == rec.term) {
      rec.lease_expiry_ns = now_ns + options.lease_ns;  // our GRANT of its promotion was lost: grant again
      return Grant(m, rec, now_ns, out);
    }
    if (m.term == rec.term) return Deny(m, WitnessReason::kAlreadyHolder, &rec, sender, now_ns, out);
    return Deny(m, WitnessReason::kStaleTerm, &rec, sender, now_ns, out);
  }
  if (m.term < rec.term) return Deny(m, WitnessReason::kStaleTerm, &rec, sender, now_ns, out);
  if (now_ns < hold_until_ns) return Deny(m, WitnessReason::kStartupHold, &rec, sender, now_ns, out);
  if (now_ns < rec.lease_expiry_ns) {
    char detail[64];
    snprintf(detail, sizeof(detail), " (%" PRId64 " ms left)", Ms(rec.lease_expiry_ns - now_ns));
    return Deny(m, WitnessReason::kHolderLeaseValid, &rec, sender, now_ns, out, detail);
  }
  return TakeOver(m, rec, sender, now_ns, out);
}

WitnessCore::WitnessCore(Options options, MacKey key, WitnessTable loaded, int64_t start_ns, Persist persist)
    : impl_(std::make_unique<Impl>(options, std::move(key), std::move(persist), start_ns)) {
  for (auto& [name, p] : loaded) {
    VmRecord rec;
    rec.term = p.term;
    rec.holder.Set(p.holder);
    // Unknown remaining lease: assume the holder got a full lease just before the previous witness stopped.
    rec.lease_expiry_ns = impl_->hold_until_ns;
    rec.last_grant = "(before restart) holder " + p.holder + " term " + std::to_string(p.term);
    impl_->vms.emplace(name, std::move(rec));
  }
}

WitnessCore::~WitnessCore() = default;
WitnessCore::WitnessCore(WitnessCore&&) noexcept = default;

uint64_t WitnessCore::incarnation() const { return impl_->options.incarnation; }
WitnessCounters WitnessCore::counters() const { return impl_->counters; }

size_t WitnessCore::OnDatagram(std::span<const uint8_t> datagram, int64_t now_ns, std::span<uint8_t> reply) {
  Impl& s = *impl_;
  s.counters.received++;
  if (reply.size() < kWitnessMessageSize) return 0;
  auto decoded = DecodeWitnessMessage(datagram);
  if (!decoded.ok()) {
    s.counters.malformed++;
    if (s.last_malformed_log_ns < 0 || now_ns - s.last_malformed_log_ns >= 10 * kDenyLogPeriodNs) {
      TLOG_WARN(kLog, "refused datagram: %s (%" PRIu64 " malformed so far)", decoded.status().message().c_str(),
                s.counters.malformed);
      s.last_malformed_log_ns = now_ns;
    }
    return 0;
  }
  if (!VerifyWitnessMac(datagram, s.key).ok()) {
    s.counters.unauthenticated++;
    if (s.last_malformed_log_ns < 0 || now_ns - s.last_malformed_log_ns >= 10 * kDenyLogPeriodNs) {
      TLOG_WARN(kLog, "refused datagram: MAC mismatch (wrong key or forged; %" PRIu64 " so far)",
                s.counters.unauthenticated);
      s.last_malformed_log_ns = now_ns;
    }
    return 0;
  }
  const WitnessMessage& m = *decoded;
  if (!IsRequest(m.type)) {
    s.counters.misdirected++;
    return 0;
  }
  if (m.type == WitnessType::kStatusQuery) {
    // Read-only: answered without the nonce handshake and without sender state (each `tandem status` is a new
    // process). It cannot change a decision.
    s.counters.status_queries++;
    auto it = s.vms.find(m.vm.view());
    return s.Reply(m, WitnessType::kStatusReply, WitnessReason::kNone, it == s.vms.end() ? nullptr : &it->second,
                   now_ns, reply);
  }
  if (m.peer_incarnation != s.options.incarnation) {
    s.counters.challenged++;
    return s.Reply(m, WitnessType::kDeny, WitnessReason::kChallenge, nullptr, now_ns, reply);
  }
  // Replay protection per (vm, node): sequences only go up within a sender process; replaced processes are
  // remembered and refused.
  auto sit = s.senders.find(SenderKey{m.vm, m.node});
  if (sit == s.senders.end()) {
    if (s.senders.size() >= s.options.max_senders) {
      s.counters.table_full++;
      return 0;
    }
    sit = s.senders.emplace(SenderKey{m.vm, m.node}, Sender{}).first;
  }
  Sender& sender = sit->second;
  if (m.incarnation == sender.incarnation) {
    if (m.sequence <= sender.last_seq) {
      s.counters.replayed++;
      return 0;
    }
  } else {
    if (std::find(sender.retired.begin(), sender.retired.end(), m.incarnation) != sender.retired.end()) {
      s.counters.replayed++;
      return 0;
    }
    if (sender.incarnation != 0) {
      sender.retired[sender.retired_next] = sender.incarnation;
      sender.retired_next = (sender.retired_next + 1) % sender.retired.size();
    }
    sender.incarnation = m.incarnation;
  }
  sender.last_seq = m.sequence;
  return m.type == WitnessType::kLeaseRenew ? s.OnRenew(m, sender, now_ns, reply)
                                            : s.OnPromote(m, sender, now_ns, reply);
}

WitnessVmState WitnessCore::state(std::string_view vm, int64_t now_ns) const {
  const Impl& s = *impl_;
  WitnessVmState out;
  out.startup_hold = now_ns < s.hold_until_ns;
  auto it = s.vms.find(vm);
  if (it == s.vms.end()) return out;
  const VmRecord& r = it->second;
  out.known = true;
  out.term = r.term;
  out.holder = std::string(r.holder.view());
  out.lease_expiry_ns = r.lease_expiry_ns;
  out.lease_valid = now_ns < r.lease_expiry_ns;
  out.lease_remaining_ns = out.lease_valid ? r.lease_expiry_ns - now_ns : 0;
  out.last_grant = r.last_grant;
  out.grants = r.grants;
  out.denies = r.denies;
  return out;
}

}  // namespace tandem::heartbeat
