// Private to brokers: how a worker reaches its broker. AmqpLinks opens real connections; the
// worker's unit tests give an in-memory broker instead.
#pragma once

#include <memory>
#include <string>

#include "amqp/channel.hpp"
#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::brokers {

class Links {
 public:
  virtual ~Links() = default;

  struct Consumer {
    std::unique_ptr<amqp::Channel> channel;
    std::string tag;  // the consumer's tag, to Cancel() it
  };
  // A channel consuming beds.{broker} with the broker's prefetch, its exchanges and queues
  // declared first.
  virtual Result<Consumer> OpenConsumer(const config::BrokerSettings& broker) = 0;

  // A channel in confirm mode, for what must be stored before a delivery is acked (retries,
  // parked messages, forwards). `redeclare`: declare the broker's exchanges and queues again
  // first (one deleted by hand makes every publish to it come back unroutable).
  virtual Result<std::unique_ptr<amqp::Channel>> OpenConfirmed(const config::BrokerSettings& broker,
                                                               bool redeclare) = 0;
};

// Real AMQP connections to the node's broker service.
class AmqpLinks final : public Links {
 public:
  explicit AmqpLinks(config::AmqpSettings amqp) : amqp_(std::move(amqp)) {}
  Result<Consumer> OpenConsumer(const config::BrokerSettings& broker) override;
  Result<std::unique_ptr<amqp::Channel>> OpenConfirmed(const config::BrokerSettings& broker,
                                                       bool redeclare) override;

 private:
  const config::AmqpSettings amqp_;
};

}  // namespace beds::brokers
