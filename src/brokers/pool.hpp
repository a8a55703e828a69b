// Broker pools: for each [brokers.*] table, `instances` supervised workers serving beds.{broker}
// through the pool's one consuming connection (brokers/intake.hpp), each handling one message at
// a time (so `instances` bounds concurrent work); a reply is published before its message is acked.
// A handler that throws sends the message through beds.{broker}.retry with the configured backoff;
// after max_retries it is parked in beds.{broker}.dlq with the reason in x-beds-error. A worker
// that dies is logged and replaced: the pool never shrinks. Start()/Stop() from one controlling
// thread; Stats() from any thread.
#pragma once

#include <any>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "amqp/connection.hpp"
#include "config/config.hpp"

namespace beds::brokers {

// What a handler decided for one delivery.
struct Outcome {
  enum class Action { kAck, kRetry, kPark };
  Action action = Action::kAck;
  std::optional<std::string> reply;  // published to reply_to (when set) before the ack
  std::string reason;                // retry/park: why, for x-beds-error and the log
  // kAck: messages the handler's work produced (a CALGON job, a completion event), published with
  // publisher confirms before the reply and the ack. One that must reach a queue and cannot is
  // answered with `unforwarded_reply`, or else handed back to its queue (unanswered) after a delay.
  struct Forward {
    std::string exchange;
    std::string routing_key;
    amqp::Message message;
    bool must_route = true;  // false: no queue taking it is fine (an event nobody subscribed to)
  };
  std::vector<Forward> forward;
  // The reply instead of `reply` when a must_route forward cannot be published: the delivery is
  // then answered and acked rather than handed back (nothing else would make it succeed later).
  std::optional<std::string> unforwarded_reply;
  // kAck: work done for a worker's whole cycle at once, at its end, by the handler's StoreStaged:
  // what the forwards depend on (a CALGON ticket), or the write itself, whose reply StoreStaged
  // sets (a cycle's exactly-once writes share a transaction). The delivery is answered after
  // that. Only the handler that set it reads it.
  std::any staged;

  // The three decisions: answer (and ack), retry later, park for an operator.
  static Outcome Ack(std::optional<std::string> reply = std::nullopt) {
    Outcome o;
    o.reply = std::move(reply);
    return o;
  }
  static Outcome Retry(std::string reason) {
    Outcome o;
    o.action = Action::kRetry;
    o.reason = std::move(reason);
    return o;
  }
  static Outcome Park(std::string reason, std::optional<std::string> reply = std::nullopt) {
    Outcome o;
    o.action = Action::kPark;
    o.reason = std::move(reason);
    o.reply = std::move(reply);
    return o;
  }
};

// The work done for each message. Called concurrently from every worker of a pool.
class Handler {
 public:
  virtual ~Handler() = default;
  // `retries` = how often this message was retried already. A handler asks for a retry by
  // answering kRetry; an exception escaping it is a bug, treated the same (and logged), except
  // WorkerDeath, which takes the whole worker down (and it is replaced).
  virtual Outcome Handle(const amqp::Delivery& delivery, int retries) = 0;
  // The reply for a message parked after its last retry (an INTERNAL error for the client).
  virtual std::string ParkedReply(const amqp::Delivery& delivery, const std::string& reason) = 0;

  // The reply to a delivery that can be answered at once, without blocking and with nothing to
  // store or publish first (a ping): called on the pool's intake thread, so no worker wakes for
  // it; it is then acked like any other. nullopt: a worker handles it (Handle). Called on its own
  // handler instance, from one thread.
  virtual std::optional<std::string> Quick(const amqp::Delivery& /*delivery*/) {
    return std::nullopt;
  }
  // Whether a delivery's work merges with that of others like it in one worker's cycle (a point
  // read: those of one template share a query). The intake deals such deliveries that arrive
  // together to one worker, and shares the others among idle workers. Called like Quick.
  virtual bool Mergeable(const amqp::Delivery& /*delivery*/) { return false; }

  // Batched handlers (the log store) get up to `prefetch` deliveries at once, gathered for at most
  // the broker's batch_ms, and answer one Outcome per delivery (kAck or kPark). kRetry for any of
  // them means "none of these is done now": every one is handed back to the queue after a backoff.
  virtual bool Batched() const { return false; }
  virtual std::vector<Outcome> HandleBatch(const std::vector<amqp::Delivery>& batch);

  // A delivery of the worker's cycle whose outcome has something staged.
  struct Staged {
    const amqp::Delivery& delivery;
    Outcome& outcome;
  };
  // Called at the end of a worker's cycle, before the forwards are published: stores what the
  // cycle's outcomes staged, all at once (one transaction for a cycle's CALGON tickets, one for
  // its exactly-once writes), and sets the replies that depend on it. An outcome whose part could
  // not be stored is changed here: its forwards dropped, its reply the error.
  virtual void StoreStaged(const std::vector<Staged>& /*cycle*/) {}
};

// Escapes the per-message catch on purpose: models a worker that crashes (fault injection).
class WorkerDeath : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Header names BEDS sets on retried and parked messages.
inline constexpr const char* kRetriesHeader = "x-beds-retries";
inline constexpr const char* kErrorHeader = "x-beds-error";
inline constexpr const char* kUserHeader = "x-beds-user";      // the sender's AMQP user_id
inline constexpr const char* kTicketHeader = "x-beds-ticket";  // a CALGON job's ticket
inline constexpr const char* kActorHeader = "x-beds-actor";    // who a trusted sender acts for

// Who sent a message: its AMQP user_id, which the broker checked against the sender's login
// (verified); else, on a message that did not come through beds.events (a retried copy a worker
// republished, or a CALGON job), the x-beds-user header the worker put there, which anyone
// publishing straight to a queue could also set (not verified); else nobody.
// A sender among `trusted_users` (a gateway's AMQP user, [protocol] trusted_users) acts for the
// principal its x-beds-actor header names: that principal is then the sender (`user`), and the
// gateway's user is `via`; anyone else's x-beds-actor is only `claimed`.
struct Sender {
  std::string user;
  bool verified = false;
  std::string via;      // the trusted user that vouched for `user`
  std::string claimed;  // an actor named by a sender nobody trusts: recorded, not believed
};
Sender SenderOf(const amqp::Delivery& delivery, const std::vector<std::string>& trusted_users);

struct PoolStats {
  std::string broker;
  std::string handler;
  int instances = 0;
  int alive = 0;  // workers whose thread is running
  int connected = 0;
  uint64_t respawns = 0;
  uint64_t consumed = 0;
  uint64_t acked = 0;
  uint64_t retried = 0;
  uint64_t parked = 0;
  uint64_t reconnects = 0;  // connections re-opened after a lost one
  int in_flight = 0;        // messages being handled now
};

// Counters shared by a pool's workers.
struct PoolCounters {
  std::atomic<int> alive{0};
  std::atomic<int> connected{0};
  std::atomic<uint64_t> respawns{0};
  std::atomic<uint64_t> consumed{0};
  std::atomic<uint64_t> acked{0};
  std::atomic<uint64_t> retried{0};
  std::atomic<uint64_t> parked{0};
  std::atomic<uint64_t> reconnects{0};
  std::atomic<int> in_flight{0};
};

// Makes the handler of one worker (called again when a dead worker is replaced, so a fresh worker
// never inherits a crashed one's state, such as a database connection).
using HandlerMaker = std::function<std::shared_ptr<Handler>()>;

class Pool {
 public:
  Pool(config::BrokerSettings broker, config::AmqpSettings amqp, HandlerMaker make_handler);
  // Every worker shares `handler` (it must be thread-safe).
  Pool(config::BrokerSettings broker, config::AmqpSettings amqp, std::shared_ptr<Handler> handler);
  ~Pool();  // Stop()s
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  void Start();
  // Asks every worker to stop after its in-flight message and returns at once; lets a node stop
  // all its pools in parallel before waiting on any.
  void RequestStop();
  // RequestStop(), then wait. Stop consuming; each worker finishes its in-flight message, then
  // closes its connection so the broker requeues whatever was prefetched but not started. Returns
  // when all have exited.
  void Stop();
  PoolStats Stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace beds::brokers
