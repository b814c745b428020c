// Small UDP helpers shared by the heartbeat service, the witness server and the witness client (internal to the
// heartbeat module; numeric addresses only, so no heartbeat or lease ever waits on DNS).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>

#include "common/env.h"
#include "common/fd.h"
#include "common/net_address.h"
#include "common/status.h"

namespace tandem::heartbeat {

using ::tandem::SocketAddress;

// "a.b.c.d:port" or "[v6]:port" (common/net_address.h's grammar, numeric hosts only). Port 0 only when
// `allow_port_zero` (bind to an ephemeral port, for tests).
Result<SocketAddress> ParseAddress(const std::string& text, bool allow_port_zero = false);
std::string FormatAddress(const sockaddr_storage& address);

// A non-blocking, close-on-exec UDP socket bound to `local` with the network-control TOS (CS6, best effort) so
// congested queues drop data before heartbeats and lease renewals.
Result<UniqueFd> OpenUdpSocket(const SocketAddress& local, const std::string& what);

// The port a bound socket got (0 on error).
int BoundPort(int fd);

}  // namespace tandem::heartbeat
