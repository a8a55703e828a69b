// What a broker worker needs of an AMQP channel: take deliveries, publish, settle. Connection is
// the real one; the worker's unit tests put an in-memory fake here, so the delivery rules (ack
// after reply, retry, park, confirmed forwards, redelivery) are tested without a server.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

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

// One message of a PublishMany batch.
struct Publication {
  std::string exchange;
  std::string routing_key;
  Message message;
  bool mandatory = true;  // no queue taking it is a failure (false: it is dropped quietly)
};

class Channel {
 public:
  virtual ~Channel() = default;

  // The next delivery, or nullopt when `timeout` passes first (0: only what has arrived).
  virtual Result<std::optional<Delivery>> Next(std::chrono::milliseconds timeout) = 0;

  // Publishes; in confirm mode returns only once a queue has taken the message (mandatory +
  // confirm: an unroutable message is an error, not a silent drop).
  virtual Result<void> Publish(const std::string& exchange, const std::string& routing_key,
                               const Message& message) = 0;

  // Publishes every message, then in confirm mode waits once for the broker's acks of all of
  // them. A mandatory message no queue took is an error unless `unroutable` is given: then it
  // receives that message's routing key and the rest of the batch still counts as stored.
  virtual Result<void> PublishMany(const std::vector<Publication>& batch,
                                   std::vector<std::string>* unroutable = nullptr) = 0;

  // `multiple`: settles every delivery up to and including `delivery_tag` at once.
  virtual Result<void> Ack(uint64_t delivery_tag, bool multiple = false) = 0;
  virtual Result<void> Reject(uint64_t delivery_tag, bool requeue) = 0;
  virtual Result<void> Cancel(const std::string& consumer_tag) = 0;

  // On: what is published or acked from now on is held until it is turned off, then leaves
  // together (in one send where it can), so the node makes one system call and the broker wakes
  // once for many messages. Between on and off, call only Publish (unconfirmed) and Ack; what
  // they return then is only whether the frames could be made: whether they left is what
  // Coalesce(false) returns.
  virtual Result<void> Coalesce(bool /*on*/) { return Ok(); }

  // For an event loop that waits on the socket itself: the socket (-1: there is none, as with a
  // test's in-memory broker; wait in Next then), and whether bytes already read from it hold more
  // frames (Next(0ms) must be called again before waiting).
  virtual int fd() const { return -1; }
  virtual bool Buffered() const { return false; }
};

}  // namespace beds::amqp
