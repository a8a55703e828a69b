// One AMQP 0-9-1 connection with one channel, over rabbitmq-c. Not thread-safe: a connection
// belongs to the one thread that opened it (workers, the control loop, a client each own theirs).
// Any error leaves the connection unusable: drop it and Open() a new one (callers reconnect with
// backoff). Destroying it closes the socket, so the broker requeues every unacked delivery.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "amqp/channel.hpp"
#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::amqp {

struct QueueOptions {
  bool durable = true;
  bool exclusive = false;
  bool auto_delete = false;
  Headers arguments;  // x-queue-type, x-dead-letter-exchange, …
};

// rabbitmq-c's version string, for `beds version`.
std::string LibraryVersion();

class Connection : public Channel {
 public:
  // Connects, logs in and opens channel 1. Errors are UNAVAILABLE with the broker's reason.
  static Result<std::unique_ptr<Connection>> Open(const config::AmqpSettings& settings);
  ~Connection() override;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Result<void> DeclareExchange(const std::string& name, const std::string& type);
  // Returns the queue's name (the broker's choice when `name` is empty).
  Result<std::string> DeclareQueue(const std::string& name, const QueueOptions& options);
  Result<void> DeleteQueue(const std::string& name);
  Result<void> BindQueue(const std::string& queue, const std::string& exchange,
                         const std::string& key);
  Result<void> Qos(uint16_t prefetch);
  // Starts a consumer; returns its tag.
  Result<std::string> Consume(const std::string& queue, bool no_ack);
  Result<void> Cancel(const std::string& consumer_tag) override;
  // Puts the channel in confirm mode: every later Publish waits for the broker's ack.
  Result<void> EnableConfirms();

  Result<void> Publish(const std::string& exchange, const std::string& routing_key,
                       const Message& message) override;
  Result<void> PublishMany(const std::vector<Publication>& batch,
                           std::vector<std::string>* unroutable = nullptr) override;

  // Publishes with the mandatory flag and does not wait: a message no queue takes comes back
  // later from Next() as a Delivery with `returned` set, so a client can report an unbound
  // routing key at once instead of waiting out its timeout.
  Result<void> PublishReturnable(const std::string& exchange, const std::string& routing_key,
                                 const Message& message);

  // Heartbeats are served while Next() waits.
  Result<std::optional<Delivery>> Next(std::chrono::milliseconds timeout) override;
  Result<void> Ack(uint64_t delivery_tag, bool multiple = false) override;
  Result<void> Reject(uint64_t delivery_tag, bool requeue) override;
  // Over plain TCP: publishes and acks are encoded and leave in one send at Coalesce(false).
  Result<void> Coalesce(bool on) override;
  // rabbitmq-c may hold bytes the socket no longer shows: Buffered() says so.
  int fd() const override;
  bool Buffered() const override;

  // basic.get: one message from `queue`, or nullopt when it is empty. With auto_ack the broker
  // forgets it at once; otherwise Ack() it, or close the connection to hand it back.
  Result<std::optional<Delivery>> Get(const std::string& queue, bool auto_ack = true);

  // Messages ready in `queue` (passive declare), for tools and tests.
  Result<uint32_t> MessageCount(const std::string& queue);

 private:
  struct Impl;
  explicit Connection(std::unique_ptr<Impl> impl);
  Result<void> PublishOne(const std::string& exchange, const std::string& routing_key,
                          const Message& message, bool mandatory);
  std::unique_ptr<Impl> impl_;
};

}  // namespace beds::amqp
