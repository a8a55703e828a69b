// The exchanges and queues of docs/protocol.md, declared idempotently. Every connection that
// consumes declares what it consumes from before it starts, so a broker that lost its state (a
// restart without its data directory) is set up again by the reconnecting node itself.
#pragma once

#include <string>

#include "amqp/connection.hpp"
#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::amqp {

inline constexpr const char* kEventsExchange = "beds.events";
inline constexpr const char* kLogsExchange = "beds.logs";
inline constexpr const char* kDeadLetterExchange = "beds.dlx";

std::string QueueName(const std::string& broker);       // beds.{broker}
std::string RetryQueueName(const std::string& broker);  // beds.{broker}.retry
std::string DlqName(const std::string& broker);         // beds.{broker}.dlq

// beds.events, beds.logs, beds.dlx: durable topic exchanges.
Result<void> DeclareExchanges(Connection& connection);

// beds.{broker} (dead-lettering to beds.dlx with key beds.{broker}) bound to the broker's keys,
// beds.{broker}.retry (dead-lettering back to beds.{broker}), beds.{broker}.dlq bound to beds.dlx.
Result<void> DeclareBrokerQueues(Connection& connection, const config::BrokerSettings& broker);

// The node's exclusive, auto-delete control queue bound to admin.#; returns its name.
Result<std::string> DeclareControlQueue(Connection& connection, const std::string& node);

}  // namespace beds::amqp
