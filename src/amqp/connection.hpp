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

#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::amqp {

using HeaderValue = std::variant<std::string, int64_t>;
using Headers = std::map<std::string, HeaderValue>;

// What is published, and what a delivery carries.
struct Message {
  std::string body;
  std::string content_type = "application/json";
  std::string correlation_id;
  std::string reply_to;
  std::string message_id;
  // RabbitMQ refuses a user_id other than the publisher's login, so it names who sent a request.
  std::string user_id;
  uint8_t delivery_mode = 0;  // 0 = unset, 1 transient, 2 persistent
  std::string expiration;     // per-message TTL in ms, as the decimal text AMQP wants
  Headers headers;
};

struct Delivery {
  Message message;
  std::string exchange;
  std::string routing_key;
  uint64_t delivery_tag = 0;
  bool redelivered = false;
  // A message of ours that the broker handed back (basic.return): no queue was bound to its
  // routing key. Next() returns these only on a connection that used PublishReturnable(); they
  // carry no delivery tag to ack.
  bool returned = false;
  std::string return_reason;  // the broker's reply text, e.g. "NO_ROUTE"
};

struct QueueOptions {
  bool durable = true;
  bool exclusive = false;
  bool auto_delete = false;
  Headers arguments;  // x-queue-type, x-dead-letter-exchange, …
};

// rabbitmq-c's version string, for `beds version`.
std::string LibraryVersion();

class Connection {
 public:
  // Connects, logs in and opens channel 1. Errors are UNAVAILABLE with the broker's reason.
  static Result<std::unique_ptr<Connection>> Open(const config::AmqpSettings& settings);
  ~Connection();
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
  Result<void> Cancel(const std::string& consumer_tag);
  // Puts the channel in confirm mode: every later Publish waits for the broker's ack.
  Result<void> EnableConfirms();

  // Publishes; in confirm mode returns only once a queue has taken the message (mandatory +
  // confirm: an unroutable message is an error, not a silent drop).
  Result<void> Publish(const std::string& exchange, const std::string& routing_key,
                       const Message& message);

  // Publishes with the mandatory flag and does not wait: a message no queue takes comes back
  // later from Next() as a Delivery with `returned` set, so a client can report an unbound
  // routing key at once instead of waiting out its timeout.
  Result<void> PublishReturnable(const std::string& exchange, const std::string& routing_key,
                                 const Message& message);

  struct Outgoing {
    std::string routing_key;
    Message message;
  };
  // Publishes every message, then in confirm mode waits once for the broker's acks of all of
  // them (one round trip for the batch). `mandatory`: an unroutable message is an error, unless
  // `unroutable` is given: then the batch succeeds and it receives the routing keys of the
  // messages no queue took (confirm mode only).
  Result<void> PublishBatch(const std::string& exchange, const std::vector<Outgoing>& batch,
                            bool mandatory, std::vector<std::string>* unroutable = nullptr);

  // The next delivery, or nullopt when `timeout` passes first. Heartbeats are served meanwhile.
  Result<std::optional<Delivery>> Next(std::chrono::milliseconds timeout);

  Result<void> Ack(uint64_t delivery_tag);
  Result<void> Reject(uint64_t delivery_tag, bool requeue);

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
