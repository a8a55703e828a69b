// Prometheus metrics: counters, gauges and latency histograms kept in a Registry, rendered as the
// text exposition format 0.0.4 by Render() (served by metrics/http_server.hpp). Parts register
// their metrics once and keep the returned references; Inc/Set/Add/Observe are lock-free atomics
// safe from any thread, while Get*/AddCollector/Render take the registry's mutex.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace beds::metrics {

// Label name/value pairs, rendered in the order given.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count (its family name should end in _total).
class Counter {
 public:
  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down (queue depth, connections open).
class Gauge {
 public:
  void Set(int64_t v) { value_.store(v, std::memory_order_relaxed); }
  void Add(int64_t d) { value_.fetch_add(d, std::memory_order_relaxed); }
  int64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<int64_t> value_{0};
};

// Request latency in seconds over the fixed buckets kBounds (+Inf implied). Observe() is one
// atomic increment of the bucket plus a CAS-loop add of the sum (std::atomic<double>::fetch_add);
// NaN is ignored. A scrape racing Observe() may see the sum of one more or one fewer sample than
// the count, never a count that disagrees with the +Inf bucket.
class Histogram {
 public:
  static constexpr std::array<double, 16> kBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                     0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                                     1,      2.5,     5,      10};

  void Observe(double seconds);
  uint64_t Count() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  friend class Registry;
  // Per-bucket (not cumulative) counts; the last one is +Inf.
  std::array<uint64_t, kBounds.size() + 1> Buckets() const;

  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<double> sum_{0.0};
};

class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Get-or-create; the returned reference stays valid for the Registry's lifetime. Same name and
  // labels (in any order) -> same object. A name is one metric family: its type and help are fixed
  // by the first call. Programming errors throw std::logic_error: another type for a known name,
  // a name that is not [a-zA-Z_:][a-zA-Z0-9_:]*, a label name that is not [a-zA-Z_][a-zA-Z0-9_]*
  // or starts with "__", a label repeated, or "le" on a histogram.
  Counter& GetCounter(std::string_view name, std::string_view help, const Labels& labels = {});
  Gauge& GetGauge(std::string_view name, std::string_view help, const Labels& labels = {});
  Histogram& GetHistogram(std::string_view name, std::string_view help, const Labels& labels = {});

  // A value known only at scrape time (pool statistics). type is "counter" or "gauge".
  struct Sample {
    std::string name;
    std::string help;
    std::string type;
    Labels labels;
    double value = 0;
  };
  // Called on every Render() to append samples. Collectors run one at a time (never two Renders'
  // collectors at once), outside the registry's mutex, so they may call Get*; they must not call
  // Render. Samples join the family of their name: a new family takes help and type from its first
  // sample; a sample whose type differs from its family's, or with a malformed name, label or type,
  // is dropped with a warning. A collector that throws contributes nothing to that scrape.
  using Collector = std::function<void(std::vector<Sample>&)>;
  void AddCollector(Collector c);

  // Prometheus text format 0.0.4: one # HELP and # TYPE per family, families sorted by name,
  // series within a family sorted by label values (collector samples after, in their order),
  // histograms as cumulative _bucket{le=...} through le="+Inf", then _sum and _count.
  std::string Render() const;

 private:
  enum class Type { kCounter, kGauge, kHistogram };
  struct Series {
    Labels labels;  // as given by the first call
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  struct Family {
    Type type;
    std::string help;
    std::map<Labels, Series> series;  // keyed by the labels sorted by name
  };

  template <typename T>
  T& GetOrCreate(Type type, std::string_view name, std::string_view help, const Labels& labels);

  // Serializes collector runs; always taken before mutex_, never while holding it.
  mutable std::mutex collect_mutex_;

  // Guarded by mutex_:
  mutable std::mutex mutex_;
  std::map<std::string, Family, std::less<>> families_;
  std::vector<Collector> collectors_;
};

}  // namespace beds::metrics
