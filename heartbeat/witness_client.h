// The UDP witness client: LeaseAuthority (heartbeat/lease.h) over the witness protocol
// (heartbeat/witness_message.h), plus a one-shot status query for `tandem status`.
//
//   WitnessClient witness({.witness_address = "10.0.0.9:7450", .psk = psk, .vm = "vm0", .node = "host-a"}, clock);
//   TANDEM_RETURN_IF_ERROR(witness.Start());
//   witness.RequestRenew(term);                        // every interval, never blocks
//   LeaseReply r; while (witness.PollReply(&r)) arbiter.OnLeaseReply(r);
//
// The challenge handshake (a witness that restarted, or our first request) is handled inside: the request is
// re-sent once with the witness's incarnation and only its answer comes out of PollReply.
// Not thread-safe: one thread drives a client.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "common/env.h"
#include "common/status.h"
#include "heartbeat/lease.h"
#include "heartbeat/witness_message.h"

namespace tandem::heartbeat {

// The request/reply bookkeeping without I/O (used by WitnessClient, and by tests and simulations directly).
class WitnessClientCore {
 public:
  // InvalidArgument via ok() == false for bad names.
  WitnessClientCore(std::string_view vm, std::string_view node, MacKey key, uint64_t incarnation);
  bool ok() const { return ok_; }

  // Writes a request datagram (kWitnessMessageSize bytes) into `out` and remembers it as outstanding.
  Status BuildRequest(LeaseOp op, uint64_t term, uint64_t last_applied_epoch, int64_t now_ns, std::span<uint8_t> out);

  enum class Outcome {
    kReply,     // *reply is the answer to one of our requests
    kResend,    // a challenge: `resend` holds the same request again with the witness incarnation; send it
    kRejected,  // not for us, malformed, forged, duplicate or unknown request (counted)
  };
  Outcome OnDatagram(std::span<const uint8_t> datagram, int64_t now_ns, LeaseReply* reply, std::span<uint8_t> resend);

  uint64_t incarnation() const { return incarnation_; }
  uint64_t witness_incarnation() const { return witness_incarnation_; }
  uint64_t rejected() const { return rejected_; }
  uint64_t challenges() const { return challenges_; }

 private:
  struct Outstanding {
    uint64_t seq = 0;
    int64_t send_ns = 0;
    LeaseOp op = LeaseOp::kRenew;
    uint64_t term = 0, epoch = 0;
    uint64_t sent_with_witness = 0;  // the witness incarnation the request carried
    bool answered = false;
  };
  static constexpr size_t kWindow = 64;  // requests remembered (~640 ms at a 10 ms renew interval)

  bool ok_ = false;
  NodeName vm_, node_;
  MacKey key_;
  uint64_t incarnation_;
  uint64_t next_seq_ = 1;
  uint64_t witness_incarnation_ = 0;
  std::array<Outstanding, kWindow> outstanding_{};
  uint64_t rejected_ = 0, challenges_ = 0;
};

struct WitnessClientOptions {
  std::string witness_address;  // ip:port of `tandem witness`
  std::string local_address;    // ip:port to send from ("" = any address of the witness's family, any port)
  std::string psk;
  std::string vm;    // 1..32 bytes
  std::string node;  // this host's name, 1..32 bytes; must be stable across restarts and distinct per host
  int reachable_window_ms = 1000;  // status().reachable: an authentic reply within this window
};

class WitnessClient : public LeaseAuthority {
 public:
  WitnessClient(WitnessClientOptions options, Clock* clock);
  ~WitnessClient() override;

  // Validates the options and opens the socket (connected to the witness: datagrams from anywhere else are
  // dropped by the kernel).
  Status Start();

  Status RequestRenew(uint64_t term) override;
  Status RequestPromote(uint64_t term, uint64_t last_applied_epoch) override;
  bool PollReply(LeaseReply* reply) override;
  int wait_fd() const override;
  LeaseAuthorityStatus status() const override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// What `tandem status` shows about the witness.
struct WitnessStatusReply {
  std::string holder;  // "" = none
  uint64_t term = 0;   // 0 = the witness has no record of the VM
  int64_t lease_ms = 0;
  int64_t lease_remaining_ms = 0;
  bool startup_hold = false;
  double rtt_ms = 0;
};

// One STATUS_QUERY (re-sent every 100 ms) and its answer, or Timeout after timeout_ms.
Result<WitnessStatusReply> QueryWitnessStatus(const std::string& witness_address, const std::string& psk,
                                              const std::string& vm, const std::string& node, int timeout_ms);

}  // namespace tandem::heartbeat
