// Private to brokers: one worker = one thread, one consuming channel (its lane on the pool's
// connection, brokers/intake.hpp), one message handled at a time (so a pool's `instances` bounds
// its concurrent work).
//
// A worker works in cycles: it takes a delivery, then whatever else has already arrived (at most
// `prefetch`), and handles each as it comes, answering at once those that need nothing stored
// first. Work a handler staged for the cycle (its exactly-once writes, CALGON tickets) is done
// together at its end (Handler::StoreStaged); messages the handlers produced (CALGON jobs,
// completion events) are then published together and confirmed by the broker in one round trip,
// and only then are their deliveries answered. The cycle ends with one multiple-ack for every
// delivery it answered: a message is still acked only after its reply is published, at a fraction
// of the frames.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <thread>
#include <vector>

#include "brokers/links.hpp"
#include "brokers/pool.hpp"
#include "core/clock.hpp"

namespace beds::brokers {

class Worker {
 public:
  // `on_exit` runs on the worker's thread as it ends; `died` says whether it ended by a crash
  // (the supervisor then replaces it) rather than by a stop request. `links` and `clock` must
  // outlive the worker.
  Worker(int index, const config::BrokerSettings& broker, Links& links, Clock& clock,
         std::shared_ptr<Handler> handler, PoolCounters& counters, std::function<void()> on_exit);
  ~Worker();  // requests stop and joins

  void RequestStop() { thread_.request_stop(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  bool died() const { return died_.load(); }
  bool exited() const { return exited_.load(); }

 private:
  // A delivery answered at the end of the cycle: once its staged work is done and its forwards
  // are confirmed.
  struct Waiting {
    amqp::Delivery delivery;
    Outcome outcome;
  };

  void Main(std::stop_token stop);
  void Loop(std::stop_token stop);
  Result<void> Connect();
  // The consuming channel broke: every unacked delivery goes back to the queue with it.
  void Lost(const Error& error);
  void Cycle(amqp::Delivery first, std::stop_token stop);
  // Batched handlers: `first` and whatever else arrives within batch_ms, up to prefetch.
  void ProcessBatch(amqp::Delivery first, std::stop_token stop);
  Outcome Handle(const amqp::Delivery& delivery, int retries);
  // Carries out a handler's decision: reply (now or after the cycle's forwards), or move the
  // message to .retry / .dlq first.
  void Apply(amqp::Delivery delivery, Outcome outcome, int retries, std::stop_token stop);
  // Ends the cycle: has the staged work done, publishes the waiting forwards, answers their
  // deliveries, acks the cycle.
  void Flush(std::stop_token stop);
  // A waiting delivery whose forwards did not all get stored with the cycle's: tried one by one.
  void Resolve(Waiting& waiting, std::stop_token stop);
  void Reply(const amqp::Message& request, std::string body);
  // Acked by the cycle's multiple-ack.
  void Settle(uint64_t delivery_tag);
  // Opens the confirmed channel unless it is open; `redeclare` as Links::OpenConfirmed.
  Result<void> OpenConfirmed(bool redeclare);
  // Published on the confirmed channel, one attempt on a fresh channel after a failure.
  Result<void> PublishConfirmed(const amqp::Publication& publication);

  const int index_;
  const config::BrokerSettings& broker_;
  Links& links_;
  Clock& clock_;
  std::shared_ptr<Handler> handler_;
  PoolCounters& counters_;
  std::function<void()> on_exit_;
  std::unique_ptr<amqp::Channel> connection_;  // consume, reply, ack
  std::unique_ptr<amqp::Channel> confirmed_;   // stored publishes, opened when first needed
  std::string consumer_tag_;
  bool lost_ = false;          // the connection broke (the next one counts as a reconnect)
  size_t batch_failures_ = 0;  // batches handed back in a row (their backoff grows)
  std::vector<Waiting> waiting_;
  uint64_t ack_upto_ = 0;  // the cycle's highest answered delivery tag
  size_t to_ack_ = 0;      // how many deliveries the cycle's ack settles
  std::atomic<bool> died_{false};
  std::atomic<bool> exited_{false};
  std::jthread thread_;  // last: starts after every member above is ready
};

}  // namespace beds::brokers
