#include "replicator/compression_governor.h"

#include <gtest/gtest.h>

#include "replicator/link_meter.h"

#include <string>
#include <vector>

namespace tandem::replicator {
namespace {

constexpr uint64_t kEpochBytes = 4 << 20;  // 1024 pages

PageCodecOptions Lz4() { return {}; }

// A workload whose encode cost and wire ratio per rung follow the shape measured on the real page sets
// (bench/codec_bench, all sets; zstd first, then LZ4 acceleration 1 ... 512), on a link of `link` bytes/s
// that the sender waits on once the epoch's bytes exceed what the socket buffer absorbs.
struct Workload {
  uint64_t link = 0;  // bytes/s; 0: takes everything at once (a local socket to an idle standby)
  bool report_rate = true;  // the shipper saw the send queue stay full and measured the link

  struct Figures {
    double encode_ns_per_byte, wire_ratio;
  };
  static Figures Of(const PageCodecOptions& o) {
    if (o.compression == Compression::kZstd) return {1.60, 0.13};
    switch (o.lz4_acceleration) {
      case 1: return {0.76, 0.152};
      case 4: return {0.72, 0.156};
      case 16: return {0.65, 0.168};
      case 64: return {0.56, 0.197};
      case 256: return {0.47, 0.248};
      default: return {0.44, 0.278};
    }
  }
  ShipSample Ship(const PageCodecOptions& o) const {
    ShipSample s;
    s.raw_bytes = kEpochBytes;
    s.wire_bytes = uint64_t(double(kEpochBytes) * Of(o).wire_ratio);
    s.encode_ns = uint64_t(double(kEpochBytes) * Of(o).encode_ns_per_byte);
    // Sends overlap encoding; the sender waits for what the link has not taken by the time encoding is done.
    const double transmit_ns = link == 0 ? 0 : double(s.wire_bytes) * 1e9 / double(link);
    s.send_ns = transmit_ns > double(s.encode_ns) ? uint64_t(transmit_ns - double(s.encode_ns)) : 1000;
    s.link_bytes_per_s = report_rate ? link : 0;
    return s;
  }
};

// Runs `epochs` epochs; returns the settings in use after each.
std::vector<std::string> ShipEpochs(CompressionGovernor& g, const Workload& w, int epochs) {
  std::vector<std::string> used;
  for (int i = 0; i < epochs; ++i) {
    g.Observe(w.Ship(g.current()));
    used.push_back(CompressionGovernor::Describe(g.current()));
  }
  return used;
}

int Changes(const std::vector<std::string>& used, size_t from) {
  int n = 0;
  for (size_t i = from + 1; i < used.size(); ++i) n += used[i] != used[i - 1];
  return n;
}

TEST(CompressionGovernorTest, FixedSettingNeverChanges) {
  PageCodecOptions zstd = Lz4();
  zstd.compression = Compression::kZstd;
  zstd.zstd_level = 3;
  CompressionGovernor g(zstd, /*adaptive=*/false);
  Workload local;  // an unlimited link would pull an adaptive governor to the lightest LZ4
  for (const std::string& used : ShipEpochs(g, local, 50)) EXPECT_EQ(used, "zstd level 3");
}

TEST(CompressionGovernorTest, StartsAtLz4DefaultAcceleration) {
  CompressionGovernor g(Lz4(), true);
  EXPECT_EQ(CompressionGovernor::Describe(g.current()), "lz4 acceleration 1");
}

TEST(CompressionGovernorTest, UnlimitedLinkWalksToTheLightestLz4AndStays) {
  CompressionGovernor g(Lz4(), true);
  Workload local;  // the link takes everything at once: no rate measured, sends never wait
  const auto used = ShipEpochs(g, local, 60);
  EXPECT_EQ(used.back(), "lz4 acceleration 512");
  EXPECT_EQ(Changes(used, 40), 0);
}

TEST(CompressionGovernorTest, SlowLinkWalksToZstd) {
  CompressionGovernor g(Lz4(), true);
  Workload slow{50'000'000};  // 50 MB/s: the wire, not the encoder, limits
  const auto used = ShipEpochs(g, slow, 40);
  EXPECT_EQ(used.back(), "zstd level 1");
  EXPECT_EQ(Changes(used, 20), 0);
}

TEST(CompressionGovernorTest, BlockedSendsMoveHeavierEvenWithoutARateEstimate) {
  CompressionGovernor g(Lz4(), true);
  Workload slow{50'000'000, /*report_rate=*/false};  // no rate measured: only the time in sends shows it
  EXPECT_EQ(ShipEpochs(g, slow, 40).back(), "zstd level 1");
}

TEST(CompressionGovernorTest, BalancedLinkSettlesWhereEncoderAndLinkMeet) {
  // 450 MB/s: LZ4 acceleration 16 costs max(0.65, 0.168 / 0.45 = 0.37) ns/B, acceleration 64
  // max(0.56, 0.44), acceleration 256 max(0.47, 0.55): the best is 64 or 256.
  CompressionGovernor g(Lz4(), true);
  Workload link{450'000'000};
  const auto used = ShipEpochs(g, link, 400);
  EXPECT_TRUE(used.back() == "lz4 acceleration 64" || used.back() == "lz4 acceleration 256") << used.back();
  // Once settled it only re-probes a neighbour when that neighbour's figures go stale.
  EXPECT_LE(Changes(used, 100), 2 * int(300 / CompressionGovernor::kStaleSamples + 1));
}

TEST(CompressionGovernorTest, FollowsTheLinkWhenItSlowsDown) {
  CompressionGovernor g(Lz4(), true);
  Workload link{10'000'000'000};
  EXPECT_EQ(ShipEpochs(g, link, 60).back(), "lz4 acceleration 512");
  link.link = 50'000'000;
  EXPECT_EQ(ShipEpochs(g, link, 60).back(), "zstd level 1");
}

TEST(CompressionGovernorTest, SmallEpochsDoNotSteer) {
  CompressionGovernor g(Lz4(), true);
  ShipSample tiny = Workload{}.Ship(g.current());
  tiny.raw_bytes = CompressionGovernor::kMinSampleBytes - 4096;
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(g.Observe(tiny));
  EXPECT_EQ(CompressionGovernor::Describe(g.current()), "lz4 acceleration 1");
}

// The link rate the governor is given (LinkMeter): what the send queue drained while the link stayed busy...
TEST(LinkMeterTest, BusyLinkRateIsWhatTheSendQueueDrainedBetweenEpochs) {
  LinkMeter meter;
  constexpr int64_t kStart = 1'000'000'000;
  const ShipSample first = meter.EpochWritten(4 << 20, 1 << 20, 0, 0, 0, 1 << 20, kStart);
  EXPECT_EQ(first.link_bytes_per_s, 0u) << "nothing to compare with yet";
  // One more MiB written; a second later 1 MiB is still queued: the link moved 1 MiB in that second.
  const ShipSample busy = meter.EpochWritten(4 << 20, 1 << 20, 500'000'000, 800'000'000, 512 << 10, 1 << 20,
                                             kStart + 1'000'000'000);
  EXPECT_EQ(busy.link_bytes_per_s, uint64_t(1) << 20);
  EXPECT_EQ(busy.encode_ns, 300'000'000u);
  EXPECT_EQ(busy.send_ns, 500'000'000u);
}

// ...or, for a link that idles between epochs, how long the unsent tail of the last epoch took to leave.
TEST(LinkMeterTest, IdleLinkIsTimedWhileItDrainsTheLastEpoch) {
  LinkMeter meter;
  constexpr int64_t kStart = 1'000'000'000;
  meter.EpochWritten(4 << 20, 1 << 20, 0, 0, 0, 128 << 10, kStart);
  ASSERT_TRUE(meter.draining());
  meter.PollDrain(64 << 10, kStart + 2'000'000);
  EXPECT_TRUE(meter.draining());
  meter.PollDrain(0, kStart + 10'000'000);
  EXPECT_FALSE(meter.draining());
  const ShipSample next = meter.EpochWritten(4 << 20, 1 << 20, 0, 0, 0, 0, kStart + 50'000'000);
  EXPECT_EQ(next.link_bytes_per_s, (uint64_t(128) << 10) * 100);  // 128 KiB in 10 ms
  EXPECT_FALSE(meter.draining()) << "nothing left unsent";
}

TEST(LinkMeterTest, DrainsTooShortToTimeOrTooSmallToWatchGiveNoRate) {
  LinkMeter meter;
  constexpr int64_t kStart = 1'000'000'000;
  meter.EpochWritten(4 << 20, 1 << 20, 0, 0, 0, 128 << 10, kStart);
  meter.PollDrain(0, kStart + LinkMeter::kMinDrainNs - 1);
  EXPECT_EQ(meter.EpochWritten(4 << 20, 1 << 20, 0, 0, 0, LinkMeter::kMinUnsentToTime - 1, kStart + 50'000'000)
                .link_bytes_per_s,
            0u);
  EXPECT_FALSE(meter.draining());
}

}  // namespace
}  // namespace tandem::replicator
