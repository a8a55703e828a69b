#include "metrics/metrics.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <exception>
#include <stdexcept>
#include <type_traits>

namespace beds::metrics {
namespace {

bool IsMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool IsLabelName(std::string_view name) {
  if (name.empty() || name.starts_with("__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Empty when the labels are well-formed, else what is wrong with them.
std::string CheckLabels(const Labels& labels, bool histogram) {
  for (size_t i = 0; i < labels.size(); ++i) {
    const std::string& key = labels[i].first;
    if (!IsLabelName(key)) return "invalid label name '" + key + "'";
    if (histogram && key == "le") return "label 'le' is reserved for histogram buckets";
    for (size_t j = 0; j < i; ++j) {
      if (labels[j].first == key) return "label '" + key + "' given twice";
    }
  }
  return {};
}

Labels SortedByName(Labels labels) {
  std::sort(labels.begin(), labels.end());
  return labels;
}

// Shortest text that reads back as the same double, Go-style ("0.0001", "1e-05", "10").
std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);
  if (ec != std::errc{}) return "NaN";  // cannot happen with 64 bytes
  return std::string(buf, end);
}

void AppendEscaped(std::string& out, std::string_view text, bool quotes) {
  for (const char c : text) {
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
}

void AppendHeader(std::string& out, std::string_view name, std::string_view help,
                  std::string_view type) {
  out += "# HELP ";
  out += name;
  out += ' ';
  AppendEscaped(out, help, /*quotes=*/false);
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

// name{k="v",...,extra_key="extra_value"} value
void AppendLine(std::string& out, std::string_view name, const Labels& labels,
                std::string_view value, std::string_view extra_key = {},
                std::string_view extra_value = {}) {
  out += name;
  if (!labels.empty() || !extra_key.empty()) {
    out += '{';
    bool first = true;
    const auto add = [&](std::string_view key, std::string_view val) {
      if (!first) out += ',';
      first = false;
      out += key;
      out += "=\"";
      AppendEscaped(out, val, /*quotes=*/true);
      out += '"';
    };
    for (const auto& [key, val] : labels) add(key, val);
    if (!extra_key.empty()) add(extra_key, extra_value);
    out += '}';
  }
  out += ' ';
  out += value;
  out += '\n';
}

std::string_view TypeName(bool counter) { return counter ? "counter" : "gauge"; }

// Collector samples grouped by family name.
struct Collected {
  std::string help;
  std::string type;
  std::vector<Registry::Sample> samples;
};

}  // namespace

void Histogram::Observe(double seconds) {
  if (std::isnan(seconds)) return;
  const auto it = std::lower_bound(kBounds.begin(), kBounds.end(), seconds);  // first le >= v
  buckets_[static_cast<size_t>(it - kBounds.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(seconds, std::memory_order_relaxed);
}

uint64_t Histogram::Count() const {
  uint64_t total = 0;
  for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
  return total;
}

std::array<uint64_t, Histogram::kBounds.size() + 1> Histogram::Buckets() const {
  std::array<uint64_t, kBounds.size() + 1> out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

template <typename T>
T& Registry::GetOrCreate(Type type, std::string_view name, std::string_view help,
                         const Labels& labels) {
  if (!IsMetricName(name)) {
    throw std::logic_error("metrics: invalid metric name '" + std::string(name) + "'");
  }
  if (const std::string bad = CheckLabels(labels, type == Type::kHistogram); !bad.empty()) {
    throw std::logic_error("metrics: " + std::string(name) + ": " + bad);
  }
  std::lock_guard lock(mutex_);
  auto it = families_.find(name);
  if (it == families_.end()) {
    it = families_.emplace(std::string(name), Family{type, std::string(help), {}}).first;
  } else if (it->second.type != type) {
    throw std::logic_error("metrics: " + std::string(name) +
                           " is already registered with another type");
  }
  auto [series, inserted] = it->second.series.try_emplace(SortedByName(labels));
  if (inserted) {
    series->second.labels = labels;
    if constexpr (std::is_same_v<T, Counter>) {
      series->second.counter = std::make_unique<Counter>();
    } else if constexpr (std::is_same_v<T, Gauge>) {
      series->second.gauge = std::make_unique<Gauge>();
    } else {
      series->second.histogram = std::make_unique<Histogram>();
    }
  }
  if constexpr (std::is_same_v<T, Counter>) {
    return *series->second.counter;
  } else if constexpr (std::is_same_v<T, Gauge>) {
    return *series->second.gauge;
  } else {
    return *series->second.histogram;
  }
}

Counter& Registry::GetCounter(std::string_view name, std::string_view help, const Labels& labels) {
  return GetOrCreate<Counter>(Type::kCounter, name, help, labels);
}

Gauge& Registry::GetGauge(std::string_view name, std::string_view help, const Labels& labels) {
  return GetOrCreate<Gauge>(Type::kGauge, name, help, labels);
}

Histogram& Registry::GetHistogram(std::string_view name, std::string_view help,
                                  const Labels& labels) {
  return GetOrCreate<Histogram>(Type::kHistogram, name, help, labels);
}

void Registry::AddCollector(Collector c) {
  std::lock_guard lock(mutex_);
  collectors_.push_back(std::move(c));
}

std::string Registry::Render() const {
  // Collectors first, outside mutex_, so that they may register metrics of their own.
  std::map<std::string, Collected, std::less<>> collected;
  {
    std::lock_guard collect_lock(collect_mutex_);
    std::vector<Collector> collectors;
    {
      std::lock_guard lock(mutex_);
      collectors = collectors_;
    }
    for (const Collector& collector : collectors) {
      std::vector<Sample> samples;
      try {
        collector(samples);
      } catch (const std::exception& e) {
        spdlog::warn("metrics: a collector failed, its samples are skipped: {}", e.what());
        continue;
      } catch (...) {
        spdlog::warn("metrics: a collector failed, its samples are skipped");
        continue;
      }
      for (Sample& s : samples) {
        std::string bad;
        if (!IsMetricName(s.name)) {
          bad = "invalid metric name";
        } else if (s.type != "counter" && s.type != "gauge") {
          bad = "type '" + s.type + "' is neither counter nor gauge";
        } else {
          bad = CheckLabels(s.labels, /*histogram=*/false);
        }
        if (bad.empty()) {
          auto [it, inserted] = collected.try_emplace(s.name, Collected{s.help, s.type, {}});
          if (it->second.type != s.type) bad = "type differs from earlier samples";
          if (bad.empty()) it->second.samples.push_back(std::move(s));
        }
        if (!bad.empty()) spdlog::warn("metrics: sample '{}' dropped: {}", s.name, bad);
      }
    }
  }

  std::lock_guard lock(mutex_);
  std::string out;
  auto next_collected = collected.begin();
  const auto render_collected = [&](const Collected& c, std::string_view name, bool header) {
    if (header) AppendHeader(out, name, c.help, c.type);
    for (const Sample& s : c.samples) AppendLine(out, name, s.labels, FormatDouble(s.value));
  };
  for (const auto& [name, family] : families_) {
    // Collector-only families that sort before this one.
    for (; next_collected != collected.end() && next_collected->first < name; ++next_collected) {
      render_collected(next_collected->second, next_collected->first, true);
    }
    const Collected* extra = nullptr;
    if (next_collected != collected.end() && next_collected->first == name) {
      extra = &next_collected->second;
      ++next_collected;
    }

    switch (family.type) {
      case Type::kCounter:
      case Type::kGauge: {
        const bool counter = family.type == Type::kCounter;
        AppendHeader(out, name, family.help, TypeName(counter));
        for (const auto& [key, series] : family.series) {
          const std::string value = counter ? std::to_string(series.counter->Value())
                                            : std::to_string(series.gauge->Value());
          AppendLine(out, name, series.labels, value);
        }
        if (extra != nullptr) {
          if (extra->type == TypeName(counter)) {
            render_collected(*extra, name, false);
          } else {
            spdlog::warn("metrics: samples '{}' dropped: {} is registered as a {}", name, name,
                         TypeName(counter));
          }
        }
        break;
      }
      case Type::kHistogram: {
        AppendHeader(out, name, family.help, "histogram");
        const std::string bucket_name = name + "_bucket";
        for (const auto& [key, series] : family.series) {
          const auto buckets = series.histogram->Buckets();
          uint64_t cumulative = 0;
          for (size_t i = 0; i < buckets.size(); ++i) {
            cumulative += buckets[i];
            const std::string le =
                i < Histogram::kBounds.size() ? FormatDouble(Histogram::kBounds[i]) : "+Inf";
            AppendLine(out, bucket_name, series.labels, std::to_string(cumulative), "le", le);
          }
          AppendLine(out, name + "_sum", series.labels, FormatDouble(series.histogram->Sum()));
          AppendLine(out, name + "_count", series.labels, std::to_string(cumulative));
        }
        if (extra != nullptr) {
          spdlog::warn("metrics: samples '{}' dropped: {} is registered as a histogram", name,
                       name);
        }
        break;
      }
    }
  }
  for (; next_collected != collected.end(); ++next_collected) {
    render_collected(next_collected->second, next_collected->first, true);
  }
  return out;
}

}  // namespace beds::metrics
