#include "amqp/topology.hpp"

#include "core/lineage.hpp"

namespace beds::amqp {

std::string QueueName(const std::string& broker) { return "beds." + broker; }
std::string RetryQueueName(const std::string& broker) { return "beds." + broker + ".retry"; }
std::string DlqName(const std::string& broker) { return "beds." + broker + ".dlq"; }

Result<void> DeclareExchanges(Connection& c) {
  for (const char* name : {kEventsExchange, kLogsExchange, kDeadLetterExchange}) {
    if (auto r = c.DeclareExchange(name, "topic"); !r) return r;
  }
  return Ok();
}

namespace {

// Quorum queues dead-letter at most once by default; a message leaving the retry queue (or a
// rejected one leaving the work queue) must not be lost, so ask for at-least-once, which
// RabbitMQ only allows with reject-publish overflow.
void AddQueueType(QueueOptions& q, const std::string& type) {
  q.arguments["x-queue-type"] = type;
  if (type == "quorum") {
    q.arguments["x-dead-letter-strategy"] = std::string("at-least-once");
    q.arguments["x-overflow"] = std::string("reject-publish");
  }
}

}  // namespace

Result<void> DeclareBrokerQueues(Connection& c, const config::BrokerSettings& broker) {
  const std::string queue = QueueName(broker.name);
  QueueOptions main;
  AddQueueType(main, broker.queue_type);
  // Rejected or expired messages land in the parking lot under the queue's own name.
  main.arguments["x-dead-letter-exchange"] = std::string(kDeadLetterExchange);
  main.arguments["x-dead-letter-routing-key"] = queue;
  if (auto r = c.DeclareQueue(queue, main); !r) return std::unexpected(r.error());
  // Requests come from beds.events; the admin handlers of log, audit and metric events consume
  // beds.logs.
  const bool logs = config::ConsumesLogs(broker.handler);
  for (const auto& key : broker.bindings) {
    if (auto r = c.BindQueue(queue, logs ? kLogsExchange : kEventsExchange, key); !r) return r;
  }

  // The retry queue has no consumer: a message waits out its per-message TTL, then the broker
  // dead-letters it through the default exchange straight back to the work queue.
  QueueOptions retry;
  AddQueueType(retry, broker.queue_type);
  retry.arguments["x-dead-letter-exchange"] = std::string("");
  retry.arguments["x-dead-letter-routing-key"] = queue;
  if (auto r = c.DeclareQueue(RetryQueueName(broker.name), retry); !r) {
    return std::unexpected(r.error());
  }

  QueueOptions dlq;
  dlq.arguments["x-queue-type"] = broker.queue_type;
  if (auto r = c.DeclareQueue(DlqName(broker.name), dlq); !r) return std::unexpected(r.error());
  return c.BindQueue(DlqName(broker.name), kDeadLetterExchange, queue);
}

Result<std::string> DeclareControlQueue(Connection& c, const std::string& node) {
  QueueOptions control;
  control.durable = false;
  control.exclusive = true;
  control.auto_delete = true;
  auto name = c.DeclareQueue("beds.control." + node + "." + NewGuid().substr(20), control);
  if (!name) return name;
  if (auto r = c.BindQueue(*name, kEventsExchange, "admin.#"); !r)
    return std::unexpected(r.error());
  return name;
}

}  // namespace beds::amqp
