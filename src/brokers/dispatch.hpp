// The `dispatch` handler: decodes the envelope, applies the request's lineage and deadline, finds
// the template (the built-in `sys`, or one from the templates snapshot), validates the request
// against it, and runs the op through the NamasteCore adapter of the template's database.
// One DispatchHandler per worker: it owns that worker's adapter session (its database
// connections), so it is used from one thread only.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "brokers/pool.hpp"
#include "config/config.hpp"
#include "core/namaste.hpp"
#include "metrics/metrics.hpp"
#include "protocol/envelope.hpp"
#include "templates/templates.hpp"

namespace beds::brokers {

// What sys/ping reports about the node; `pools` is called on each ping.
struct NodeInfo {
  std::string node;
  std::string env;
  std::string version;
  std::chrono::steady_clock::time_point started;
  bool fault_injection = false;
  int64_t max_body_bytes = 1 << 20;
  int64_t max_reply_bytes = 16 << 20;
  std::function<std::vector<PoolStats>()> pools;
  std::shared_ptr<const templates::Snapshot> templates;  // null: system templates only
  std::string log_store =
      "Logs";  // the REC template lineage/fetch reads ([logging] store_template)
  std::shared_ptr<metrics::Registry> metrics;  // null: no request metrics
  config::IdempotencySettings idempotency;     // exactly-once writes
};

// The body of sys/ping's `data` (also the answer to admin.ping).
boost::json::object PingData(const NodeInfo& info);

// The body of sys/describe's `data`.
boost::json::object DescribeData(const NodeInfo& info);

// The op (or named call) a request names, or UNKNOWN_OP / VALIDATION.
Result<const OpSpec*> FindOp(const Template& t, const protocol::Request& request);

// Who a write is, for exactly-once (docs/protocol.md "Exactly once"): its idempotency key scoped
// by template and sender, or its message id (with the request's digest, so a message id reused
// for another request is another write).
struct OnceScope {
  std::string identity;  // by key: OnceIdentityOfKey; else the message id
  bool by_key = false;
  int64_t ttl_s = 86400;
  bool maybe_seen = false;  // redelivered or retried: WriteOnce::maybe_seen
};

// Validates a request against its template and op, then runs it on `core`. Fetch by id with no
// result is NOT_FOUND. A write with `once` is applied exactly once. Used by the dispatcher and by
// tests that drive an adapter directly.
Result<OpResult> RunOp(const Template& t, const OpSpec& spec, const protocol::Request& request,
                       NamasteCore& core, const OnceScope* once = nullptr);

class DispatchHandler : public Handler {
 public:
  // `factory` null: no data templates can run (each answers UNAVAILABLE).
  explicit DispatchHandler(std::shared_ptr<const NodeInfo> info,
                           std::shared_ptr<const CoreFactory> factory = nullptr);
  Outcome Handle(const amqp::Delivery& delivery, int retries) override;
  std::string ParkedReply(const amqp::Delivery& delivery, const std::string& reason) override;

 private:
  // A data template's op: validate, then run it on this worker's adapter.
  Result<OpResult> RunTemplate(const Template& t, const protocol::Request& request,
                               const OnceScope* once);
  // The exactly-once metrics of one write.
  void CountOnce(const Result<OpResult>& result);
  // lineage/fetch: the event's tree from the log store.
  Result<boost::json::object> LineageTree(const protocol::Request& request);
  // What happened, for the lineage tree and the metrics: the request event, and an audit record
  // for a write that was applied.
  void Record(const protocol::Request& request, const amqp::Delivery& delivery, const Template* t,
              const Result<OpResult>* result, const Error* error,
              std::chrono::steady_clock::time_point started);

  std::shared_ptr<const NodeInfo> info_;
  std::optional<CoreFactory::Session> session_;  // empty: no factory, no adapters
  // This worker's latency histograms and error counters, by "template/op/outcome".
  std::map<std::string, metrics::Histogram*, std::less<>> latency_;
  std::map<std::string, metrics::Counter*, std::less<>> adapter_errors_;
  // Exactly-once outcomes: recorded, replayed, conflict.
  metrics::Counter* once_recorded_ = nullptr;
  metrics::Counter* once_replayed_ = nullptr;
  metrics::Counter* once_conflicts_ = nullptr;
};

}  // namespace beds::brokers
