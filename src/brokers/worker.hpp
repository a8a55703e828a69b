// Private to brokers: one worker = one thread, one AMQP connection, one message at a time.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stop_token>
#include <thread>

#include "amqp/connection.hpp"
#include "brokers/pool.hpp"

namespace beds::brokers {

// Sleeps for `delay` unless a stop is requested first: the reconnect backoff of every loop here.
void SleepUnlessStopped(std::stop_token stop, std::chrono::milliseconds delay);

class Worker {
 public:
  // `on_exit` runs on the worker's thread as it ends; `died` says whether it ended by a crash
  // (the supervisor then replaces it) rather than by a stop request.
  Worker(int index, const config::BrokerSettings& broker, const config::AmqpSettings& amqp,
         std::shared_ptr<Handler> handler, PoolCounters& counters, std::function<void()> on_exit);
  ~Worker();  // requests stop and joins

  void RequestStop() { thread_.request_stop(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  bool died() const { return died_.load(); }
  bool exited() const { return exited_.load(); }

 private:
  void Main(std::stop_token stop);
  void Loop(std::stop_token stop);
  Result<void> Connect();
  void Process(const amqp::Delivery& delivery, std::stop_token stop);
  // Batched handlers: `first` and whatever else arrives within batch_ms, up to prefetch.
  void ProcessBatch(amqp::Delivery first, std::stop_token stop);
  // Carries out a handler's decision: reply and ack, or move to .retry / .dlq first.
  void Apply(const amqp::Delivery& delivery, Outcome outcome, int retries, std::stop_token stop);
  void Reply(const amqp::Message& request, std::string body);
  // Published on the confirmed connection; `must_route`: a message no queue takes is an error.
  Result<void> PublishConfirmed(const std::string& exchange, const std::string& key,
                                const amqp::Message& message, bool must_route = true);

  const int index_;
  const config::BrokerSettings& broker_;
  const config::AmqpSettings& amqp_;
  std::shared_ptr<Handler> handler_;
  PoolCounters& counters_;
  std::function<void()> on_exit_;
  std::unique_ptr<amqp::Connection> connection_;  // consume, reply, ack
  std::unique_ptr<amqp::Connection> confirmed_;   // retry/park publishes, opened when first needed
  std::string consumer_tag_;
  bool lost_ = false;
  size_t batch_failures_ = 0;  // batches handed back in a row (their backoff grows)  // the
                               // connection broke (the next one counts as a reconnect)
  std::atomic<bool> died_{false};
  std::atomic<bool> exited_{false};
  std::jthread thread_;  // last: starts after every member above is ready
};

}  // namespace beds::brokers
