// Private to brokers: a pool's one consuming connection, shared by its workers.
//
// One thread per pool reads beds.{broker} (prefetch = instances × prefetch) and deals each
// delivery to a worker's lane, the least busy one with room (at most `prefetch` each), so
// `instances` still bounds the pool's concurrent work. A worker sees its lane as its channel
// (Links::OpenConsumer): it takes deliveries from it and writes its replies, acks and rejects on
// the shared connection itself, under a lock (rabbitmq-c lets one thread at a time use a
// connection), so the intake thread wakes only for what arrives. Deliveries the pool's handler
// can answer at once without blocking (Handler::Quick: a ping) are answered on the intake thread
// and never wake a worker.
//
// Why: eight workers, each with its own connection and thread, woke once per message or two on
// two cores; most of the node's time per request was the kernel switching between them. With one
// reader, a wake-up takes every message that has arrived, and the broker sees one consumer.
//
// Acks: a lane's multiple-ack settles only that lane's deliveries; the broker gets one
// multiple-ack up to the oldest delivery still being worked on, and single acks past it once they
// have waited 2 ms, so a slow request never holds back the others' acks (nor the prefetch window).
// A lane closed with deliveries its worker took and did not settle (the worker died) hands them
// back to the queue (redelivered); those it had not taken yet go to other lanes. When the
// connection breaks, every lane breaks with it (its worker reconnects to a fresh lane) and the
// broker redelivers whatever was not acked.
#pragma once

#include <memory>
#include <stop_token>
#include <thread>

#include "brokers/links.hpp"
#include "brokers/pool.hpp"
#include "core/clock.hpp"

namespace beds::brokers {

class Intake final : public Links {
 public:
  // `links` opens the real connections (and the workers' confirmed channels, passed through);
  // `quick` answers what it can at once (null: every delivery goes to a worker). `links`,
  // `clock` and `counters` must outlive the intake.
  Intake(const config::BrokerSettings& broker, Links& links, Clock& clock,
         std::shared_ptr<Handler> quick, PoolCounters& counters);
  ~Intake() override;  // Stop()s

  void Start();
  // Cancels the consumer: nothing new arrives, what the workers still answer is written.
  void RequestStop();
  // After the workers have ended: writes what they answered, then closes the connection (the
  // broker requeues anything not acked).
  void Stop();

  // A lane for one worker; waits briefly for the pool's connection when it is not up.
  Result<Consumer> OpenConsumer(const config::BrokerSettings& broker) override;
  Result<std::unique_ptr<amqp::Channel>> OpenConfirmed(const config::BrokerSettings& broker,
                                                       bool redeclare) override {
    return links_.OpenConfirmed(broker, redeclare);
  }

 private:
  struct Shared;
  class Lane;
  void Main(std::stop_token stop);

  const config::BrokerSettings& broker_;
  Links& links_;
  Clock& clock_;
  std::shared_ptr<Handler> quick_;
  PoolCounters& counters_;
  std::shared_ptr<Shared> shared_;  // what lanes and the intake thread share
  std::jthread thread_;
};

}  // namespace beds::brokers
