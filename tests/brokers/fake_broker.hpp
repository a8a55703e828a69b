// An in-memory broker for the worker's unit tests: one queue with RabbitMQ's delivery rules
// (prefetch, delivery tags per channel, multiple-acks, requeue on reject and on a closed
// channel, redelivered flag), confirmed publishes with scripted failures, and a log of what the
// worker did in order. Plus a clock that records waits instead of waiting.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "brokers/links.hpp"
#include "core/clock.hpp"

namespace beds::brokers::testing {

// One thing the worker did, in the order it did it.
struct Step {
  enum class Kind { kReply, kStore, kAck, kReject, kCoalesce };
  Kind kind;
  std::string exchange;     // kStore
  std::string routing_key;  // kReply: the reply_to; kStore: the key
  amqp::Message message;    // kReply, kStore
  uint64_t tag = 0;         // kAck, kReject
  bool flag = false;        // kAck: multiple; kReject: requeue; kCoalesce: on
};

class FakeBroker final : public Links {
 public:
  // Puts a message in the queue (as if published to it).
  void Enqueue(amqp::Message message);
  // Puts them all at once: a consumer reading what has arrived finds every one.
  void EnqueueAll(std::vector<amqp::Message> messages);

  // Scripted trouble.
  void FailConsumerOpens(int n);        // the next n OpenConsumer calls fail
  void FailConfirms(int n);             // the next n confirmed PublishMany calls fail
  void Unbind(const std::string& key);  // mandatory publishes to `key` come back
  void BreakConsumer();                 // the open consumer channel's next call fails

  // Waits (real time, at most 5 s) until `done` holds under the broker's lock.
  bool WaitUntil(const std::function<bool(const FakeBroker&)>& done);

  // Read under WaitUntil, or once the worker has stopped.
  const std::vector<Step>& steps() const { return steps_; }
  size_t ready() const { return ready_.size(); }
  size_t unacked() const;
  size_t confirm_batches() const { return confirm_batches_; }  // PublishMany calls that got through
  int consumer_opens() const { return consumer_opens_; }
  int confirmed_opens() const { return confirmed_opens_; }
  const std::deque<amqp::Delivery>& queue() const { return ready_; }

  Result<Consumer> OpenConsumer(const config::BrokerSettings& broker) override;
  Result<std::unique_ptr<amqp::Channel>> OpenConfirmed(const config::BrokerSettings& broker,
                                                       bool redeclare) override;

 private:
  class ConsumerChannel;
  class ConfirmedChannel;
  friend class ConsumerChannel;
  friend class ConfirmedChannel;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<amqp::Delivery> ready_;
  // Unacked deliveries by channel, then by tag.
  std::map<int, std::map<uint64_t, amqp::Delivery>> unacked_;
  std::vector<Step> steps_;
  std::set<std::string> unbound_;
  int fail_consumer_opens_ = 0;
  int fail_confirms_ = 0;
  bool break_consumer_ = false;
  int next_channel_ = 1;
  int consumer_opens_ = 0;
  int confirmed_opens_ = 0;
  size_t confirm_batches_ = 0;
};

class FakeClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point Now() const override;
  // Records the wait and moves the clock on; returns at once.
  bool Sleep(std::stop_token stop, std::chrono::milliseconds delay) override;
  std::vector<std::chrono::milliseconds> sleeps() const;
  // Moves the clock on without a wait (work that takes time).
  void Advance(std::chrono::microseconds by);

 private:
  mutable std::mutex mutex_;
  std::chrono::steady_clock::time_point now_{};
  std::vector<std::chrono::milliseconds> sleeps_;
};

}  // namespace beds::brokers::testing
