// How hard the primary compresses each epoch, chosen from what limits shipping it (`replication.compression =
// auto`): the idea of `zstd --adapt`, for a link between two hosts.
//
// An epoch is safe once it is encoded AND on the standby; encoding and sending overlap record by record, so
// per raw byte an epoch costs about max(encode time, wire bytes / link rate). Compressing harder ships fewer
// bytes and costs more CPU, so the best effort is where the two meet: on a fast link (or a local unix socket)
// the encoder is the bottleneck and every bit of effort only delays the epoch (and takes CPU from the VM's
// host); on a slow link the encoder has time to spare and every byte saved shortens the epoch.
//
// The effort ladder, heaviest first (figures: all four real-workload page sets, one core, bench/codec_bench):
//   zstd (replication.zstd_level)            wire 0.13  encode 0.09x memcpy
//   LZ4 acceleration 1, 4, 16, 64, 256, 512  wire 0.15 ... 0.28, encode 0.19x ... 0.34x memcpy
// LZ4's acceleration makes it look for matches only every `acceleration` bytes where it finds none, so high
// values keep the long zero and repeated runs memory pages are full of and skip the short matches. Past 512 it
// gains under 10% of speed for each 12% more bytes, so the ladder stops there.
//
// After each epoch of at least kMinSampleBytes of pages the shipper reports what it measured: the time the
// encoder worked, the time it spent in sends, and the link's rate when it saw the link busy: the socket's unsent
// queue (Transport::QueuedBytes) never emptied since the epoch before (what it drained is the rate), or an
// epoch's sends left part of it unsent and it took a while to leave (a slow link that idles between epochs: that
// part over the time it took). A queue that emptied at once says only that the link is faster than what it was
// given, and gives no rate. Per rung the governor keeps moving averages of encode time, send time and wire bytes,
// each per raw byte. The link's side of the cost is the larger of the send time (the kernel's work on the bytes,
// or waiting for room) and wire bytes over the link rate (the median of the rates among the last kLinkRateWindow
// samples; none: unlimited). When one side outweighs the other by kMargin, the governor steps one rung towards
// balance unless that rung's recent figures say it would cost more. So when neither side is saturated it settles
// on the lightest rung: least CPU taken from the VM's host, for bytes the link has room for. Pure logic, no
// clock: tests drive it with made-up measurements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "replicator/page_codec.h"

namespace tandem::replicator {

struct ShipSample {
  uint64_t raw_bytes = 0;         // pages x 4096 in the epoch
  uint64_t wire_bytes = 0;        // bytes of the epoch as sent
  uint64_t encode_ns = 0;         // time encoding, excluding time in sends
  uint64_t send_ns = 0;           // time in sends: copying into the kernel, and waiting while the link is full
  uint64_t link_bytes_per_s = 0;  // what the link drained while busy; 0 = not measured (never saw it busy)
};

class CompressionGovernor {
 public:
  // Epochs smaller than this are not timed precisely enough to steer by.
  static constexpr uint64_t kMinSampleBytes = 256 * 1024;
  // Samples at a rung before the governor may leave it (its averages reflect that rung by then).
  static constexpr int kSettleSamples = 3;
  // One side must outweigh the other this much before the governor steps: no see-saw at the balance point.
  static constexpr double kMargin = 1.25;
  // A rung's figures older than this many samples are stale (the workload may have changed): ignored.
  static constexpr uint64_t kStaleSamples = 256;
  static constexpr size_t kLinkRateWindow = 16;

  // `configured` is what replication.compression names; `adaptive` (compression = auto) lets the governor walk
  // the ladder, starting at LZ4 acceleration 1; otherwise current() is `configured`.
  CompressionGovernor(const PageCodecOptions& configured, bool adaptive);

  const PageCodecOptions& current() const { return current_; }
  bool adaptive() const { return adaptive_; }
  // "lz4 acceleration 64", "zstd level 1", "none".
  static std::string Describe(const PageCodecOptions& options);

  // An epoch was shipped with current(). True when current() changed.
  bool Observe(const ShipSample& sample);

 private:
  struct Rung {
    PageCodecOptions options;
    double encode_ns_per_byte = 0;  // moving averages of the samples taken at this rung
    double send_ns_per_byte = 0;
    double wire_per_byte = 0;
    uint64_t measured_at = 0;  // sample count when last updated; 0 = never
  };
  bool Known(const Rung& rung) const;
  double LinkCost(const Rung& rung) const;  // ns per raw byte
  double Cost(const Rung& rung) const;      // ns per raw byte: max(encode, link)
  double LinkRate() const;                  // bytes/s; 0 = unknown

  const bool adaptive_;
  std::vector<Rung> ladder_;  // heaviest first
  size_t at_ = 0;
  PageCodecOptions current_;
  uint64_t link_rates_[kLinkRateWindow] = {};  // the last samples' link rates (0: none measured), a ring
  uint64_t samples_ = 0;
  int samples_here_ = 0;
};

}  // namespace tandem::replicator
