// The primary role: runs the protected VM's QEMU in COLO checkpoint mode with tandem as its migration target,
// turns every checkpoint into an epoch, lets the VM resume as soon as the epoch is whole in local memory, and
// ships it to the standby behind the VM's back.
#pragma once

#include <functional>
#include <memory>

#include "common/env.h"
#include "common/service_notifier.h"
#include "disk/block_device.h"
#include "roles/arbitration.h"
#include "roles/options.h"
#include "roles/replication.h"
#include "roles/shutdown.h"
#include "roles/vm_host.h"

namespace tandem::roles {

// Exit codes of both roles (the tandem binary's).
constexpr int kExitOk = 0;          // shutdown requested (or the promoted VM ended)
constexpr int kExitFailed = 1;      // status.json says "failed" and why
constexpr int kExitSuperseded = 3;  // a newer term runs the VM elsewhere: this host's copy was killed
// Not a process exit code: the role handed the VM to its standby (`tandem switchover`); the whole role then
// rejoins as the standby (re-protection) or exits with kExitOk.
constexpr int kExitSwitchedOver = 4;

struct PrimaryEnv {
  Clock* clock = nullptr;
  VmHost* host = nullptr;
  RunGuard* guard = nullptr;  // started
  Shutdown* shutdown = nullptr;
  // The shipper of the term the guard granted; `disk` is the guest's disk image (null: no disk).
  std::function<std::unique_ptr<EpochShipping>(uint64_t term, disk::BlockDevice* disk)> make_shipper;
  // READY=1 once the VM runs with its shipper started (protected or, with no standby yet, explicitly
  // UNPROTECTED), STATUS= on every state change, WATCHDOG=1 from every turn of the checkpoint loop.
  ServiceNotifier* notifier = NoServiceNotifier();
};

// The role once the heartbeats and the guard run: waits for the right to run the VM, starts QEMU, takes the
// precopy and then a checkpoint every epoch_ms until shutdown, failure or supersession. Whatever way it ends,
// QEMU is killed and the shipper stopped.
int RunPrimaryRole(const PrimaryOptions& options, const PrimaryEnv& env);

// A VM this host already runs (a promoted standby's) and its outputs (passing through since the failover).
struct RunningVm {
  Vm* vm = nullptr;
  GuestOutputs* outputs = nullptr;
};

// Re-protection: the primary role over `running` instead of a QEMU it starts (the VM keeps running through the
// precopy). Returns as RunPrimaryRole; the VM is not killed here: a superseded or shut down role's caller kills
// it, and when the checkpoint stream failed COLO is left (x-colo-lost-heartbeat) so the VM goes on unprotected.
int ReprotectRunningVm(const PrimaryOptions& options, const PrimaryEnv& env, RunningVm running);

// The whole role on this host: heartbeats, witness client, guard, QEMU, shipper. With
// options.rejoin_as_standby, a host whose VM the witness says runs on the other host runs RunStandby instead.
int RunPrimary(const PrimaryOptions& options, Shutdown* shutdown, ServiceNotifier* notifier = NoServiceNotifier());

}  // namespace tandem::roles
