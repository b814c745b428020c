// Output commit for the guest's NIC. QEMU's NIC backend is a unix datagram socket (one Ethernet frame per
// datagram) that this module owns; the outside is a host interface (a TAP device, or any fd that reads and
// writes one frame per call: tests use a socketpair). Frames from the guest are held until their epoch is
// acknowledged; frames from outside go to the guest at once.
#pragma once

#include <memory>
#include <string>

#include "common/env.h"
#include "common/fd.h"
#include "common/status.h"
#include "output-commit/held_output.h"

namespace tandem::output_commit {

struct NicOptions {
  std::string socket_path;       // tandem binds it: QEMU's remote.path (<state_dir>/nic.sock)
  std::string qemu_socket_path;  // QEMU binds it: its local.path (<state_dir>/nic-qemu.sock); the only sender
                                 // accepted, and where frames from outside go
  UniqueFd outside;              // OpenTap(...) or, in tests, one end of a socketpair; made non-blocking
  HoldLimits limits;             // max_record_bytes: the largest frame (65536 covers any MTU QEMU sends)
};

// Opens (creating it if needed, as a non-persistent device) the TAP interface `name`: IFF_TAP | IFF_NO_PI, so
// every read and write is exactly one Ethernet frame. Needs CAP_NET_ADMIN unless the device exists and belongs
// to this user. The operator brings it up and may add it to a bridge (README.md).
Result<UniqueFd> OpenTap(const std::string& name);
// Brings the interface `tap` up and, unless `bridge` is empty, enslaves it to that existing bridge (what
// `ip link set <tap> master <bridge> up` does). Needs CAP_NET_ADMIN.
Status BringUpTap(const std::string& tap, const std::string& bridge);

class NicOutputCommit final : public HeldOutput {
 public:
  // Binds socket_path (a stale socket file there is replaced).
  static Result<std::unique_ptr<NicOutputCommit>> Create(NicOptions options, Clock* clock);
  ~NicOutputCommit() override;

 private:
  NicOutputCommit(NicOptions options, UniqueFd guest, Clock* clock);
  Status DrainSourceLocked() override;
  WriteResult WriteSinkLocked(std::span<const uint8_t> frame) override;
  void AddPollFdsLocked(std::vector<pollfd>* fds) override;
  Status HandlePollLocked(const std::vector<pollfd>& fds) override;
  void PassInboundLocked();

  NicOptions options_;
  UniqueFd guest_;  // bound to socket_path
  std::vector<uint8_t> inbound_;
};

}  // namespace tandem::output_commit
