#include "heartbeat/detector.h"

#include <algorithm>
#include <bit>

namespace tandem::heartbeat {

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kAccepted: return "accepted";
    case Verdict::kOwnMessage: return "own node name (loop or miswired peer_address)";
    case Verdict::kWrongSender: return "unknown sender";
    case Verdict::kWrongReceiver: return "addressed to another node";
    case Verdict::kWrongLink: return "wrong link index (miswired addresses)";
    case Verdict::kReplay: return "replayed or duplicate sequence";
    case Verdict::kRetiredIncarnation: return "replaced peer incarnation";
    case Verdict::kUnconfirmedIncarnation: return "unconfirmed peer incarnation";
    case Verdict::kStaleTerm: return "stale term (superseded sender)";
  }
  return "?";
}

PeerDetector::PeerDetector(std::string node_name, std::string peer_name, size_t links, int64_t timeout_ns,
                           int64_t start_ns, int64_t promise_ns)
    : node_name_(std::move(node_name)),
      peer_name_(std::move(peer_name)),
      timeout_ns_(timeout_ns),
      start_ns_(start_ns),
      promise_ns_(promise_ns),
      links_(links) {}

int64_t PeerDetector::promise_until_ns() const {
  if (promise_ns_ <= 0) return 0;
  return std::max(start_ns_, last_primary_rx_ns_) + promise_ns_;
}

void PeerDetector::NoteEchoable(const Message& m, int64_t now_ns) {
  if (m.role == Role::kPrimary) last_primary_rx_ns_ = std::max(last_primary_rx_ns_, now_ns);
}

bool PeerDetector::IsRetired(uint64_t incarnation) const {
  return std::find(retired_.begin(), retired_.end(), incarnation) != retired_.end();
}

bool PeerDetector::EchoIsFresh(const Message& m, int64_t now_ns) const {
  return m.echo_ns != 0 && m.echo_ns >= start_ns_ && m.echo_ns <= now_ns && now_ns - m.echo_ns <= timeout_ns_;
}

void PeerDetector::Adopt(uint64_t incarnation, DetectorEvents* events) {
  if (incarnation_ != 0) {
    retired_[retired_next_] = incarnation_;
    retired_next_ = (retired_next_ + 1) % retired_.size();
    restarts_++;
    events->peer_restarted = true;
    events->old_incarnation = incarnation_;
  }
  events->new_incarnation = incarnation;
  incarnation_ = incarnation;
  // Sequence numbers are per incarnation: start every link's replay and loss window afresh.
  for (Link& l : links_) {
    l.last_seq = 0;
    l.window = 0;
    l.window_len = 0;
  }
}

Verdict PeerDetector::OnMessage(size_t link_index, const Message& m, int64_t now_ns, DetectorEvents* events) {
  Link& link = links_[link_index];
  Verdict verdict = Verdict::kAccepted;
  if (m.sender == node_name_) {
    verdict = Verdict::kOwnMessage;
  } else if (!(m.sender == peer_name_)) {
    verdict = Verdict::kWrongSender;
  } else if (!(m.receiver == node_name_)) {
    verdict = Verdict::kWrongReceiver;
  } else if (m.link_index != link_index) {
    verdict = Verdict::kWrongLink;
  } else if (IsRetired(m.incarnation)) {
    verdict = Verdict::kRetiredIncarnation;
  } else if (m.term != 0 && m.term < local_term_) {
    verdict = Verdict::kStaleTerm;
  } else if (m.incarnation == incarnation_) {
    if (m.sequence <= link.last_seq) verdict = Verdict::kReplay;
  } else {
    // Authentic, from the peer, not a retired process: a higher term than ours is news even before the
    // incarnation is confirmed (replays only carry terms already seen).
    max_term_seen_ = std::max(max_term_seen_, m.term);
    // Echo its timestamps even before confirming it: that is how it confirms us, and then we it.
    link.echo_send_ns = m.send_ns;
    link.echo_rx_ns = now_ns;
    NoteEchoable(m, now_ns);
    if (!EchoIsFresh(m, now_ns)) {
      link.unconfirmed++;
      return Verdict::kUnconfirmedIncarnation;
    }
    Adopt(m.incarnation, events);
  }
  if (verdict != Verdict::kAccepted) {
    link.rejected++;
    return verdict;
  }

  // Loss window over sequence numbers.
  if (link.last_seq == 0) {
    link.window = 1;
    link.window_len = 1;
  } else {
    const uint64_t gap = m.sequence - link.last_seq;
    link.window = gap >= 64 ? 1 : (link.window << gap) | 1;
    link.window_len = uint32_t(std::min<uint64_t>(64, link.window_len + gap));
  }
  link.last_seq = m.sequence;
  link.received++;
  max_term_seen_ = std::max(max_term_seen_, m.term);
  link.echo_send_ns = m.send_ns;
  link.echo_rx_ns = now_ns;
  NoteEchoable(m, now_ns);
  // The standby's promise, anchored on OUR send time it echoes (never on its clock).
  if (m.role == Role::kStandby && m.promise_ms > 0 && m.echo_ns != 0 && m.echo_ns >= start_ns_ && m.echo_ns <= now_ns) {
    support_until_ns_ = std::max(support_until_ns_, m.echo_ns + int64_t(m.promise_ms) * 1'000'000);
  }
  // Round trip: our send time echoed back, minus the time the peer sat on it.
  if (m.echo_ns != 0 && m.echo_ns >= start_ns_ && m.echo_ns <= now_ns) {
    const int64_t rtt = now_ns - m.echo_ns - m.hold_ns;
    if (rtt >= 0 && rtt <= timeout_ns_) {
      link.srtt_ns = link.has_rtt ? link.srtt_ns + (double(rtt) - link.srtt_ns) / 8 : double(rtt);
      link.has_rtt = true;
    }
  }
  remote_ = LocalState{m.role, m.term, m.last_epoch};
  link.heard = true;
  link.last_rx_ns = now_ns;
  last_rx_ns_ = std::max(last_rx_ns_, now_ns);
  if (!link.up) {
    link.up = true;
    events->links_up |= 1u << link_index;
  }
  if (!alive_) {
    alive_ = true;
    if (!ever_heard_) events->peer_found = true;
    if (lost_reported_) events->peer_recovered = true;
    ever_heard_ = true;
  }
  return Verdict::kAccepted;
}

DetectorEvents PeerDetector::Tick(int64_t now_ns) {
  DetectorEvents events;
  bool any_up = false;
  for (size_t i = 0; i < links_.size(); ++i) {
    Link& l = links_[i];
    if (l.up && now_ns - l.last_rx_ns >= timeout_ns_) {
      l.up = false;
      events.links_down |= 1u << i;
    }
    any_up = any_up || l.up;
  }
  if (alive_ && !any_up) {
    alive_ = false;
    lost_reported_ = true;
    events.peer_lost = true;
  }
  return events;
}

int64_t PeerDetector::NextDeadline() const {
  int64_t deadline = std::numeric_limits<int64_t>::max();
  for (const Link& l : links_) {
    if (l.up) deadline = std::min(deadline, l.last_rx_ns + timeout_ns_);
  }
  return deadline;
}

void PeerDetector::FillEcho(size_t link_index, int64_t now_ns, Message* m) const {
  const Link& l = links_[link_index];
  m->echo_ns = l.echo_send_ns;
  m->hold_ns = l.echo_send_ns != 0 ? std::max<int64_t>(0, now_ns - l.echo_rx_ns) : 0;
}

PeerStatus PeerDetector::Snapshot(int64_t now_ns) const {
  PeerStatus s;
  s.ever_heard = ever_heard_;
  s.alive = alive_;
  s.last_heard_ms_ago = ever_heard_ ? (now_ns - last_rx_ns_) / 1'000'000 : -1;
  s.remote = remote_;
  s.incarnation = incarnation_;
  s.restarts = restarts_;
  s.max_term_seen = max_term_seen_;
  s.support_until_ns = support_until_ns_;
  s.promise_until_ns = promise_until_ns();
  s.links.reserve(links_.size());
  for (const Link& l : links_) {
    LinkStatus ls;
    ls.up = l.up;
    ls.rtt_ms = l.has_rtt ? l.srtt_ns / 1e6 : 0;
    if (!l.up) {
      ls.loss = 1.0;
    } else if (l.window_len > 0) {
      const uint64_t mask = l.window_len >= 64 ? ~uint64_t{0} : (uint64_t{1} << l.window_len) - 1;
      ls.loss = 1.0 - double(std::popcount(l.window & mask)) / double(l.window_len);
    }
    ls.sent = l.sent;
    ls.received = l.received;
    ls.rejected = l.rejected;
    ls.unconfirmed = l.unconfirmed;
    ls.send_errors = l.send_errors;
    ls.last_heard_ms_ago = l.heard ? (now_ns - l.last_rx_ns) / 1'000'000 : -1;
    s.links.push_back(std::move(ls));
  }
  return s;
}

}  // namespace tandem::heartbeat
