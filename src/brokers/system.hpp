// The system templates a dispatch worker answers itself, without a database of their own
// (docs/protocol.md "System templates"): sys/ping, sys/describe, sys/call "fault" on nodes with
// fault injection, and lineage/fetch, which reads the log store.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "amqp/connection.hpp"
#include "brokers/pool.hpp"
#include "config/config.hpp"
#include "core/namaste.hpp"
#include "core/request.hpp"
#include "metrics/metrics.hpp"
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
  int64_t max_batch = 100;  // envelopes in one batch envelope
  std::function<std::vector<PoolStats>()> pools;
  std::shared_ptr<const templates::Snapshot> templates;  // null: system templates only
  std::string log_store =
      "Logs";  // the REC template lineage/fetch reads ([logging] store_template)
  std::shared_ptr<metrics::Registry> metrics;  // null: no request metrics
  config::IdempotencySettings idempotency;     // exactly-once writes
  config::CalgonSettings calgon;               // async jobs and their tickets
  config::AccessSettings access;               // who may call what (see SenderOf, Denied)
};

// The body of sys/ping's `data` (also the answer to admin.ping).
boost::json::object PingData(const NodeInfo& info);

// The body of sys/describe's `data`.
boost::json::object DescribeData(const NodeInfo& info);

// sys/call "fault": test hooks, only on nodes with [node] fault_injection = true.
//   {"mode": "throw", "times": n}  ask for a retry while the message was retried fewer than n times
//   {"mode": "die"}                kill the worker unless this is a redelivery
//   {"mode": "sleep", "ms": n}     take n ms (at most 10 s), then answer
Outcome Fault(const Request& request, const amqp::Delivery& delivery, int retries,
              const std::string& event_id);

// lineage/fetch: the event's tree from the log store, read through `session` (null: none).
Result<boost::json::object> LineageTree(const NodeInfo& info, CoreFactory::Session* session,
                                        const Request& request);

}  // namespace beds::brokers
