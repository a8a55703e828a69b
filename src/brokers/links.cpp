#include "brokers/links.hpp"

#include "amqp/connection.hpp"
#include "amqp/topology.hpp"

namespace beds::brokers {

Result<Links::Consumer> AmqpLinks::OpenConsumer(const config::BrokerSettings& broker) {
  auto c = amqp::Connection::Open(amqp_);
  if (!c) return std::unexpected(c.error());
  auto& conn = **c;
  if (auto r = amqp::DeclareExchanges(conn); !r) return std::unexpected(r.error());
  if (auto r = amqp::DeclareBrokerQueues(conn, broker); !r) return std::unexpected(r.error());
  if (auto r = conn.Qos(static_cast<uint16_t>(broker.prefetch)); !r) {
    return std::unexpected(r.error());
  }
  auto tag = conn.Consume(amqp::QueueName(broker.name), false);
  if (!tag) return std::unexpected(tag.error());
  return Consumer{std::move(*c), std::move(*tag)};
}

Result<std::unique_ptr<amqp::Channel>> AmqpLinks::OpenConfirmed(
    const config::BrokerSettings& broker, bool redeclare) {
  auto c = amqp::Connection::Open(amqp_);
  if (!c) return std::unexpected(c.error());
  if (redeclare) {
    if (auto r = amqp::DeclareExchanges(**c); !r) return std::unexpected(r.error());
    if (auto r = amqp::DeclareBrokerQueues(**c, broker); !r) return std::unexpected(r.error());
  }
  if (auto r = (*c)->EnableConfirms(); !r) return std::unexpected(r.error());
  return std::unique_ptr<amqp::Channel>(std::move(*c));
}

}  // namespace beds::brokers
