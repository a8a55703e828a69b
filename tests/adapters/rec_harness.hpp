// Drives a REC engine the way a worker does (decode → FindOp → RunOp on the adapter), without
// AMQP: shared by the contract suite and by beds-rec-probe, the process the MongoDB wire tests
// (python3-mockupdb) talk to.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "adapters/sqlite/sqlite.hpp"
#include "config/config.hpp"
#include "core/namaste.hpp"
#include "templates/templates.hpp"

namespace beds::testing {

class RecHarness {
 public:
  // Loads every template of `templates_dir` whose database is settings.name. A SQLite harness
  // opens its own store unless given one to share (several workers' cores on one store).
  RecHarness(config::DatabaseSettings settings, const std::string& templates_dir,
             std::shared_ptr<adapters::sqlite::Store> shared = nullptr);

  // Prepare (ensure) each template: name → "" on success, else the error message.
  std::map<std::string, std::string> PrepareAll();

  // One request envelope (JSON text) → the reply body a client would get.
  std::string Handle(const std::string& body);
  // The same, as a result.
  Result<OpResult> Run(const std::string& body);

  const templates::Snapshot& snapshot() const { return snapshot_; }
  std::string load_error;  // non-empty when the templates did not load

 private:
  config::DatabaseSettings settings_;
  templates::Snapshot snapshot_;
  std::unique_ptr<NamasteCore> core_;
};

}  // namespace beds::testing
