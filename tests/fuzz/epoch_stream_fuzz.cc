// The replication stream as the standby reads it from the network: framing (RecordReader), then the Replica's
// rules. Whatever the bytes, the standby must not crash, and an epoch it applies must be one whose every record,
// page hash and end marker verified: so after any input, if an epoch was applied, the replica equals a state the
// stream itself fully described (checked by the Replica's own hashes; here: no crash, no sanitizer report, and
// rejected epochs never count as applied).
#include <cstdint>
#include <vector>

#include "common/env.h"
#include "replicator/messages.h"
#include "replicator/replica.h"
#include "replicator/transport.h"

namespace {
constexpr uint64_t kMaxFuzzRam = 64ull << 20;  // a lying HELLO may claim terabytes; the fuzzer skips those
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  using namespace tandem::replicator;
  Replica replica(ReplicaOptions{}, SystemClock());
  replica.StartSession();
  auto transport = MakeMemoryTransport(std::span<const uint8_t>(data, size));
  RecordReader reader(transport.get());
  std::vector<uint8_t> reply;
  for (size_t records = 0; records <= size; ++records) {
    RecordView record;
    DecodeStatus st = reader.Next(-1, 1000, &record);
    if (!st.ok()) {
      replica.OnStreamError(st, &reply);
      break;
    }
    if (record.type == uint32_t(RecordType::kHello)) {
      HelloMessage hello;
      if (ParseHello(record.payload, &hello).ok()) {
        uint64_t total = 0;
        for (const auto& block : hello.descriptor.ram_blocks) total += block.size_bytes;
        if (total > kMaxFuzzRam) return 0;
      }
    }
    reply.clear();
    if (!replica.OnRecord(record, &reply).ok()) break;
  }
  const ReplicaCounters counters = replica.counters();
  if (counters.epochs_applied > 0 && !replica.resume_point().has_value()) __builtin_trap();
  return 0;
}
