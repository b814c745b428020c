// Shared pieces of the qemu-integration tests: temp dirs, fixtures, the KVM check, the test guest's serial
// output and RAM layout.
#pragma once

#include "tests/support/kvm.h"
#include "tests/support/temp_dir.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "qemu-integration/colo_stream.h"
#include "qemu-integration/qemu_args.h"
#include "replicator/epoch.h"

namespace tandem::qemu::testing {

using ::tandem::testing::TempDir;

std::string ReadFileOrEmpty(const std::string& path);
// A zstd-compressed fixture from tests/qemu/data/.
std::vector<uint8_t> ReadFixture(const std::string& name);

// Empty if KVM can run the test guest here; otherwise why not. TANDEM_KVM=usable|1 or unusable|0 decides;
// otherwise scripts/probe-kvm (when present) or a /dev/kvm check.
using ::tandem::testing::KvmUnusableReason;

// Path of the project's bare-metal test guest (built by the tandem_test_guest target).
std::string TestGuestPath();

// A VM config for the test guest with everything under `dir` (file names prefixed by `tag`).
VmConfig TestGuestVm(const std::string& dir, const std::string& tag, const std::string& accel, uint64_t memory_mb,
                     const std::string& append);

struct CounterLine {
  uint64_t counter = 0;
  bool ok = false;
};
// "counter=<n> ok" / "counter=<n> INVARIANT BROKEN" lines of the guest's serial output, in order; complete lines
// only (the last one may still be being written).
std::vector<CounterLine> ParseCounters(const std::string& serial);

// Polls `done` every 10 ms for up to timeout_ms.
bool WaitUntil(int timeout_ms, const std::function<bool()>& done);

// Checks the test guest's workload pages in a RAM image of its main memory: every page header valid and the
// counters of the form c,..,c,c-1,..,c-1 (one consistent instant). Returns c, or an error naming the first bad
// page. Recorded fixtures come from an earlier guest build whose check-word formula may differ: they pass
// verify_check_word=false (magic, index, page count, counter and tail words are checked either way).
std::string CheckGuestPages(std::span<const uint8_t> ram, uint32_t pages, uint32_t* counter,
                            bool verify_check_word = true);

// A precopy parsed into a fresh replicator::RamImage.
struct Parsed {
  Status status;
  replicator::VmDescriptor descriptor;
  std::vector<uint8_t> device_state;
  std::unique_ptr<replicator::RamImage> image;
};

inline Parsed ParsePrecopyBytes(ColoStreamParser& parser) {
  Parsed p;
  p.status = parser.ParsePrecopy(
      [&](const replicator::VmDescriptor& layout) -> Result<replicator::PageSink*> {
        auto image = replicator::RamImage::Create(layout, {});
        if (!image.ok()) return image.status();
        p.image = std::move(image).value();
        return static_cast<replicator::PageSink*>(p.image.get());
      },
      &p.descriptor, &p.device_state);
  return p;
}

// The next checkpoint of a parsed stream (CHECKPOINT_REQUEST, VMSTATE_SEND, its pages and device state) into
// `epoch`, numbered `number`.
inline Status ParseNextCheckpoint(ColoStreamParser& parser, replicator::Epoch* epoch, uint64_t number) {
  epoch->Reset(number, false);
  TANDEM_RETURN_IF_ERROR(parser.ExpectMessage(ColoMessage::kCheckpointRequest));
  TANDEM_RETURN_IF_ERROR(parser.ExpectMessage(ColoMessage::kVmstateSend));
  return parser.ParseCheckpointState(epoch, &epoch->device_state());
}

}  // namespace tandem::qemu::testing

#define REQUIRE_KVM() TANDEM_REQUIRE_KVM()
