// Failover: the warm standby QEMU (started with -incoming defer on the replica RAM file) loads the last applied
// epoch's device state and runs. RAM is not sent: QEMU uses the replica file as it is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/env.h"
#include "common/status.h"
#include "qemu-integration/qmp.h"
#include "replicator/epoch.h"

namespace tandem::qemu {

// A migration stream QEMU accepts without a RAM section: QEVM header, the precopy's CONFIGURATION section
// (descriptor.qemu_configuration, type byte included, as ColoStreamParser keeps it), `device_state` (FULL
// sections then EOF, as in the precopy or a checkpoint) and the VMDESCRIPTION trailer.
std::string BuildResumeStream(const replicator::VmDescriptor& descriptor, const std::vector<uint8_t>& device_state);

// Starts incoming migration on unix:<incoming_unix_socket> (QEMU listens, tandem connects and writes `stream`),
// then waits until query-status says running. Clear errors when the standby is not waiting for a migration,
// refuses the stream or exits while loading it (QEMU 7.2 exits on a failed incoming migration). The socket and
// the deadline come from `env`.
Status ResumeStandbyQemu(QmpClient& qmp, const std::string& stream, const std::string& incoming_unix_socket,
                         int timeout_ms, Env* env = Env::Default());

}  // namespace tandem::qemu
