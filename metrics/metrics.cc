#include "metrics/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace tandem::metrics {
namespace {

bool ValidName(const std::string& name, bool colons) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  return std::all_of(name.begin(), name.end(), [colons](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           (colons && c == ':');
  });
}

// A bad name would make every scrape of the endpoint fail to parse: caught where the series is registered.
void CheckNames(const std::string& name, const Labels& labels) {
  bool ok = ValidName(name, true);
  for (const auto& [label, value] : labels) ok = ok && ValidName(label, false) && label.rfind("__", 0) != 0 && label != "le";
  if (!ok) {
    fprintf(stderr, "metrics: invalid metric or label name in %s\n", name.c_str());
    abort();
  }
}

// HELP text escapes \ and newline; label values also ".
std::string Escape(const std::string& text, bool quotes) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && quotes) {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

const char* TypeWord(int type) {
  static const char* const kWords[] = {"counter", "gauge", "histogram"};
  return kWords[type];
}

Labels With(const Labels& labels, const char* name, std::string value) {
  Labels out = labels;
  out.emplace_back(name, std::move(value));
  return out;
}

}  // namespace

void Counter::Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double value) {
  const size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();  // le: <=
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) out[i] = running += buckets_[i].load(std::memory_order_relaxed);
  return out;
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char text[32];
  if (value == std::trunc(value) && std::fabs(value) < 9007199254740992.0) {  // an exact integer: all its digits
    snprintf(text, sizeof text, "%.0f", value);
    return text;
  }
  const auto [end, ec] = std::to_chars(text, text + sizeof text, value);  // shortest round trip: 0.005, 12
  return ec == std::errc() ? std::string(text, end) : "NaN";
}

std::string SeriesName(const std::string& name, const Labels& labels) {
  if (labels.empty()) return name;
  std::string out = name + "{";
  for (size_t i = 0; i < labels.size(); ++i) {
    out += (i ? "," : "") + labels[i].first + "=\"" + Escape(labels[i].second, true) + "\"";
  }
  return out + "}";
}

Registry::Family& Registry::FamilyFor(const std::string& name, const std::string& help, Type type,
                                      const Labels& labels) {
  CheckNames(name, labels);
  auto it = std::find_if(families_.begin(), families_.end(), [&](const Family& f) { return f.name == name; });
  if (it == families_.end()) {
    families_.push_back({name, help, type, {}});
    return families_.back();
  }
  if (it->type != type) {
    fprintf(stderr, "metrics: %s registered as two types\n", name.c_str());
    abort();
  }
  return *it;
}

Counter* Registry::AddCounter(const std::string& name, const std::string& help, Labels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& family = FamilyFor(name, help, Type::kCounter, labels);
  Counter* counter = &counters_.emplace_back();
  family.series.push_back({std::move(labels), counter, nullptr, nullptr});
  return counter;
}

Gauge* Registry::AddGauge(const std::string& name, const std::string& help, Labels labels) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& family = FamilyFor(name, help, Type::kGauge, labels);
  Gauge* gauge = &gauges_.emplace_back();
  family.series.push_back({std::move(labels), nullptr, gauge, nullptr});
  return gauge;
}

Histogram* Registry::AddHistogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                                  Labels labels) {
  std::sort(bounds.begin(), bounds.end());
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  std::lock_guard<std::mutex> lock(mu_);
  Family& family = FamilyFor(name, help, Type::kHistogram, labels);
  Histogram* histogram = &histograms_.emplace_back(std::move(bounds));
  family.series.push_back({std::move(labels), nullptr, nullptr, histogram});
  return histogram;
}

void Registry::OnCollect(std::function<void()> collect) {
  std::lock_guard<std::mutex> lock(collect_mu_);
  collect_ = std::move(collect);
}

void Registry::Collect() const {
  std::lock_guard<std::mutex> lock(collect_mu_);
  if (collect_) collect_();
}

std::string Registry::Render() const {
  Collect();
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const Family& f : families_) {
    out += "# HELP " + f.name + " " + Escape(f.help, false) + "\n";
    out += "# TYPE " + f.name + " " + TypeWord(int(f.type)) + "\n";
    for (const Series& s : f.series) {
      if (s.histogram == nullptr) {
        out += SeriesName(f.name, s.labels) + " " + FormatValue(s.counter ? s.counter->value() : s.gauge->value()) + "\n";
        continue;
      }
      const Histogram& h = *s.histogram;
      const std::vector<uint64_t> cumulative = h.CumulativeCounts();
      for (size_t i = 0; i < cumulative.size(); ++i) {
        const std::string le = i < h.bounds().size() ? FormatValue(h.bounds()[i]) : "+Inf";
        out += SeriesName(f.name + "_bucket", With(s.labels, "le", le)) + " " + FormatValue(double(cumulative[i])) + "\n";
      }
      // The count no less than the +Inf bucket, so that a concurrent Observe never shows a bucket above it.
      out += SeriesName(f.name + "_sum", s.labels) + " " + FormatValue(h.sum()) + "\n";
      out += SeriesName(f.name + "_count", s.labels) + " " +
             FormatValue(double(std::max(h.count(), cumulative.back()))) + "\n";
    }
  }
  return out;
}

std::vector<Sample> Registry::Snapshot() const {
  Collect();
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Sample> out;
  for (const Family& f : families_) {
    for (const Series& s : f.series) {
      if (s.histogram != nullptr) {
        out.push_back({f.name + "_sum", s.labels, s.histogram->sum()});
        out.push_back({f.name + "_count", s.labels, double(s.histogram->count())});
      } else {
        out.push_back({f.name, s.labels, s.counter ? s.counter->value() : s.gauge->value()});
      }
    }
  }
  return out;
}

}  // namespace tandem::metrics
