// QEMU's COLO stream as tandem parses it: a precopy, then checkpoints. The bytes come from a local QEMU, but a
// parser that trusts them is one bug away from writing outside guest RAM; so the fuzzer feeds arbitrary bytes in
// small chunks and the parser must fail cleanly with a Status, never crash or write out of range.
#include <cstdint>
#include <memory>
#include <vector>

#include "qemu-integration/colo_stream.h"
#include "replicator/epoch.h"

namespace {
constexpr uint64_t kMaxFuzzRam = 64ull << 20;  // refuse layouts the fuzzer blows up to gigabytes
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem;
  qemu::MemorySource source(std::span<const uint8_t>(data, size), size > 7 ? data[0] % 64 + 1 : SIZE_MAX);
  qemu::StreamReader reader(&source, 1 << 16);
  qemu::ColoStreamParser parser(&reader);
  std::unique_ptr<replicator::RamImage> ram;
  replicator::VmDescriptor descriptor;
  std::vector<uint8_t> device_state;
  Status st = parser.ParsePrecopy(
      [&](const replicator::VmDescriptor& layout) -> Result<replicator::PageSink*> {
        uint64_t total = 0;
        for (const auto& block : layout.ram_blocks) total += block.size_bytes;
        if (total > kMaxFuzzRam) return Status::InvalidArgument("fuzz: layout too large");
        auto image = replicator::RamImage::Create(layout, {});
        if (!image.ok()) return image.status();
        ram = std::move(image).value();
        return static_cast<replicator::PageSink*>(ram.get());
      },
      &descriptor, &device_state);
  if (!st.ok()) return 0;
  replicator::Epoch epoch;
  for (int checkpoint = 0; checkpoint < 4; ++checkpoint) {
    if (!parser.ExpectMessage(qemu::ColoMessage::kCheckpointRequest).ok()) return 0;
    if (!parser.ExpectMessage(qemu::ColoMessage::kVmstateSend).ok()) return 0;
    epoch.Reset(uint64_t(checkpoint) + 1, false);
    if (!parser.ParseCheckpointState(&epoch, &epoch.device_state()).ok()) return 0;
    if (!ram->Apply(epoch).ok()) return 0;
  }
  return 0;
}
