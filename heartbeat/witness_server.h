// The witness process: WitnessCore (heartbeat/witness_core.h) on a UDP socket, with its thread, the state file
// and the lock that keeps a second witness off the same state.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/env.h"
#include "common/service_notifier.h"
#include "common/status.h"
#include "heartbeat/witness_core.h"

namespace tandem::heartbeat {

struct WitnessOptions {
  std::string listen_address = "0.0.0.0:7450";  // ip:port (UDP); port 0 = any free port (tests)
  std::string psk;                               // required, shared with the hosts
  std::string state_path;                        // required: the term file (and state_path + ".lock")
  int lease_ms = 150;
  int startup_hold_ms = -1;  // -1: lease_ms. Values below lease_ms are raised to lease_ms.
  size_t max_vms = 1024;
  // WATCHDOG=1 from every turn of the server's receive loop (at least once a second); READY=1 and STATUS= from
  // RunWitnessDaemon once bound.
  ServiceNotifier* notifier = NoServiceNotifier();
};

class WitnessServer;
// RunWitnessDaemon calls it with the running server once it is bound, and with nullptr before it stops (the
// metrics endpoint reads its counters in between).
using WitnessServingHook = std::function<void(const WitnessServer* serving)>;

// WitnessCore on a UDP socket, with one thread, the state file and its lock.
class WitnessServer {
 public:
  // The state file and its lock go through `env`, time through env->clock().
  WitnessServer(WitnessOptions options, Env* env);
  // The host's Env on `clock` (tests drive the lease arithmetic with a FakeClock).
  WitnessServer(WitnessOptions options, Clock* clock);
  ~WitnessServer();  // Stop()s
  WitnessServer(const WitnessServer&) = delete;
  WitnessServer& operator=(const WitnessServer&) = delete;

  // Validates the options, locks state_path + ".lock" (a second witness on the same state is refused: two
  // witnesses would be two term authorities), loads the state, binds and starts the thread.
  Status Start();
  int port() const;  // the bound UDP port (after Start)
  // Idempotent; joins the thread and closes the socket (the state file stays). Any thread may call it.
  void Stop();
  // Blocks until Stop() has run (e.g. from a thread that waits for SIGTERM); returns at once if not started.
  void Wait();

  WitnessVmState state(std::string_view vm) const;
  WitnessCounters counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// `tandem witness`: runs a WitnessServer on `env` until `stop_requested` returns true (polled every
// 100 ms), or, when it is empty, until SIGINT or SIGTERM (blocked in the calling thread and waited for).
Status RunWitnessDaemon(const WitnessOptions& options, const std::function<bool()>& stop_requested = {},
                        Env* env = Env::Default(), const WitnessServingHook& serving = {});

}  // namespace tandem::heartbeat
