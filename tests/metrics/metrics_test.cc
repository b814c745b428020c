#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

namespace tandem::metrics {
namespace {

bool Has(const std::string& text, const std::string& line) { return text.find(line + "\n") != std::string::npos; }

TEST(MetricsRenderTest, FamiliesHaveHelpAndTypeOnceAndSeriesWithTheirLabels) {
  Registry r;
  r.AddGauge("tandem_role", "the role", {{"role", "primary"}})->Set(1);
  r.AddGauge("tandem_role", "the role", {{"role", "standby"}})->Set(0);
  r.AddCounter("tandem_epochs_total", "epochs")->Add(3);
  const std::string text = r.Render();
  EXPECT_EQ(text,
            "# HELP tandem_role the role\n"
            "# TYPE tandem_role gauge\n"
            "tandem_role{role=\"primary\"} 1\n"
            "tandem_role{role=\"standby\"} 0\n"
            "# HELP tandem_epochs_total epochs\n"
            "# TYPE tandem_epochs_total counter\n"
            "tandem_epochs_total 3\n");
}

TEST(MetricsRenderTest, ValuesAreShortestRoundTripAndSpecialsAreSpelledAsPrometheusReadsThem) {
  EXPECT_EQ(FormatValue(0.005), "0.005");
  EXPECT_EQ(FormatValue(12), "12");
  EXPECT_EQ(FormatValue(1.5e12), "1500000000000");
  EXPECT_EQ(FormatValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatValue(NAN), "NaN");
}

TEST(MetricsRenderTest, LabelValuesEscapeBackslashQuoteAndNewlineAndHelpEscapesBackslashAndNewline) {
  Registry r;
  r.AddGauge("g", "line one\nback\\slash \"quoted\"", {{"path", "a\\b\"c\nd"}})->Set(2);
  const std::string text = r.Render();
  EXPECT_TRUE(Has(text, "# HELP g line one\\nback\\\\slash \"quoted\"")) << text;
  EXPECT_TRUE(Has(text, "g{path=\"a\\\\b\\\"c\\nd\"} 2")) << text;
}

TEST(MetricsRenderTest, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  Registry r;
  Histogram* h = r.AddHistogram("pause_seconds", "pauses", {0.01, 0.001, 0.1}, {{"vm", "a"}});  // sorted on add
  for (double v : {0.0005, 0.001, 0.002, 0.05, 0.05, 3.0}) h->Observe(v);
  const std::string text = r.Render();
  EXPECT_TRUE(Has(text, "# TYPE pause_seconds histogram")) << text;
  EXPECT_TRUE(Has(text, "pause_seconds_bucket{vm=\"a\",le=\"0.001\"} 2")) << text << " (le is inclusive)";
  EXPECT_TRUE(Has(text, "pause_seconds_bucket{vm=\"a\",le=\"0.01\"} 3")) << text;
  EXPECT_TRUE(Has(text, "pause_seconds_bucket{vm=\"a\",le=\"0.1\"} 5")) << text;
  EXPECT_TRUE(Has(text, "pause_seconds_bucket{vm=\"a\",le=\"+Inf\"} 6")) << text;
  EXPECT_TRUE(Has(text, "pause_seconds_count{vm=\"a\"} 6")) << text;
  EXPECT_NEAR(h->sum(), 3.1035, 1e-9);
  EXPECT_NE(text.find("pause_seconds_sum{vm=\"a\"} 3.10"), std::string::npos) << text;
}

TEST(MetricsRenderTest, SnapshotListsEverySeriesAndHistogramsAsSumAndCount) {
  Registry r;
  r.AddGauge("g", "g", {{"k", "v"}})->Set(4);
  r.AddHistogram("h", "h", {1})->Observe(0.5);
  const std::vector<Sample> samples = r.Snapshot();
  ASSERT_EQ(samples.size(), 3u);
  EXPECT_EQ(SeriesName(samples[0].name, samples[0].labels), "g{k=\"v\"}");
  EXPECT_EQ(samples[0].value, 4);
  EXPECT_EQ(samples[1].name, "h_sum");
  EXPECT_EQ(samples[2].name, "h_count");
  EXPECT_EQ(samples[2].value, 1);
}

TEST(MetricsRenderTest, CollectHookRunsBeforeEveryRenderAndCanBeCleared) {
  Registry r;
  Gauge* g = r.AddGauge("g", "g");
  int calls = 0;
  r.OnCollect([&] { g->Set(++calls); });
  EXPECT_TRUE(Has(r.Render(), "g 1"));
  EXPECT_TRUE(Has(r.Render(), "g 2"));
  r.OnCollect(nullptr);
  EXPECT_TRUE(Has(r.Render(), "g 2"));
  EXPECT_EQ(calls, 2);
}

TEST(MetricsRenderTest, ConcurrentUpdatesAreAllCounted) {
  Registry r;
  Counter* c = r.AddCounter("c_total", "c");
  Histogram* h = r.AddHistogram("h", "h", {0.5});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) c->Add(), h->Observe(i % 2);
    });
  }
  for (int i = 0; i < 50; ++i) r.Render();  // scrapes while they count
  for (auto& t : threads) t.join();
  EXPECT_EQ(c->value(), 40000);
  EXPECT_EQ(h->count(), 40000u);
  EXPECT_EQ(h->CumulativeCounts(), (std::vector<uint64_t>{20000, 40000}));
}

TEST(MetricsRenderTest, InvalidNamesAreAProgrammingErrorCaughtAtRegistration) {
  Registry r;
  EXPECT_DEATH(r.AddGauge("1bad", "x"), "invalid metric");
  EXPECT_DEATH(r.AddGauge("ok", "x", {{"le", "1"}}), "invalid metric");
  EXPECT_DEATH(r.AddGauge("ok", "x", {{"bad-label", "1"}}), "invalid metric");
}

}  // namespace
}  // namespace tandem::metrics
