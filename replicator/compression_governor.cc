#include "replicator/compression_governor.h"

#include <algorithm>
#include <iterator>

namespace tandem::replicator {
namespace {

constexpr int kLz4Accelerations[] = {1, 4, 16, 64, 256, 512};
// Weight of a new sample in a rung's moving averages.
constexpr double kAverageWeight = 0.25;

}  // namespace

CompressionGovernor::CompressionGovernor(const PageCodecOptions& configured, bool adaptive)
    : adaptive_(adaptive), current_(configured) {
  if (!adaptive_) return;
  PageCodecOptions zstd = configured;
  zstd.compression = Compression::kZstd;
  ladder_.push_back({zstd});
  for (int acceleration : kLz4Accelerations) {
    PageCodecOptions lz4 = configured;
    lz4.compression = Compression::kLz4;
    lz4.lz4_acceleration = acceleration;
    ladder_.push_back({lz4});
  }
  at_ = 1;  // LZ4 at its default acceleration: the fixed `lz4` setting, until measurements say otherwise
  current_ = ladder_[at_].options;
}

std::string CompressionGovernor::Describe(const PageCodecOptions& options) {
  switch (options.compression) {
    case Compression::kNone: return "none";
    case Compression::kLz4: return "lz4 acceleration " + std::to_string(options.lz4_acceleration);
    case Compression::kZstd: return "zstd level " + std::to_string(options.zstd_level);
  }
  return "unknown";
}

bool CompressionGovernor::Known(const Rung& rung) const {
  return rung.measured_at != 0 && samples_ - rung.measured_at <= kStaleSamples;
}

double CompressionGovernor::LinkRate() const {
  // The median of the measured rates: one sample can be far off (a burst into the peer's receive buffer).
  uint64_t rates[kLinkRateWindow];
  const auto end =
      std::copy_if(std::begin(link_rates_), std::end(link_rates_), rates, [](uint64_t r) { return r > 0; });
  const size_t n = size_t(end - rates);
  if (n == 0) return 0;
  std::nth_element(rates, rates + n / 2, end);
  return double(rates[n / 2]);
}

double CompressionGovernor::LinkCost(const Rung& rung) const {
  const double rate = LinkRate();
  return std::max(rung.send_ns_per_byte, rate > 0 ? rung.wire_per_byte * 1e9 / rate : 0);
}

double CompressionGovernor::Cost(const Rung& rung) const { return std::max(rung.encode_ns_per_byte, LinkCost(rung)); }

bool CompressionGovernor::Observe(const ShipSample& sample) {
  if (!adaptive_ || sample.raw_bytes < kMinSampleBytes) return false;
  link_rates_[samples_++ % kLinkRateWindow] = sample.link_bytes_per_s;
  Rung& here = ladder_[at_];
  const double bytes = double(sample.raw_bytes);
  const double weight = Known(here) ? kAverageWeight : 1.0;
  here.encode_ns_per_byte += weight * (double(sample.encode_ns) / bytes - here.encode_ns_per_byte);
  here.send_ns_per_byte += weight * (double(sample.send_ns) / bytes - here.send_ns_per_byte);
  here.wire_per_byte += weight * (double(sample.wire_bytes) / bytes - here.wire_per_byte);
  here.measured_at = samples_;
  if (++samples_here_ < kSettleSamples) return false;

  const double link_side = LinkCost(here);
  size_t next = at_;
  if (here.encode_ns_per_byte > kMargin * link_side && at_ + 1 < ladder_.size()) {
    next = at_ + 1;  // the encoder is the bottleneck: lighter
  } else if (link_side > kMargin * here.encode_ns_per_byte && at_ > 0) {
    next = at_ - 1;  // the link is: heavier
  }
  if (next == at_ || (Known(ladder_[next]) && Cost(ladder_[next]) >= Cost(here))) return false;
  at_ = next;
  current_ = ladder_[at_].options;
  samples_here_ = 0;
  return true;
}

}  // namespace tandem::replicator
