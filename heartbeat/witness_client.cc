#include "heartbeat/witness_client.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>

#include "common/fd.h"
#include "common/key_file.h"
#include "common/log.h"
#include "common/random.h"
#include "heartbeat/udp.h"

namespace tandem::heartbeat {
namespace {
constexpr const char* kLog = "witness-client";
}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// WitnessClientCore.

WitnessClientCore::WitnessClientCore(std::string_view vm, std::string_view node, MacKey key, uint64_t incarnation)
    : key_(std::move(key)), incarnation_(incarnation) {
  ok_ = vm_.Set(vm) && node_.Set(node) && incarnation != 0;
}

Status WitnessClientCore::BuildRequest(LeaseOp op, uint64_t term, uint64_t epoch, int64_t now_ns,
                                       std::span<uint8_t> out) {
  if (!ok_) return Status::InvalidArgument("witness client: bad vm or node name");
  WitnessMessage m;
  m.type = op == LeaseOp::kRenew ? WitnessType::kLeaseRenew : WitnessType::kPromote;
  m.vm = vm_;
  m.node = node_;
  m.incarnation = incarnation_;
  m.sequence = next_seq_;
  m.send_ns = now_ns;
  m.term = term;
  m.last_applied_epoch = op == LeaseOp::kPromote ? epoch : 0;
  m.peer_incarnation = witness_incarnation_;
  TANDEM_RETURN_IF_ERROR(EncodeWitnessMessage(m, key_, out));
  Outstanding& o = outstanding_[next_seq_ % kWindow];
  o = Outstanding{next_seq_, now_ns, op, term, epoch, witness_incarnation_, false};
  next_seq_++;
  return Status::Ok();
}

WitnessClientCore::Outcome WitnessClientCore::OnDatagram(std::span<const uint8_t> datagram, int64_t now_ns,
                                                         LeaseReply* reply, std::span<uint8_t> resend) {
  auto decoded = DecodeAuthenticatedWitnessMessage(datagram, key_);
  if (!decoded.ok()) {
    rejected_++;
    return Outcome::kRejected;
  }
  const WitnessMessage& m = *decoded;
  if (IsRequest(m.type) || m.type == WitnessType::kStatusReply || !(m.vm.view() == vm_.view()) ||
      !(m.node.view() == node_.view()) || m.peer_incarnation != incarnation_) {
    rejected_++;
    return Outcome::kRejected;
  }
  Outstanding& o = outstanding_[m.echo_sequence % kWindow];
  if (o.seq != m.echo_sequence || o.send_ns != m.echo_send_ns || o.answered) {
    rejected_++;  // a duplicate, a replay, or an answer to a request too old to remember
    return Outcome::kRejected;
  }
  o.answered = true;
  if (m.type == WitnessType::kDeny && m.reason == WitnessReason::kChallenge) {
    challenges_++;
    // Re-send once per witness incarnation: a challenge naming the incarnation we already sent is not news.
    if (m.incarnation == o.sent_with_witness) {
      rejected_++;
      return Outcome::kRejected;
    }
    witness_incarnation_ = m.incarnation;
    if (!BuildRequest(o.op, o.term, o.epoch, now_ns, resend).ok()) return Outcome::kRejected;
    return Outcome::kResend;
  }
  witness_incarnation_ = m.incarnation;
  *reply = LeaseReply{};
  reply->op = o.op;
  reply->granted = m.type == WitnessType::kGrant;
  reply->reason = m.reason;
  reply->holder = m.holder;
  reply->term = m.term;
  reply->lease_ns = int64_t(m.lease_ms) * 1'000'000;
  reply->request_term = o.term;
  reply->request_send_ns = o.send_ns;
  reply->receive_ns = now_ns;
  return Outcome::kReply;
}

// ---------------------------------------------------------------------------------------------------------------
// WitnessClient.

struct WitnessClient::Impl {
  Impl(WitnessClientOptions o, Clock* c) : options(std::move(o)), clock(c) {}

  Status Send(const uint8_t* data) {
    status.requests++;
    ssize_t n;
    do {
      n = ::send(fd.get(), data, kWitnessMessageSize, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n == ssize_t(kWitnessMessageSize)) return Status::Ok();
    status.send_errors++;
    // ECONNREFUSED (a queued ICMP error: nobody listens at the witness address) lands here too.
    return n < 0 ? Status::FromErrno("witness: send", errno) : Status::IoError("witness: short send");
  }

  Status Request(LeaseOp op, uint64_t term, uint64_t epoch) {
    if (!core) return Status::InvalidArgument("witness client: not started");
    uint8_t buf[kWitnessMessageSize];
    TANDEM_RETURN_IF_ERROR(core->BuildRequest(op, term, epoch, clock->NowNanos(), buf));
    return Send(buf);
  }

  const WitnessClientOptions options;
  Clock* const clock;
  UniqueFd fd;
  std::unique_ptr<WitnessClientCore> core;
  LeaseAuthorityStatus status;
};

WitnessClient::WitnessClient(WitnessClientOptions options, Clock* clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {}
WitnessClient::~WitnessClient() = default;

Status WitnessClient::Start() {
  Impl& s = *impl_;
  if (s.core) return Status::InvalidArgument("witness client: already started");
  if (s.options.psk.empty()) return Status::InvalidArgument("witness client: a pre-shared key is required");
  TANDEM_RETURN_IF_ERROR(CheckKeyLength(s.options.psk, "witness client: the pre-shared key"));
  if (!ValidNodeName(s.options.vm) || !ValidNodeName(s.options.node)) {
    return Status::InvalidArgument("witness client: vm and node names must be 1..32 bytes");
  }
  auto remote = ParseAddress(s.options.witness_address);
  if (!remote.ok()) return remote.status().WithContext("witness address");
  SocketAddress local;
  if (s.options.local_address.empty()) {
    local.storage.ss_family = sa_family_t(remote->family());
    local.len = remote->len;
  } else {
    auto parsed = ParseAddress(s.options.local_address, /*allow_port_zero=*/true);
    if (!parsed.ok()) return parsed.status().WithContext("witness local address");
    local = *parsed;
  }
  if (local.family() != remote->family()) return Status::InvalidArgument("witness: local and witness address families differ");
  TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, OpenUdpSocket(local, "witness client"));
  if (::connect(fd.get(), remote->get(), remote->len) != 0) {
    return Status::FromErrno("witness client: connect " + s.options.witness_address, errno);
  }
  auto key = MacKey::Create(s.options.psk);
  if (!key.ok()) return key.status();
  s.core = std::make_unique<WitnessClientCore>(s.options.vm, s.options.node, std::move(key).value(),
                                               RandomNonZeroId(s.clock));
  s.fd = std::move(fd);
  TLOG_INFO(kLog, "%s for vm %s: witness %s (incarnation %016" PRIx64 ")", s.options.node.c_str(),
            s.options.vm.c_str(), s.options.witness_address.c_str(), s.core->incarnation());
  return Status::Ok();
}

Status WitnessClient::RequestRenew(uint64_t term) { return impl_->Request(LeaseOp::kRenew, term, 0); }

Status WitnessClient::RequestPromote(uint64_t term, uint64_t last_applied_epoch) {
  return impl_->Request(LeaseOp::kPromote, term, last_applied_epoch);
}

bool WitnessClient::PollReply(LeaseReply* reply) {
  Impl& s = *impl_;
  if (!s.core) return false;
  uint8_t in[kWitnessMessageSize + 1];
  uint8_t resend[kWitnessMessageSize];
  for (int n = 0; n < 256; ++n) {
    const ssize_t got = ::recv(s.fd.get(), in, sizeof(in), MSG_TRUNC | MSG_DONTWAIT);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
      continue;  // a queued ICMP error (witness port closed): not a reply; keep draining
    }
    const size_t len = std::min<size_t>(size_t(got), sizeof(in));
    const int64_t now = s.clock->NowNanos();
    switch (s.core->OnDatagram(std::span<const uint8_t>(in, len), now, reply, resend)) {
      case WitnessClientCore::Outcome::kReply:
        s.status.replies++;
        s.status.last_reply_ns = now;
        return true;
      case WitnessClientCore::Outcome::kResend:
        s.status.last_reply_ns = now;
        (void)s.Send(resend);  // failures are counted in send_errors; the next renew goes out anyway
        break;
      case WitnessClientCore::Outcome::kRejected:
        break;
    }
  }
  return false;
}

int WitnessClient::wait_fd() const { return impl_->fd.valid() ? impl_->fd.get() : -1; }

LeaseAuthorityStatus WitnessClient::status() const {
  const Impl& s = *impl_;
  LeaseAuthorityStatus st = s.status;
  if (s.core) {
    st.rejected = s.core->rejected();
    st.challenges = s.core->challenges();
  }
  st.reachable = st.last_reply_ns >= 0 &&
                 s.clock->NowNanos() - st.last_reply_ns <= int64_t(s.options.reachable_window_ms) * 1'000'000;
  return st;
}

// ---------------------------------------------------------------------------------------------------------------
// Status query.

Result<WitnessStatusReply> QueryWitnessStatus(const std::string& witness_address, const std::string& psk,
                                              const std::string& vm, const std::string& node, int timeout_ms) {
  Clock* clock = SystemClock();
  TANDEM_ASSIGN_OR_RETURN(MacKey key, MacKey::Create(psk));
  WitnessMessage q;
  q.type = WitnessType::kStatusQuery;
  if (!q.vm.Set(vm) || !q.node.Set(node)) return Status::InvalidArgument("witness status: bad vm or node name");
  q.incarnation = RandomNonZeroId(clock);
  auto remote = ParseAddress(witness_address);
  if (!remote.ok()) return remote.status().WithContext("witness address");
  SocketAddress local;
  local.storage.ss_family = sa_family_t(remote->family());
  local.len = remote->len;
  TANDEM_ASSIGN_OR_RETURN(UniqueFd fd, OpenUdpSocket(local, "witness status"));
  if (::connect(fd.get(), remote->get(), remote->len) != 0) {
    return Status::FromErrno("witness status: connect " + witness_address, errno);
  }
  const int64_t deadline = clock->NowNanos() + int64_t(timeout_ms) * 1'000'000;
  uint8_t out[kWitnessMessageSize], in[kWitnessMessageSize + 1];
  while (clock->NowNanos() < deadline) {
    q.sequence++;
    q.send_ns = clock->NowNanos();
    TANDEM_RETURN_IF_ERROR(EncodeWitnessMessage(q, key, out));
    (void)::send(fd.get(), out, sizeof(out), MSG_DONTWAIT);
    const int64_t resend_at = std::min(deadline, q.send_ns + 100'000'000);
    for (int64_t now = clock->NowNanos(); now < resend_at; now = clock->NowNanos()) {
      pollfd p{fd.get(), POLLIN, 0};
      if (::poll(&p, 1, int((resend_at - now) / 1'000'000) + 1) <= 0) continue;
      const ssize_t got = ::recv(fd.get(), in, sizeof(in), MSG_TRUNC | MSG_DONTWAIT);
      if (got <= 0) continue;
      auto r = DecodeAuthenticatedWitnessMessage(std::span<const uint8_t>(in, std::min<size_t>(size_t(got), sizeof(in))), key);
      if (!r.ok() || r->type != WitnessType::kStatusReply || r->peer_incarnation != q.incarnation ||
          r->echo_sequence > q.sequence) {
        continue;
      }
      WitnessStatusReply s;
      s.holder = std::string(r->holder.view());
      s.term = r->term;
      s.lease_ms = r->lease_ms;
      s.lease_remaining_ms = r->lease_remaining_ms;
      s.startup_hold = (r->flags & kWitnessFlagStartupHold) != 0;
      s.rtt_ms = double(clock->NowNanos() - r->echo_send_ns) / 1e6;
      return s;
    }
  }
  return Status::Timeout("witness " + witness_address + " did not answer within " + std::to_string(timeout_ms) + " ms");
}

}  // namespace tandem::heartbeat
