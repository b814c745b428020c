// Counters, gauges and histograms with label sets, rendered as Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/). The roles update series on their hot paths:
// every update is a relaxed atomic operation on a series registered up front (no allocation, no lock); the
// text is built only when somebody scrapes (Render) or a status file is written (Snapshot).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace tandem::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// A value that only goes up. Set() is for a total counted elsewhere (a shipper's bytes sent): it must not fall.
class Counter {
 public:
  void Add(double delta = 1);
  void Set(double total) { value_.store(total, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted per bucket (upper bounds; +Inf is implicit), their sum and count. A scrape that races an
// Observe may see it in the buckets but not yet in the sum; the rendered _count is never below the +Inf bucket.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);
  const std::vector<double>& bounds() const { return bounds_; }
  // Cumulative counts per bound, then +Inf (= count()).
  std::vector<uint64_t> CumulativeCounts() const;
  uint64_t count() const { return count_.load(std::memory_order_relaxed); }
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // per bound, not cumulative; the last one is +Inf
  std::atomic<uint64_t> count_{0};
  std::atomic<double> sum_{0};
};

// One sample as the exposition shows it: the series name (with _bucket/_sum/_count for histograms), its labels
// and value.
struct Sample {
  std::string name;
  Labels labels;
  double value = 0;
};

class Registry {
 public:
  // Series of one family share its name, help and type; families keep the order of their first series.
  // Names are [a-zA-Z_:][a-zA-Z0-9_:]*, label names [a-zA-Z_][a-zA-Z0-9_]* (checked: a bad one aborts, it is a
  // programming error). The returned series live as long as the registry. Registering is not for hot paths.
  Counter* AddCounter(const std::string& name, const std::string& help, Labels labels = {});
  Gauge* AddGauge(const std::string& name, const std::string& help, Labels labels = {});
  Histogram* AddHistogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                          Labels labels = {});

  // Called at the start of every Render and Snapshot (one at a time), to read figures kept elsewhere into the
  // series: a scrape sees them as of now, and the owner's hot path does nothing for it. Replacing or clearing
  // it (nullptr) waits for a call in progress, so the owner clears it before what it reads goes away.
  void OnCollect(std::function<void()> collect);

  // Text exposition format 0.0.4 (Content-Type: text/plain; version=0.0.4).
  std::string Render() const;
  // Every sample, histograms as their _sum and _count only (the buckets are for the scraper).
  std::vector<Sample> Snapshot() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    Labels labels;
    Counter* counter = nullptr;
    Gauge* gauge = nullptr;
    Histogram* histogram = nullptr;
  };
  struct Family {
    std::string name, help;
    Type type;
    std::vector<Series> series;
  };
  Family& FamilyFor(const std::string& name, const std::string& help, Type type, const Labels& labels);

  void Collect() const;

  mutable std::mutex collect_mu_;
  std::function<void()> collect_;  // guarded by collect_mu_
  mutable std::mutex mu_;  // the families' lists (not the values)
  std::vector<Family> families_;
  std::deque<Counter> counters_;
  std::deque<Gauge> gauges_;
  std::deque<Histogram> histograms_;
};

// The series name with its labels as the exposition writes it: name{a="x",b="y"} (values escaped).
std::string SeriesName(const std::string& name, const Labels& labels);
// A value as the exposition writes it: exact integers in all their digits, others in the shortest form that
// reads back the same, +Inf, -Inf, NaN.
std::string FormatValue(double value);

}  // namespace tandem::metrics
