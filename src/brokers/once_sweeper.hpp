// Deletes expired exactly-once records ([idempotency] ttl_s) from every database this node writes
// to: every sweep_every_s, in batches of sweep_batch until a batch comes back short, on a thread
// and database connections of its own so requests never wait for it. Several nodes sweeping one
// database is harmless: each batch deletes what is still there.
#pragma once

#include <memory>
#include <stop_token>
#include <thread>

#include "config/config.hpp"
#include "core/namaste.hpp"
#include "metrics/metrics.hpp"
#include "templates/templates.hpp"

namespace beds::brokers {

class OnceSweeper {
 public:
  // Sweeps each database that a bound template with write ops uses. `metrics` may be null.
  OnceSweeper(config::IdempotencySettings settings,
              std::shared_ptr<const templates::Snapshot> templates,
              std::shared_ptr<const CoreFactory> factory,
              std::shared_ptr<metrics::Registry> metrics);
  ~OnceSweeper();  // stops and joins

  // One sweep of every database now (the thread calls it; tests too). Returns records deleted.
  int64_t SweepAll();

 private:
  void Loop(std::stop_token stop);

  config::IdempotencySettings settings_;
  std::shared_ptr<const templates::Snapshot> templates_;
  CoreFactory::Session session_;
  std::shared_ptr<metrics::Registry> metrics_;
  std::jthread thread_;  // last: starts after the members above are ready
};

}  // namespace beds::brokers
