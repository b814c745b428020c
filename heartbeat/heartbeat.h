// Peer liveness over redundant UDP links (BFD-like): every interval each link sends one authenticated datagram
// to the peer (heartbeat/message.h) and the detector (heartbeat/detector.h) declares the peer lost when every link
// has been silent for timeout. One thread serves all links; time comes from the Clock seam.
//
//   HeartbeatService hb(options, SystemClock());
//   hb.SetLocalState({Role::kStandby, term, last_applied});
//   hb.OnPeerLost([] { ... });       // register callbacks before Start()
//   TANDEM_RETURN_IF_ERROR(hb.Start());
//   ...
//   hb.Stop();
//
// Callbacks run on the heartbeat thread, outside its lock: they may call peer() and SetLocalState(), should
// return quickly (no datagram is sent or read meanwhile) and must not destroy the service.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "common/env.h"
#include "common/status.h"
#include "heartbeat/message.h"
#include "heartbeat/types.h"

namespace tandem::heartbeat {

class HeartbeatService {
 public:
  HeartbeatService(HeartbeatOptions options, Clock* clock);
  ~HeartbeatService();  // Stop()s
  HeartbeatService(const HeartbeatService&) = delete;
  HeartbeatService& operator=(const HeartbeatService&) = delete;

  // Validates the options (InvalidArgument: empty psk, bad names, no or too many links, timeout_ms <=
  // interval_ms, unparsable address), binds every link (IoError names the address) and starts the thread.
  // Once only: a stopped service is not restarted (make a new one, which is also a new incarnation).
  Status Start();

  // Carried by every following datagram. A role or term change is sent at once, not at the next interval.
  // The term is also the floor below which the peer's datagrams are refused (stale term; 0 = none yet).
  void SetLocalState(LocalState state);

  PeerStatus peer() const;

  // Once per alive -> dead transition of the peer as a whole (every link silent for timeout_ms), only after the
  // peer was heard at least once.
  void OnPeerLost(std::function<void()> callback);
  // Once per dead -> alive transition after a reported loss (not for the first contact).
  void OnPeerRecovered(std::function<void()> callback);
  // A new peer process (incarnation) replaced the one we accepted, whether or not a loss was reported between.
  void OnPeerRestarted(std::function<void()> callback);

  // Idempotent. Joins the thread (when called from a callback it only asks the thread to end).
  void Stop();

  // This process's random incarnation (fixed at construction).
  uint64_t incarnation() const;

  // Test hook: a blocked link neither sends nor accepts anything, as if its cable were pulled.
  void SetLinkBlockedForTesting(size_t link, bool blocked);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::heartbeat
