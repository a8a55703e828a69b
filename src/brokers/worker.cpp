#include "brokers/worker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "amqp/topology.hpp"
#include "core/backoff.hpp"

namespace beds::brokers {
namespace {

using namespace std::chrono_literals;

int RetriesOf(const amqp::Message& m) {
  auto it = m.headers.find(kRetriesHeader);
  if (it == m.headers.end()) return 0;
  // The header arrives with the message: clamp it rather than trust it.
  if (const auto* n = std::get_if<int64_t>(&it->second))
    return static_cast<int>(std::clamp<int64_t>(*n, 0, 1'000'000));
  return 0;
}

}  // namespace

void SleepUnlessStopped(std::stop_token stop, std::chrono::milliseconds delay) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, delay, [] { return false; });
}

Worker::Worker(int index, const config::BrokerSettings& broker, const config::AmqpSettings& amqp,
               std::shared_ptr<Handler> handler, PoolCounters& counters,
               std::function<void()> on_exit)
    : index_(index),
      broker_(broker),
      amqp_(amqp),
      handler_(std::move(handler)),
      counters_(counters),
      on_exit_(std::move(on_exit)),
      thread_([this](std::stop_token stop) { Main(stop); }) {}

Worker::~Worker() {
  RequestStop();
  Join();
}

void Worker::Main(std::stop_token stop) {
  counters_.alive.fetch_add(1);
  // The one place nothing may escape: a thread that throws would take the process down.
  try {
    Loop(stop);
  } catch (const std::exception& e) {
    spdlog::error("broker {} worker {} died: {}", broker_.name, index_, e.what());
    died_ = true;
  } catch (...) {
    spdlog::error("broker {} worker {} died: unknown exception", broker_.name, index_);
    died_ = true;
  }
  // Closing the connection hands every unacked delivery back to the broker for redelivery.
  if (connection_) counters_.connected.fetch_sub(1);
  connection_.reset();
  confirmed_.reset();
  counters_.alive.fetch_sub(1);
  exited_ = true;
  if (on_exit_) on_exit_();
}

Result<void> Worker::Connect() {
  auto c = amqp::Connection::Open(amqp_);
  if (!c) return std::unexpected(c.error());
  auto& conn = **c;
  if (auto r = amqp::DeclareExchanges(conn); !r) return r;
  if (auto r = amqp::DeclareBrokerQueues(conn, broker_); !r) return r;
  if (auto r = conn.Qos(static_cast<uint16_t>(broker_.prefetch)); !r) return r;
  auto tag = conn.Consume(amqp::QueueName(broker_.name), false);
  if (!tag) return std::unexpected(tag.error());
  consumer_tag_ = *tag;
  connection_ = std::move(*c);
  counters_.connected.fetch_add(1);
  return Ok();
}

void Worker::Loop(std::stop_token stop) {
  Backoff backoff(100ms, 5s);
  int failures = 0;
  while (!stop.stop_requested()) {
    if (!connection_) {
      if (auto r = Connect(); !r) {
        // First failure and then every tenth: a long outage should not flood the log.
        if (failures++ % 10 == 0) {
          spdlog::warn("broker {} worker {}: {} (retrying in {} ms)", broker_.name, index_,
                       r.error().message, backoff.Peek().count());
        }
        SleepUnlessStopped(stop, backoff.Next());
        continue;
      }
      if (failures > 0 || lost_) {
        spdlog::info("broker {} worker {}: connected again", broker_.name, index_);
        counters_.reconnects.fetch_add(1, std::memory_order_relaxed);
      }
      lost_ = false;
      failures = 0;
      backoff.Reset();
    }
    auto next = connection_->Next(200ms);
    if (!next) {
      lost_ = true;
      spdlog::warn("broker {} worker {}: {}", broker_.name, index_, next.error().message);
      connection_.reset();
      confirmed_.reset();
      counters_.connected.fetch_sub(1);
      continue;
    }
    if (*next) {
      counters_.in_flight.fetch_add(1, std::memory_order_relaxed);
      struct Done {
        std::atomic<int>& n;
        ~Done() { n.fetch_sub(1, std::memory_order_relaxed); }
      } done{counters_.in_flight};
      if (handler_->Batched()) {
        ProcessBatch(std::move(**next), stop);
      } else {
        Process(**next, stop);
      }
    }
  }
  if (connection_) {
    // Stop the flow first so nothing new arrives while the connection closes.
    (void)connection_->Cancel(consumer_tag_);
  }
}

Result<void> Worker::PublishConfirmed(const std::string& exchange, const std::string& key,
                                      const amqp::Message& message, bool must_route) {
  // Two tries: the second on a fresh connection that first redeclares the broker's queues, so a
  // retry queue or DLQ deleted by hand (the publish comes back unroutable) is put back.
  Result<void> result = Ok();
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!confirmed_) {
      auto c = amqp::Connection::Open(amqp_);
      if (!c) return std::unexpected(c.error());
      if (attempt > 0) {
        if (auto r = amqp::DeclareExchanges(**c); !r) return r;
        if (auto r = amqp::DeclareBrokerQueues(**c, broker_); !r) return r;
      }
      if (auto r = (*c)->EnableConfirms(); !r) return r;
      confirmed_ = std::move(*c);
    }
    result = must_route ? confirmed_->Publish(exchange, key, message)
                        : confirmed_->PublishBatch(exchange, {{key, message}}, false);
    if (result) return result;
    confirmed_.reset();
  }
  return result;
}

void Worker::Reply(const amqp::Message& request, std::string body) {
  if (request.reply_to.empty()) return;
  amqp::Message reply;
  reply.body = std::move(body);
  reply.correlation_id = request.correlation_id;
  if (auto r = connection_->Publish("", request.reply_to, reply); !r) {
    // The connection is gone, so is our chance to ack: the broker redelivers the request.
    spdlog::warn("broker {} worker {}: reply not sent: {}", broker_.name, index_,
                 r.error().message);
  }
}

void Worker::Process(const amqp::Delivery& delivery, std::stop_token stop) {
  counters_.consumed.fetch_add(1, std::memory_order_relaxed);
  const int retries = RetriesOf(delivery.message);
  Outcome outcome;
  try {
    outcome = handler_->Handle(delivery, retries);
  } catch (const WorkerDeath&) {
    throw;
  } catch (const std::exception& e) {
    outcome = Outcome::Retry(std::string("handler failed: ") + e.what());
  } catch (...) {
    outcome = Outcome::Retry("handler failed: unknown exception");
  }
  Apply(delivery, std::move(outcome), retries, stop);
}

void Worker::ProcessBatch(amqp::Delivery first, std::stop_token stop) {
  std::vector<amqp::Delivery> batch;
  batch.push_back(std::move(first));
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(broker_.batch_ms);
  while (static_cast<int>(batch.size()) < broker_.prefetch && !stop.stop_requested()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    auto next = connection_->Next(left);
    if (!next) {
      // The connection is gone and with it every unacked delivery: the broker redelivers them.
      spdlog::warn("broker {} worker {}: {}", broker_.name, index_, next.error().message);
      lost_ = true;
      connection_.reset();
      confirmed_.reset();
      counters_.connected.fetch_sub(1);
      return;
    }
    if (!*next) break;
    batch.push_back(std::move(**next));
  }
  counters_.consumed.fetch_add(batch.size(), std::memory_order_relaxed);
  std::vector<Outcome> outcomes;
  std::string failure;
  try {
    outcomes = handler_->HandleBatch(batch);
  } catch (const WorkerDeath&) {
    throw;
  } catch (const std::exception& e) {
    failure = e.what();
  } catch (...) {
    failure = "unknown exception";
  }
  if (failure.empty() && outcomes.size() != batch.size())
    failure = "handler answered a short batch";
  for (const Outcome& o : outcomes) {
    if (failure.empty() && o.action == Outcome::Action::kRetry) failure = o.reason;
  }
  if (!failure.empty()) {
    // Backing off further each time: the warning below is itself an event for this queue.
    const auto& delays = broker_.retry_backoff_ms;
    const int64_t delay = delays[std::min<size_t>(batch_failures_++, delays.size() - 1)];
    spdlog::warn("broker {}: batch of {} not handled ({}); handing it back in {} ms", broker_.name,
                 batch.size(), failure, delay);
    SleepUnlessStopped(stop, std::chrono::milliseconds(delay));
    for (const auto& d : batch) {
      if (!connection_->Reject(d.delivery_tag, true)) break;
    }
    return;
  }
  batch_failures_ = 0;
  for (size_t i = 0; i < batch.size() && connection_; ++i) {
    Apply(batch[i], std::move(outcomes[i]), RetriesOf(batch[i].message), stop);
  }
}

void Worker::Apply(const amqp::Delivery& delivery, Outcome outcome, int retries,
                   std::stop_token stop) {
  if (outcome.action == Outcome::Action::kRetry && retries >= broker_.max_retries) {
    outcome.action = Outcome::Action::kPark;
    outcome.reason = "gave up after " + std::to_string(retries) + " retries: " + outcome.reason;
    outcome.reply = handler_->ParkedReply(delivery, outcome.reason);
  }
  const amqp::Message& in = delivery.message;

  if (outcome.action == Outcome::Action::kAck) {
    for (const Outcome::Forward& f : outcome.forward) {
      auto sent = PublishConfirmed(f.exchange, f.routing_key, f.message, f.must_route);
      if (sent) continue;
      if (!f.must_route) {
        spdlog::warn("broker {} worker {}: {} not published: {}", broker_.name, index_,
                     f.routing_key, sent.error().message);
        continue;
      }
      spdlog::warn("broker {} worker {}: {} not stored: {}", broker_.name, index_, f.routing_key,
                   sent.error().message);
      if (outcome.unforwarded_reply) {
        outcome.reply = std::move(outcome.unforwarded_reply);
        break;
      }
      // The work is not handed on: answer nothing yet, and let the message come again.
      SleepUnlessStopped(stop, std::chrono::seconds(1));
      (void)connection_->Reject(delivery.delivery_tag, true);
      return;
    }
    if (outcome.reply) Reply(in, std::move(*outcome.reply));
    if (connection_->Ack(delivery.delivery_tag)) {
      counters_.acked.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }

  // Retry or park: the copy must be safely stored (confirmed) before the original is acked.
  amqp::Message copy = in;
  // The broker refuses a user_id other than the publisher's login (ours, now); the sender's is
  // kept in a header so the audit record still names it after a retry.
  if (!copy.user_id.empty()) copy.headers[kUserHeader] = copy.user_id;
  copy.user_id.clear();
  copy.delivery_mode = 2;
  copy.expiration.clear();
  copy.headers[kErrorHeader] = outcome.reason.substr(0, 1024);
  if (outcome.action == Outcome::Action::kRetry) {
    const auto& delays = broker_.retry_backoff_ms;
    const int64_t delay = delays[std::min<size_t>(retries, delays.size() - 1)];
    copy.headers[kRetriesHeader] = int64_t{retries + 1};
    copy.expiration = std::to_string(delay);
    spdlog::warn("broker {}: retry {} in {} ms: {}", broker_.name, retries + 1, delay,
                 outcome.reason);
    if (auto moved = PublishConfirmed("", amqp::RetryQueueName(broker_.name), copy); !moved) {
      // Wait before handing it back, or a broker that refuses the move would have us spin.
      spdlog::warn("broker {} worker {}: retry not stored ({}); requeueing in {} ms", broker_.name,
                   index_, moved.error().message, delay);
      SleepUnlessStopped(stop, std::chrono::milliseconds(delay));
      (void)connection_->Reject(delivery.delivery_tag, true);
      return;
    }
    counters_.retried.fetch_add(1, std::memory_order_relaxed);
    if (connection_->Ack(delivery.delivery_tag)) {
      counters_.acked.fetch_add(1, std::memory_order_relaxed);
    }
    return;
  }

  copy.headers[kRetriesHeader] = int64_t{retries};
  spdlog::error("broker {}: parking in {}: {}", broker_.name, amqp::DlqName(broker_.name),
                outcome.reason);
  if (auto moved = PublishConfirmed(amqp::kDeadLetterExchange, amqp::QueueName(broker_.name), copy);
      !moved) {
    // Unlike a retry there is no later: keep the message in its queue until it can be parked.
    spdlog::warn("broker {} worker {}: park not stored ({}); requeueing in 1 s", broker_.name,
                 index_, moved.error().message);
    SleepUnlessStopped(stop, std::chrono::seconds(1));
    (void)connection_->Reject(delivery.delivery_tag, true);
    return;
  }
  counters_.parked.fetch_add(1, std::memory_order_relaxed);
  if (outcome.reply) Reply(in, std::move(*outcome.reply));
  if (connection_->Ack(delivery.delivery_tag)) {
    counters_.acked.fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace beds::brokers
