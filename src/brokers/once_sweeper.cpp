#include "brokers/once_sweeper.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <map>

#include "core/clock.hpp"

namespace beds::brokers {

OnceSweeper::OnceSweeper(config::IdempotencySettings settings,
                         std::shared_ptr<const templates::Snapshot> templates,
                         std::shared_ptr<const CoreFactory> factory,
                         std::shared_ptr<metrics::Registry> metrics)
    : settings_(settings),
      templates_(std::move(templates)),
      session_(std::move(factory)),
      metrics_(std::move(metrics)) {
  if (settings_.enabled && settings_.sweep_every_s > 0) {
    thread_ = std::jthread([this](std::stop_token stop) { Loop(stop); });
  }
}

OnceSweeper::~OnceSweeper() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
}

int64_t OnceSweeper::SweepAll() {
  // One template per database stands for it: the records are per database, not per template.
  std::map<std::string, const Template*> databases;
  for (const auto& [name, t] : templates_->by_name) {
    if (!templates_->unavailable.contains(name) && t.HasWrites()) databases.emplace(t.database, &t);
  }
  int64_t total = 0;
  for (const auto& [database, t] : databases) {
    NamasteCore* core = session_.For(*t);
    if (!core) continue;
    const auto started = std::chrono::steady_clock::now();
    int64_t swept = 0;
    bool failed = false;
    // Batches until one comes back short, at most a hundred: a huge backlog is worked off over
    // several sweeps rather than in one long burst of deletes.
    for (int i = 0; i < 100; ++i) {
      auto n = core->SweepOnce(settings_.sweep_batch);
      if (!n) {
        spdlog::warn("exactly-once sweep of database {}: {}", database, n.error().message);
        failed = true;
        break;
      }
      swept += *n;
      if (*n < settings_.sweep_batch) break;
    }
    total += swept;
    if (!metrics_) continue;
    const metrics::Labels labels{{"database", database}};
    metrics_
        ->GetCounter("beds_exactly_once_swept_total",
                     "Expired exactly-once records deleted, by database", labels)
        .Inc(static_cast<uint64_t>(swept));
    metrics_
        ->GetHistogram("beds_exactly_once_sweep_seconds",
                       "How long one sweep of a database's expired exactly-once records took",
                       labels)
        .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    if (failed) {
      metrics_
          ->GetCounter("beds_exactly_once_sweep_errors_total",
                       "Sweeps of exactly-once records that failed, by database", labels)
          .Inc();
    }
  }
  return total;
}

void OnceSweeper::Loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    SleepUnlessStopped(stop, std::chrono::seconds(settings_.sweep_every_s));
    if (stop.stop_requested()) break;
    SweepAll();
  }
}

}  // namespace beds::brokers
