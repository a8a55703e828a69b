#include "brokers/worker.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

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

amqp::Publication PublicationOf(const Outcome::Forward& f) {
  return amqp::Publication{f.exchange, f.routing_key, f.message, f.must_route};
}

}  // namespace

Worker::Worker(int index, const config::BrokerSettings& broker, Links& links, Clock& clock,
               std::shared_ptr<Handler> handler, PoolCounters& counters,
               std::function<void()> on_exit)
    : index_(index),
      broker_(broker),
      links_(links),
      clock_(clock),
      handler_(std::move(handler)),
      counters_(counters),
      on_exit_(std::move(on_exit)),
      thread_([this](std::stop_token stop) { Main(stop); }) {}

Worker::~Worker() {
  RequestStop();
  Join();
}

void Worker::Main(std::stop_token stop) {
  // Named for `top -H` and perf: "rBroker/3" (Linux keeps 15 characters).
  const std::string name = broker_.name.substr(0, 10) + "/" + std::to_string(index_);
  pthread_setname_np(pthread_self(), name.c_str());
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
  auto consumer = links_.OpenConsumer(broker_);
  if (!consumer) return std::unexpected(consumer.error());
  connection_ = std::move(consumer->channel);
  consumer_tag_ = std::move(consumer->tag);
  counters_.connected.fetch_add(1);
  return Ok();
}

void Worker::Lost(const Error& error) {
  spdlog::warn("broker {} worker {}: {}", broker_.name, index_, error.message);
  lost_ = true;
  connection_.reset();
  confirmed_.reset();
  counters_.connected.fetch_sub(1);
  // Whatever the cycle had not acked goes back to the queue with the connection.
  waiting_.clear();
  ack_upto_ = 0;
  to_ack_ = 0;
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
        clock_.Sleep(stop, backoff.Next());
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
      Lost(next.error());
      continue;
    }
    if (*next) {
      if (handler_->Batched()) {
        ProcessBatch(std::move(**next), stop);
      } else {
        Cycle(std::move(**next), stop);
      }
    }
  }
  if (connection_) {
    // Stop the flow first so nothing new arrives while the connection closes.
    (void)connection_->Cancel(consumer_tag_);
  }
}

Outcome Worker::Handle(const amqp::Delivery& delivery, int retries) {
  counters_.consumed.fetch_add(1, std::memory_order_relaxed);
  counters_.in_flight.fetch_add(1, std::memory_order_relaxed);
  struct Done {
    std::atomic<int>& n;
    ~Done() { n.fetch_sub(1, std::memory_order_relaxed); }
  } done{counters_.in_flight};
  try {
    return handler_->Handle(delivery, retries);
  } catch (const WorkerDeath&) {
    throw;
  } catch (const std::exception& e) {
    return Outcome::Retry(std::string("handler failed: ") + e.what());
  } catch (...) {
    return Outcome::Retry("handler failed: unknown exception");
  }
}

void Worker::Cycle(amqp::Delivery first, std::stop_token stop) {
  std::optional<amqp::Delivery> next = std::move(first);
  int taken = 0;
  while (next) {
    const int retries = RetriesOf(next->message);
    Outcome outcome;
    try {
      outcome = Handle(*next, retries);
    } catch (const WorkerDeath&) {
      // Settle what this cycle answered already; the dying message itself goes back.
      Flush(stop);
      throw;
    }
    Apply(std::move(*next), std::move(outcome), retries, stop);
    next.reset();
    if (!connection_ || ++taken >= broker_.prefetch || stop.stop_requested()) break;
    // Only what has arrived already: a cycle never waits for more.
    auto more = connection_->Next(0ms);
    if (!more) {
      Lost(more.error());
      return;
    }
    next = std::move(*more);
  }
  if (connection_) Flush(stop);
}

void Worker::ProcessBatch(amqp::Delivery first, std::stop_token stop) {
  std::vector<amqp::Delivery> batch;
  batch.push_back(std::move(first));
  const auto until = clock_.Now() + std::chrono::milliseconds(broker_.batch_ms);
  while (static_cast<int>(batch.size()) < broker_.prefetch && !stop.stop_requested()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - clock_.Now());
    if (left.count() <= 0) break;
    auto next = connection_->Next(left);
    if (!next) {
      // The connection is gone and with it every unacked delivery: the broker redelivers them.
      Lost(next.error());
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
    clock_.Sleep(stop, std::chrono::milliseconds(delay));
    for (const auto& d : batch) {
      if (!connection_->Reject(d.delivery_tag, true)) break;
    }
    return;
  }
  batch_failures_ = 0;
  for (size_t i = 0; i < batch.size() && connection_; ++i) {
    const int retries = RetriesOf(batch[i].message);
    Apply(std::move(batch[i]), std::move(outcomes[i]), retries, stop);
  }
  if (connection_) Flush(stop);
}

Result<void> Worker::OpenConfirmed(bool redeclare) {
  if (confirmed_) return Ok();
  auto c = links_.OpenConfirmed(broker_, redeclare);
  if (!c) return std::unexpected(c.error());
  confirmed_ = std::move(*c);
  return Ok();
}

Result<void> Worker::PublishConfirmed(const amqp::Publication& publication) {
  // Two tries: the second on a fresh channel that first redeclares the broker's queues, so a
  // retry queue or DLQ deleted by hand (the publish comes back unroutable) is put back.
  Result<void> result = Ok();
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (auto opened = OpenConfirmed(attempt > 0); !opened) return opened;
    result = confirmed_->PublishMany({publication});
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

void Worker::Settle(uint64_t delivery_tag) {
  ack_upto_ = std::max(ack_upto_, delivery_tag);
  ++to_ack_;
}

void Worker::Apply(amqp::Delivery delivery, Outcome outcome, int retries, std::stop_token stop) {
  if (outcome.action == Outcome::Action::kRetry && retries >= broker_.max_retries) {
    outcome.action = Outcome::Action::kPark;
    outcome.reason = "gave up after " + std::to_string(retries) + " retries: " + outcome.reason;
    outcome.reply = handler_->ParkedReply(delivery, outcome.reason);
  }
  const amqp::Message& in = delivery.message;

  if (outcome.action == Outcome::Action::kAck) {
    if (!outcome.forward.empty() || outcome.staged.has_value()) {
      waiting_.push_back(Waiting{std::move(delivery), std::move(outcome)});
      return;
    }
    if (outcome.reply) Reply(in, std::move(*outcome.reply));
    Settle(delivery.delivery_tag);
    return;
  }

  // Retry or park: the copy must be safely stored (confirmed) before the original is acked.
  amqp::Publication copy{"", "", in, true};
  amqp::Message& m = copy.message;
  // The broker refuses a user_id other than the publisher's login (ours, now); the sender's is
  // kept in a header so the audit record still names it after a retry.
  if (!m.user_id.empty()) m.headers[kUserHeader] = m.user_id;
  m.user_id.clear();
  m.delivery_mode = 2;
  m.expiration.clear();
  m.headers[kErrorHeader] = outcome.reason.substr(0, 1024);
  if (outcome.action == Outcome::Action::kRetry) {
    const auto& delays = broker_.retry_backoff_ms;
    const int64_t delay = delays[std::min<size_t>(retries, delays.size() - 1)];
    m.headers[kRetriesHeader] = int64_t{retries + 1};
    m.expiration = std::to_string(delay);
    copy.routing_key = amqp::RetryQueueName(broker_.name);
    spdlog::warn("broker {}: retry {} in {} ms: {}", broker_.name, retries + 1, delay,
                 outcome.reason);
    if (auto moved = PublishConfirmed(copy); !moved) {
      // Wait before handing it back, or a broker that refuses the move would have us spin.
      spdlog::warn("broker {} worker {}: retry not stored ({}); requeueing in {} ms", broker_.name,
                   index_, moved.error().message, delay);
      clock_.Sleep(stop, std::chrono::milliseconds(delay));
      (void)connection_->Reject(delivery.delivery_tag, true);
      return;
    }
    counters_.retried.fetch_add(1, std::memory_order_relaxed);
    Settle(delivery.delivery_tag);
    return;
  }

  m.headers[kRetriesHeader] = int64_t{retries};
  copy.exchange = amqp::kDeadLetterExchange;
  copy.routing_key = amqp::QueueName(broker_.name);
  spdlog::error("broker {}: parking in {}: {}", broker_.name, amqp::DlqName(broker_.name),
                outcome.reason);
  if (auto moved = PublishConfirmed(copy); !moved) {
    // Unlike a retry there is no later: keep the message in its queue until it can be parked.
    spdlog::warn("broker {} worker {}: park not stored ({}); requeueing in 1 s", broker_.name,
                 index_, moved.error().message);
    clock_.Sleep(stop, 1s);
    (void)connection_->Reject(delivery.delivery_tag, true);
    return;
  }
  counters_.parked.fetch_add(1, std::memory_order_relaxed);
  if (outcome.reply) Reply(in, std::move(*outcome.reply));
  Settle(delivery.delivery_tag);
}

void Worker::Flush(std::stop_token stop) {
  if (!waiting_.empty()) {
    std::vector<Handler::Staged> staged;
    for (Waiting& w : waiting_) {
      if (w.outcome.staged.has_value()) staged.push_back(Handler::Staged{w.delivery, w.outcome});
    }
    if (!staged.empty()) {
      try {
        handler_->StoreStaged(staged);
      } catch (const std::exception& e) {
        // Which parts were stored is unknown: hand those deliveries back (a redelivered one finds
        // what was stored for it), after a pause so a persistent fault does not spin.
        spdlog::error("broker {} worker {}: storing the cycle's staged work failed: {}",
                      broker_.name, index_, e.what());
        clock_.Sleep(stop, 1s);
        std::erase_if(waiting_, [&](const Waiting& w) {
          if (!w.outcome.staged.has_value()) return false;
          (void)connection_->Reject(w.delivery.delivery_tag, true);
          return true;
        });
      }
    }
    std::vector<amqp::Publication> batch;
    for (const Waiting& w : waiting_) {
      for (const Outcome::Forward& f : w.outcome.forward) batch.push_back(PublicationOf(f));
    }
    // One confirm for the whole cycle. A message no queue took comes back by routing key: the
    // deliveries that sent one to that key are tried again one by one, the others are done.
    std::vector<std::string> unroutable;
    Result<void> sent = Ok();
    if (!batch.empty()) {
      sent = OpenConfirmed(false);
      if (sent) sent = confirmed_->PublishMany(batch, &unroutable);
      if (!sent) confirmed_.reset();
    }
    const std::set<std::string> returned(unroutable.begin(), unroutable.end());
    // Those not stored whole are tried one by one first (which can take a while); the others are
    // answered below, together with the cycle's ack.
    std::erase_if(waiting_, [&](Waiting& w) {
      const bool stored =
          sent && std::none_of(w.outcome.forward.begin(), w.outcome.forward.end(),
                               [&](const Outcome::Forward& f) {
                                 return f.must_route && returned.contains(f.routing_key);
                               });
      if (!stored) Resolve(w, stop);
      return !stored;
    });
  }
  if (waiting_.empty() && to_ack_ == 0) return;
  // The replies and the ack leave in one write: a cycle's point reads are answered together.
  (void)connection_->Coalesce(true);
  for (Waiting& w : waiting_) {
    if (w.outcome.reply) Reply(w.delivery.message, std::move(*w.outcome.reply));
    Settle(w.delivery.delivery_tag);
  }
  waiting_.clear();
  const size_t acked = to_ack_;
  const bool ack_made = to_ack_ > 0 && connection_->Ack(ack_upto_, true).has_value();
  ack_upto_ = 0;
  to_ack_ = 0;
  if (auto sent = connection_->Coalesce(false); !sent) {
    // The connection is gone, and with it the deliveries: the broker hands them out again.
    spdlog::warn("broker {} worker {}: answers not sent: {}", broker_.name, index_,
                 sent.error().message);
    return;
  }
  if (ack_made) counters_.acked.fetch_add(acked, std::memory_order_relaxed);
}

void Worker::Resolve(Waiting& w, std::stop_token stop) {
  Outcome& outcome = w.outcome;
  for (const Outcome::Forward& f : outcome.forward) {
    auto sent = PublishConfirmed(PublicationOf(f));
    if (sent) continue;
    if (!f.must_route) {
      spdlog::warn("broker {} worker {}: {} not published: {}", broker_.name, index_, f.routing_key,
                   sent.error().message);
      continue;
    }
    spdlog::warn("broker {} worker {}: {} not stored: {}", broker_.name, index_, f.routing_key,
                 sent.error().message);
    if (outcome.unforwarded_reply) {
      outcome.reply = std::move(outcome.unforwarded_reply);
      break;
    }
    // The work is not handed on: answer nothing yet, and let the message come again.
    clock_.Sleep(stop, 1s);
    (void)connection_->Reject(w.delivery.delivery_tag, true);
    return;
  }
  if (outcome.reply) Reply(w.delivery.message, std::move(*outcome.reply));
  Settle(w.delivery.delivery_tag);
}

}  // namespace beds::brokers
