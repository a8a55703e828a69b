// The `dispatch` handler: decodes the envelope, applies the request's lineage and deadline, and
// routes it by template name. This templates are the system ones (`sys`: ping, describe);
// the template registry and NamasteCore adapters plug in behind the same lookup.
#pragma once

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "brokers/pool.hpp"
#include "config/config.hpp"

namespace beds::brokers {

// What sys/ping reports about the node; `pools` is called on each ping.
struct NodeInfo {
  std::string node;
  std::string env;
  std::string version;
  std::chrono::steady_clock::time_point started;
  bool fault_injection = false;
  int64_t max_body_bytes = 1 << 20;
  std::function<std::vector<PoolStats>()> pools;
};

// The body of sys/ping's `data` (also the answer to admin.ping).
boost::json::object PingData(const NodeInfo& info);

class DispatchHandler : public Handler {
 public:
  explicit DispatchHandler(std::shared_ptr<const NodeInfo> info);
  Outcome Handle(const amqp::Delivery& delivery, int retries) override;
  std::string ParkedReply(const amqp::Delivery& delivery, const std::string& reason) override;

 private:
  std::shared_ptr<const NodeInfo> info_;
};

}  // namespace beds::brokers
