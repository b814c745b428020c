// Any datagram a spoofer can send reaches DecodeMessage first: it must never crash, whatever it accepts must
// re-encode to the same bytes (no field silently dropped or normalised), and nothing without the key's MAC
// passes authentication.
#include <cstdint>
#include <cstring>
#include <span>

#include "heartbeat/message.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::heartbeat;
  static const MacKey key = std::move(MacKey::Create("fuzz-key-0123456789abcdef")).value();
  const std::span<const uint8_t> datagram(data, size);
  auto message = DecodeMessage(datagram);
  if (!message.ok()) return 0;
  uint8_t again[kMessageSize];
  if (!EncodeMessage(*message, key, again).ok()) __builtin_trap();  // decoded fields must be sendable
  if (memcmp(again, data, kMacOffset) != 0) __builtin_trap();
  // Authentic only if the fuzzer reproduced the MAC exactly (it cannot without the key, except by copying).
  if (DecodeAuthenticatedMessage(datagram, key).ok() && memcmp(again + kMacOffset, data + kMacOffset, kMacSize) != 0) {
    __builtin_trap();
  }
  return 0;
}
