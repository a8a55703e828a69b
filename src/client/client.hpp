// The C++ client: RPC over AMQP per docs/protocol.md, used by beds-bench, the tests and (later) the
// gateway and bedsctl. Requests go to beds.events; replies come back on RabbitMQ's direct
// reply-to. Requests are published mandatory: one whose routing key no queue is bound to comes
// straight back as an `unroutable` reply instead of timing out. A request stays pending until its
// reply arrives; when the connection drops (a broker
// restart) the client reconnects with backoff and re-sends every pending request with its
// original correlation id, so each is answered. Publishes are not confirmed: a fire-and-forget
// message written into a dying socket can be lost (requests with replies are re-sent until
// answered). Not thread-safe: one Client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "amqp/connection.hpp"
#include "config/config.hpp"
#include "core/error.hpp"
#include "core/lineage.hpp"

namespace beds::client {

struct SendOptions {
  std::string exchange = "beds.events";
  std::string message_id;      // "": a fresh one (a re-send after a reconnect keeps it)
  bool add_message_id = true;  // false with message_id "": none (a write without a key is then
                               // applied at least once: the node cannot tell its redelivery)
  // A write's idempotency key (docs/protocol.md "Exactly once"): "" on a `.write` key whose
  // body has none = a fresh one. Re-sending a write with the key of its first sending (from
  // Reply::idempotency_key) is answered from its record if it was applied, else applies it.
  std::string idempotency_key;
  bool add_idempotency_key = true;  // false: the body goes as it is (the node then tells a
                                    // write's redelivery apart by its message id alone)
  uint8_t delivery_mode = 0;        // 2 for writes
  // Who the sender acts for (the x-beds-actor header): recorded as the audit actor only when the
  // sender's AMQP user is one of the node's [access] trusted_users (a gateway's).
  std::string actor;
  bool expect_reply = true;  // false: fire and forget (no reply_to)
};

struct Reply {
  std::string correlation_id;
  std::string body;
  // The broker handed the request back: no queue is bound to its routing key, so no node will
  // ever see it. `body` is then an error reply written by the client (UNAVAILABLE, not
  // retryable, naming the key), so callers that only read replies still see what happened.
  bool unroutable = false;
  // The idempotency key the request was sent with ("" for a read): the key to re-send it with
  // when its outcome is unknown.
  std::string idempotency_key;
};

// A batch envelope (docs/protocol.md "Batches") holding `envelopes` (each a JSON envelope, sent
// as it is); `atomic`: all or nothing. Send it like any request, on the key its envelopes need.
std::string BatchBody(const std::vector<std::string>& envelopes, bool atomic = false);

// The envelopes' replies inside a batch's reply, in order (each a JSON reply body); the batch's
// own error when it was refused as a whole or, atomic, failed (Error::message then names the
// failing envelope's index).
Result<std::vector<std::string>> BatchReplies(std::string_view reply_body);

// The reply the client writes for a request the broker returned as unroutable.
std::string UnroutableReply(const std::string& exchange, const std::string& routing_key);

// `body` with `"idempotency_key": key` added, unless it has one already; nullopt when it is not
// a JSON object (sent as it is: the node answers BAD_REQUEST). `key` is set to the body's key.
std::optional<std::string> WithIdempotencyKey(std::string_view body, std::string& key);

// A request body made a child of `parent` (docs/protocol.md "Lineage"): its `lineage` names the
// parent's event id and depth + 1, and BEDS gives it an event id of its own. Application code
// handling event `parent` uses it for every request it issues on that event's behalf, so they
// all appear under `parent` in its lineage tree. VALIDATION when `body` is not a JSON object.
Result<std::string> AsChildOf(const Lineage& parent, std::string_view body);

// The lineage of the event a reply answers (its event_id, as a root): the parent for the
// requests that reply leads to. VALIDATION when the reply has no event id.
Result<Lineage> LineageOfReply(std::string_view reply_body);

class Client {
 public:
  static Result<std::unique_ptr<Client>> Connect(const config::AmqpSettings& settings);

  // Publishes; returns the correlation id the reply will carry.
  Result<std::string> Send(const std::string& routing_key, std::string body,
                           const SendOptions& options = {});
  // The next reply of a pending request, or nullopt when `timeout` passes first.
  Result<std::optional<Reply>> Receive(std::chrono::milliseconds timeout);
  // For a caller that waits on fd() in its own event loop (the gateway): the next reply that has
  // arrived, without waiting; nullopt when none has. It also serves heartbeats, so call it at
  // least once a second. A lost connection is an error and is not reconnected here.
  Result<std::optional<Reply>> Poll();
  // The connection's socket, -1 when there is none.
  int fd() const;
  // Stops waiting for a request's reply (its caller gave up): it is not re-sent after a
  // reconnect, and a late reply is dropped.
  void Forget(const std::string& correlation_id) { pending_.erase(correlation_id); }
  // Send, then wait for that request's reply; replies to other requests are kept for Receive().
  Result<Reply> Call(const std::string& routing_key, std::string body,
                     std::chrono::milliseconds timeout, const SendOptions& options = {});

  // Sends every request at once, then waits for all their replies (in request order): the
  // requests run concurrently on the node's workers. TIMEOUT when not all are answered in time.
  struct Request {
    std::string routing_key;
    std::string body;
    SendOptions options;
  };
  Result<std::vector<Reply>> FanOut(std::vector<Request> requests,
                                    std::chrono::milliseconds timeout);

  size_t pending() const { return pending_.size(); }
  uint64_t reconnects() const { return reconnects_; }
  // How long a lost connection is retried before Send/Receive give up (default 60 s).
  void set_reconnect_window(std::chrono::milliseconds window) { reconnect_window_ = window; }

 private:
  struct Pending {
    std::string exchange;
    std::string routing_key;
    amqp::Message message;
    std::string idempotency_key;
  };
  explicit Client(config::AmqpSettings settings);
  Result<void> Open();
  Result<void> Reconnect(const Error& cause);
  // A reply that arrived while Call() waited for another, oldest first.
  std::optional<Reply> TakeEarly();
  // The reply a delivery on the reply-to consumer carries, when it answers a pending request.
  std::optional<Reply> Answer(amqp::Delivery delivery);

  config::AmqpSettings settings_;
  std::unique_ptr<amqp::Connection> connection_;
  std::map<std::string, Pending> pending_;  // by correlation id
  std::deque<Reply> early_;                 // replies that arrived while Call() waited for another
  std::string prefix_;
  uint64_t next_id_ = 0;
  uint64_t reconnects_ = 0;
  std::chrono::milliseconds reconnect_window_{60000};
};

}  // namespace beds::client
