// The standby role: a warm standby QEMU (same options, RAM mapped from the replica file, -incoming defer) and
// the receiver that applies only complete, verified epochs to that replica. When the arbiter promotes this host,
// the receiver is stopped (no apply in progress, none to come), and the standby QEMU loads the last applied
// epoch's device state and runs; this host then keeps the lease like any primary.
#pragma once

#include <functional>
#include <memory>

#include "common/env.h"
#include "roles/arbitration.h"
#include "roles/options.h"
#include "roles/primary.h"
#include "roles/replication.h"
#include "roles/shutdown.h"
#include "roles/vm_host.h"

namespace tandem::roles {

struct StandbyEnv {
  Clock* clock = nullptr;
  VmHost* host = nullptr;
  EpochReceiving* receiver = nullptr;  // started
  Promotion* promotion = nullptr;      // started
  Shutdown* shutdown = nullptr;
  // READY=1 once the warm standby QEMU runs and the receiver listens, STATUS= on every state change (primary
  // connected or not, promoted, term), WATCHDOG=1 from every turn of the role's loop.
  ServiceNotifier* notifier = NoServiceNotifier();
  // Re-protection (options.reprotect): the shipper to the other host once promoted, for the granted term.
  std::function<std::unique_ptr<EpochShipping>(uint64_t term, disk::BlockDevice* disk)> make_reprotect_shipper;
};

// The role once the replica, the receiver and the arbitration exist: starts the warm standby QEMU, publishes
// progress until promoted or shut down, then fails over and runs the VM until shutdown, supersession or its end;
// with options.reprotect it checkpoints the VM it resumed and ships it to the other host (ReprotectRunningVm),
// and goes on unprotected if that fails.
// Exit codes as in primary.h; QEMU is killed whatever way it ends.
int RunStandbyRole(const StandbyOptions& options, const StandbyEnv& env);

// The whole role on this host: replica file, receiver, heartbeats, witness client, arbitration, QEMU.
int RunStandby(const StandbyOptions& options, Shutdown* shutdown, ServiceNotifier* notifier = NoServiceNotifier());

}  // namespace tandem::roles
