// Plain data shared by the heartbeat service, its detector and its callers (status files, failover logic).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "heartbeat/message.h"

namespace tandem::heartbeat {

// Links pair up by position: links[i] of one host talks to links[i] of the other.
inline constexpr size_t kMaxLinks = 16;

struct LinkConfig {
  std::string local_address;  // "ip:port" this host binds (UDP); IPv6 as "[addr]:port"
  std::string peer_address;   // "ip:port" the peer's local_address for the same link
};

struct HeartbeatOptions {
  std::string node_name;  // who we are on the wire (1..32 bytes)
  std::string peer_name;  // the only sender we accept
  std::vector<LinkConfig> links;
  int interval_ms = 10;  // one datagram per link per interval
  int timeout_ms = 60;   // a link (the peer) is down (dead) after this long without an accepted datagram
  // Standby only (0 elsewhere): the promise carried by every datagram sent while our role is kStandby, "no
  // promotion request before promise_ms after hearing you" (see message.h and arbiter.h). 0: no promise, and
  // the primary then gets no support from this standby (it runs on the witness lease alone).
  int promise_ms = 0;
  // Required: every datagram is authenticated with HMAC-SHA256 under this key. There is deliberately no
  // unauthenticated mode: a forged heartbeat can keep a dead primary "alive" (no failover) and a heartbeat
  // network is exactly where spoofing is cheap. Start() returns InvalidArgument for an empty key.
  std::string psk;
};

// What this host tells its peer about itself in every datagram.
struct LocalState {
  Role role = Role::kNone;
  uint64_t term = 0;
  uint64_t last_epoch = 0;
};

struct LinkStatus {
  std::string local_address, peer_address;
  bool up = false;         // an accepted datagram arrived on this link within timeout_ms
  double rtt_ms = 0;       // smoothed round trip (1/8 EWMA) from the echoed timestamps; 0 until the first sample
  double loss = 0;         // fraction of the last 64 sequence numbers that never arrived; 1.0 while down
  uint64_t sent = 0;       // datagrams sent
  uint64_t received = 0;   // datagrams accepted
  uint64_t rejected = 0;   // datagrams refused: bad MAC/size/magic/version, wrong names/link, replay, own name
  uint64_t unconfirmed = 0;  // authentic datagrams of a peer incarnation not yet confirmed fresh (see detector.h)
  uint64_t send_errors = 0;
  int64_t last_heard_ms_ago = -1;  // -1: never
};

struct PeerStatus {
  bool ever_heard = false;
  bool alive = false;
  int64_t last_heard_ms_ago = -1;  // -1: never
  LocalState remote;               // as carried by the last accepted datagram
  uint64_t incarnation = 0;        // the peer process we currently accept (0: none yet)
  uint64_t restarts = 0;           // times a new peer incarnation replaced a known one
  // For the role arbiter (heartbeat/arbiter.h); absolute times on this host's monotonic clock (the service's
  // Clock), 0 = none.
  uint64_t max_term_seen = 0;    // the highest term any authentic datagram of the peer carried
  int64_t support_until_ns = 0;  // primary: latest (our echoed send time + the standby's promise), no margin
  int64_t promise_until_ns = 0;  // standby: we promised not to request promotion before this
  std::vector<LinkStatus> links;
};

}  // namespace tandem::heartbeat
