// The admin node's handlers of beds.logs events (docs/configuration.md `handler` values). Their
// queues bind to beds.logs rather than beds.events (topology.hpp):
//   logs    stores events in the log store (logs/store.hpp) in batches, acking a batch only after
//           it is stored; a redelivered event is stored once (keyed by event id). An event that
//           cannot be stored (not an event, fails the store template) is parked in the DLQ.
//   syslog  forwards events at or above the broker's `level` to the local syslog socket (events
//           it cannot send are counted and let go: the log store still has them).
//   metrics keeps the latest metric event of every node for the admin node's /metrics.
// One handler per worker (each holds its own store connection); used from that worker's thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "brokers/pool.hpp"
#include "config/config.hpp"
#include "core/namaste.hpp"
#include "logs/logs.hpp"
#include "templates/templates.hpp"

namespace beds::brokers {

class LogStoreHandler : public Handler {
 public:
  // `node_users` ([access] node_users): when not empty, only events these AMQP users published
  // are stored; any other sender's are parked (a client cannot forge an audit record).
  LogStoreHandler(std::shared_ptr<const templates::Snapshot> templates,
                  std::shared_ptr<const CoreFactory> factory, std::string store_template,
                  std::vector<std::string> node_users = {});
  bool Batched() const override { return true; }
  std::vector<Outcome> HandleBatch(const std::vector<amqp::Delivery>& batch) override;
  Outcome Handle(const amqp::Delivery& delivery, int retries) override;
  std::string ParkedReply(const amqp::Delivery&, const std::string&) override { return ""; }

 private:
  std::shared_ptr<const templates::Snapshot> templates_;
  std::string store_template_;
  std::vector<std::string> node_users_;
  std::optional<CoreFactory::Session> session_;
};

class SyslogHandler : public Handler {
 public:
  // `socket_path`: a datagram socket speaking the syslog protocol (/dev/log).
  SyslogHandler(std::string socket_path, std::string min_level);
  ~SyslogHandler() override;
  Outcome Handle(const amqp::Delivery& delivery, int retries) override;
  std::string ParkedReply(const amqp::Delivery&, const std::string&) override { return ""; }

 private:
  // The event to the syslog socket; why not, when the socket cannot be made (ask for a retry).
  std::optional<std::string> Forward(const logs::LogEvent& event);

  std::string socket_path_;
  int min_rank_;
  int fd_ = -1;
  uint64_t unsent_ = 0;  // events the socket refused
  std::chrono::steady_clock::time_point last_warning_{};
};

// The latest metric event of each node, shared by a metrics pool's workers and the node's
// /metrics endpoint. Thread-safe.
class NodeMetricsTable {
 public:
  void Update(const std::string& node, boost::json::object fields);
  std::map<std::string, boost::json::object> Snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, boost::json::object> latest_;  // guarded by mutex_
};

class MetricsHandler : public Handler {
 public:
  explicit MetricsHandler(std::shared_ptr<NodeMetricsTable> table) : table_(std::move(table)) {}
  Outcome Handle(const amqp::Delivery& delivery, int retries) override;
  std::string ParkedReply(const amqp::Delivery&, const std::string&) override { return ""; }

 private:
  std::shared_ptr<NodeMetricsTable> table_;
};

}  // namespace beds::brokers
