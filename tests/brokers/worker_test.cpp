// The worker's delivery rules against an in-memory broker (fake_broker.hpp): what is published,
// stored, acked and handed back, and in which order. The same rules run against a real RabbitMQ
// in the integration tier (node_test.cpp: retries, parking, worker death, broker restarts).
#include "brokers/worker.hpp"

#include <gtest/gtest.h>

#include <any>
#include <atomic>
#include <functional>

#include "amqp/topology.hpp"
#include "brokers/fake_broker.hpp"

namespace beds::brokers {
namespace {

using namespace std::chrono_literals;
using testing::FakeBroker;
using testing::FakeClock;
using testing::Step;

// Answers each delivery with what the test says.
class ScriptedHandler final : public Handler {
 public:
  using Script = std::function<Outcome(const amqp::Delivery&, int)>;
  explicit ScriptedHandler(Script script) : script_(std::move(script)) {}
  Outcome Handle(const amqp::Delivery& delivery, int retries) override {
    calls.fetch_add(1);
    return script_(delivery, retries);
  }
  std::string ParkedReply(const amqp::Delivery&, const std::string& reason) override {
    return "parked: " + reason;
  }
  // Stores what outcomes staged (a string each): one whose value is "fail" is answered an error,
  // one without a reply yet (staged work that is the answer) gets "done {value}".
  void StoreStaged(const std::vector<Staged>& cycle) override {
    store_calls.fetch_add(1);
    for (const Staged& s : cycle) {
      stored_together.push_back(std::any_cast<std::string>(s.outcome.staged));
      if (!s.outcome.reply) s.outcome.reply = "done " + stored_together.back();
      if (std::any_cast<std::string>(s.outcome.staged) == "fail") {
        s.outcome.forward.clear();
        s.outcome.reply = "not stored";
      }
    }
  }
  std::atomic<int> calls{0};
  std::atomic<int> store_calls{0};
  std::vector<std::string> stored_together;  // the worker's thread only, read after Stop()

 private:
  Script script_;
};

amqp::Message Request(const std::string& id, int64_t retries = 0) {
  amqp::Message m;
  m.body = id;
  m.correlation_id = id;
  m.reply_to = "amq.rabbitmq.reply-to.client";
  m.message_id = id;
  if (retries > 0) m.headers[kRetriesHeader] = retries;
  return m;
}

Outcome::Forward Job(const std::string& id, const std::string& queue = "beds.jobs") {
  Outcome::Forward f;
  f.routing_key = queue;
  f.message.body = "job for " + id;
  f.message.delivery_mode = 2;
  return f;
}

class WorkerTest : public ::testing::Test {
 protected:
  WorkerTest() {
    settings.name = "b";
    settings.prefetch = 16;
    settings.max_retries = 3;
    settings.retry_backoff_ms = {100, 1000};
  }

  void Start(ScriptedHandler::Script script) {
    handler = std::make_shared<ScriptedHandler>(std::move(script));
    worker = std::make_unique<Worker>(0, settings, broker, clock, handler, counters, [] {});
  }

  // Stops the worker and returns what it did.
  std::vector<Step> Stop() {
    worker.reset();
    return broker.steps();
  }

  // Index of the first step matching `pred`, or -1.
  static int Find(const std::vector<Step>& steps, const std::function<bool(const Step&)>& pred) {
    for (size_t i = 0; i < steps.size(); ++i) {
      if (pred(steps[i])) return static_cast<int>(i);
    }
    return -1;
  }
  static int ReplyTo(const std::vector<Step>& steps, const std::string& id) {
    return Find(steps, [&](const Step& s) {
      return s.kind == Step::Kind::kReply && s.message.correlation_id == id;
    });
  }
  // The ack step that settles delivery `tag`.
  static int AckOf(const std::vector<Step>& steps, uint64_t tag) {
    return Find(steps, [&](const Step& s) {
      return s.kind == Step::Kind::kAck && (s.tag == tag || (s.flag && s.tag > tag));
    });
  }

  config::BrokerSettings settings;
  FakeBroker broker;
  FakeClock clock;
  PoolCounters counters;
  std::shared_ptr<ScriptedHandler> handler;
  std::unique_ptr<Worker> worker;
};

bool Drained(const FakeBroker& b) { return b.ready() == 0 && b.unacked() == 0; }

TEST_F(WorkerTest, RepliesBeforeAckingAndAcksACycleAtOnce) {
  for (const char* id : {"a", "b", "c"}) broker.Enqueue(Request(id));
  Start([](const amqp::Delivery& d, int) { return Outcome::Ack("answer " + d.message.body); });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();

  // The three were waiting together: one cycle, answered in order as each was handled, settled
  // by one ack.
  const std::vector<Step>& sent = steps;
  ASSERT_EQ(sent.size(), 6u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(sent[i].kind, Step::Kind::kReply);
    EXPECT_EQ(sent[i].routing_key, "amq.rabbitmq.reply-to.client");
    EXPECT_EQ(sent[i].message.body, std::string("answer ") + "abc"[i]);
  }
  EXPECT_EQ(sent[3].kind, Step::Kind::kCoalesce);
  EXPECT_TRUE(sent[3].flag);
  EXPECT_EQ(sent[4].kind, Step::Kind::kAck);
  EXPECT_EQ(sent[4].tag, 3u);
  EXPECT_TRUE(sent[4].flag) << "one multiple-ack for the cycle";
  EXPECT_EQ(sent[5].kind, Step::Kind::kCoalesce);
  EXPECT_FALSE(sent[5].flag) << "the ack leaves at the end of the coalesced write";
  EXPECT_EQ(counters.acked.load(), 3u);
  EXPECT_EQ(counters.consumed.load(), 3u);
}

TEST_F(WorkerTest, ACycleTakesAtMostPrefetch) {
  settings.prefetch = 2;
  for (const char* id : {"a", "b", "c", "d", "e"}) broker.Enqueue(Request(id));
  Start([](const amqp::Delivery&, int) { return Outcome::Ack("ok"); });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();
  int acks = 0;
  for (const Step& s : steps) acks += s.kind == Step::Kind::kAck ? 1 : 0;
  EXPECT_EQ(acks, 3) << "cycles of 2, 2 and 1";
  EXPECT_EQ(counters.acked.load(), 5u);
}

TEST_F(WorkerTest, ARetryIsStoredInTheRetryQueueWithItsBackoffBeforeTheAck) {
  broker.Enqueue(Request("r", 1));
  Start([](const amqp::Delivery&, int) { return Outcome::Retry("database away"); });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();

  const int stored = Find(steps, [](const Step& s) { return s.kind == Step::Kind::kStore; });
  ASSERT_GE(stored, 0);
  const Step& copy = steps[static_cast<size_t>(stored)];
  EXPECT_EQ(copy.exchange, "");
  EXPECT_EQ(copy.routing_key, amqp::RetryQueueName("b"));
  EXPECT_EQ(std::get<int64_t>(copy.message.headers.at(kRetriesHeader)), 2);
  EXPECT_EQ(copy.message.expiration, "1000") << "the second delay: this is retry 2";
  EXPECT_EQ(std::get<std::string>(copy.message.headers.at(kErrorHeader)), "database away");
  EXPECT_EQ(copy.message.delivery_mode, 2);
  EXPECT_GT(AckOf(steps, 1), stored) << "acked only once the copy is stored";
  EXPECT_EQ(ReplyTo(steps, "r"), -1) << "a retried request is not answered yet";
  EXPECT_EQ(counters.retried.load(), 1u);
}

TEST_F(WorkerTest, AfterMaxRetriesTheMessageIsParkedAndAnswered) {
  broker.Enqueue(Request("p", 3));
  Start([](const amqp::Delivery&, int) { return Outcome::Retry("still broken"); });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();

  const int stored = Find(steps, [](const Step& s) { return s.kind == Step::Kind::kStore; });
  ASSERT_GE(stored, 0);
  const Step& parked = steps[static_cast<size_t>(stored)];
  EXPECT_EQ(parked.exchange, amqp::kDeadLetterExchange);
  EXPECT_EQ(parked.routing_key, amqp::QueueName("b"));
  EXPECT_NE(std::get<std::string>(parked.message.headers.at(kErrorHeader))
                .find("gave up after 3 retries: still broken"),
            std::string::npos);
  const int reply = ReplyTo(steps, "p");
  ASSERT_GT(reply, stored) << "answered once parked";
  EXPECT_EQ(steps[static_cast<size_t>(reply)].message.body,
            "parked: gave up after 3 retries: still broken");
  EXPECT_GT(AckOf(steps, 1), reply);
  EXPECT_EQ(counters.parked.load(), 1u);
}

TEST_F(WorkerTest, ARetryThatCannotBeStoredIsHandedBackAfterItsDelay) {
  broker.Enqueue(Request("x"));
  broker.Unbind(amqp::RetryQueueName("b"));  // both tries come back unroutable
  // A retry the first time; handed back, it comes again (redelivered) and is answered.
  Start([](const amqp::Delivery& d, int) {
    return d.redelivered ? Outcome::Ack("second time") : Outcome::Retry("database away");
  });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();
  const int rejected = Find(steps, [](const Step& s) { return s.kind == Step::Kind::kReject; });
  ASSERT_GE(rejected, 0);
  EXPECT_TRUE(steps[static_cast<size_t>(rejected)].flag) << "requeued, not dropped";
  EXPECT_EQ(Find(steps, [](const Step& s) { return s.kind == Step::Kind::kStore; }), -1);
  EXPECT_GT(ReplyTo(steps, "x"), rejected);
  ASSERT_FALSE(clock.sleeps().empty());
  EXPECT_EQ(clock.sleeps().front(), 100ms) << "waits the retry's delay before handing it back";
  EXPECT_EQ(broker.confirmed_opens(), 2) << "the second try redeclares on a fresh channel";
  EXPECT_EQ(counters.retried.load(), 0u);
}

TEST_F(WorkerTest, ForwardsAreStoredTogetherBeforeTheirRepliesAndTheAck) {
  for (const char* id : {"a", "b", "c"}) broker.Enqueue(Request(id));
  Start([](const amqp::Delivery& d, int) {
    Outcome o = Outcome::Ack("ticket " + d.message.body);
    o.forward.push_back(Job(d.message.body));
    return o;
  });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();

  EXPECT_EQ(broker.confirm_batches(), 1u) << "one confirm for the cycle's three jobs";
  int last_store = -1, stores = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    if (steps[i].kind != Step::Kind::kStore) continue;
    last_store = static_cast<int>(i);
    ++stores;
  }
  ASSERT_EQ(stores, 3);
  for (const char* id : {"a", "b", "c"}) {
    const int reply = ReplyTo(steps, id);
    EXPECT_GT(reply, last_store) << id << " answered only once every job is stored";
  }
  EXPECT_GT(AckOf(steps, 3), ReplyTo(steps, "c"));
}

TEST_F(WorkerTest, StagedWorkIsStoredOnceForTheCycleBeforeTheForwards) {
  for (const char* id : {"a", "fail", "c"}) broker.Enqueue(Request(id));
  Start([](const amqp::Delivery& d, int) {
    Outcome o = Outcome::Ack("ticket " + d.message.body);
    o.forward.push_back(Job(d.message.body));
    o.staged = d.message.body;
    return o;
  });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();
  EXPECT_EQ(handler->store_calls.load(), 1);
  EXPECT_EQ(handler->stored_together, (std::vector<std::string>{"a", "fail", "c"}));
  int stored = 0;
  for (const Step& s : steps) stored += s.kind == Step::Kind::kStore ? 1 : 0;
  EXPECT_EQ(stored, 2) << "the job whose ticket failed is not published";
  EXPECT_EQ(steps[static_cast<size_t>(ReplyTo(steps, "fail"))].message.body, "not stored");
  EXPECT_EQ(steps[static_cast<size_t>(ReplyTo(steps, "a"))].message.body, "ticket a");
  EXPECT_EQ(counters.acked.load(), 3u);
}

TEST_F(WorkerTest, StagedWorkWithoutForwardsIsDoneAtTheCycleEndThenAnswered) {
  for (const char* id : {"w1", "ping", "w2"}) broker.Enqueue(Request(id));
  Start([](const amqp::Delivery& d, int) {
    if (d.message.body == "ping") return Outcome::Ack("pong");
    Outcome o;  // answered by StoreStaged (a cycle's exactly-once writes)
    o.staged = d.message.body;
    return o;
  });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();
  EXPECT_EQ(handler->store_calls.load(), 1);
  EXPECT_EQ(handler->stored_together, (std::vector<std::string>{"w1", "w2"}));
  EXPECT_EQ(Find(steps, [](const Step& s) { return s.kind == Step::Kind::kStore; }), -1)
      << "nothing to publish, so no confirmed channel";
  ASSERT_GE(ReplyTo(steps, "w1"), 0);
  EXPECT_EQ(steps[static_cast<size_t>(ReplyTo(steps, "w1"))].message.body, "done w1");
  EXPECT_EQ(steps[static_cast<size_t>(ReplyTo(steps, "w2"))].message.body, "done w2");
  EXPECT_LT(ReplyTo(steps, "ping"), ReplyTo(steps, "w1")) << "the ping did not wait";
  EXPECT_LT(ReplyTo(steps, "w2"), AckOf(steps, 3));
  // The staged answers and the ack leave in one coalesced write; the ping's went at once.
  const int on =
      Find(steps, [](const Step& s) { return s.kind == Step::Kind::kCoalesce && s.flag; });
  const int off =
      Find(steps, [](const Step& s) { return s.kind == Step::Kind::kCoalesce && !s.flag; });
  EXPECT_LT(ReplyTo(steps, "ping"), on);
  EXPECT_LT(on, ReplyTo(steps, "w1"));
  EXPECT_GT(off, AckOf(steps, 3));
  EXPECT_EQ(counters.acked.load(), 3u);
}

TEST_F(WorkerTest, APlainAnswerInTheSameCycleDoesNotWaitForTheForwards) {
  broker.Enqueue(Request("job"));
  broker.Enqueue(Request("ping"));
  Start([](const amqp::Delivery& d, int) {
    Outcome o = Outcome::Ack("answer " + d.message.body);
    if (d.message.body == "job") o.forward.push_back(Job("job"));
    return o;
  });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();
  const int store = Find(steps, [](const Step& s) { return s.kind == Step::Kind::kStore; });
  EXPECT_LT(ReplyTo(steps, "ping"), store) << "the ping was answered as soon as it ran";
  EXPECT_GT(ReplyTo(steps, "job"), store);
}

TEST_F(WorkerTest, AnUnroutableForwardAnswersTheUnforwardedReply) {
  broker.Enqueue(Request("a"));
  broker.Enqueue(Request("b"));
  broker.Unbind("beds.nowhere");
  Start([](const amqp::Delivery& d, int) {
    Outcome o = Outcome::Ack("queued " + d.message.body);
    // "a"'s job has no queue; "b"'s does: only "a" is answered the fallback.
    o.forward.push_back(Job(d.message.body, d.message.body == "a" ? "beds.nowhere" : "beds.jobs"));
    o.unforwarded_reply = "no queue for " + d.message.body;
    return o;
  });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();
  EXPECT_EQ(steps[static_cast<size_t>(ReplyTo(steps, "a"))].message.body, "no queue for a");
  EXPECT_EQ(steps[static_cast<size_t>(ReplyTo(steps, "b"))].message.body, "queued b");
  int stored = 0;
  for (const Step& s : steps) stored += s.kind == Step::Kind::kStore ? 1 : 0;
  EXPECT_EQ(stored, 1) << "b's job once, a's never";
  EXPECT_EQ(counters.acked.load(), 2u);
}

TEST_F(WorkerTest, AnUnstorableForwardWithoutFallbackHandsTheMessageBackUnanswered) {
  broker.Enqueue(Request("a"));
  broker.Unbind("beds.nowhere");
  Start([](const amqp::Delivery& d, int) {
    Outcome o = Outcome::Ack("queued");
    o.forward.push_back(Job(d.message.body, "beds.nowhere"));
    return o;
  });
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& b) {
    return std::any_of(b.steps().begin(), b.steps().end(),
                       [](const Step& s) { return s.kind == Step::Kind::kReject; });
  }));
  const auto steps = Stop();
  EXPECT_EQ(ReplyTo(steps, "a"), -1);
  EXPECT_EQ(clock.sleeps().at(0), 1000ms) << "a pause before it comes again";
  EXPECT_EQ(counters.acked.load(), 0u);
}

TEST_F(WorkerTest, ALostConfirmIsTriedAgainOnAFreshChannel) {
  broker.Enqueue(Request("a"));
  broker.FailConfirms(1);
  Start([](const amqp::Delivery& d, int) {
    Outcome o = Outcome::Ack("queued");
    o.forward.push_back(Job(d.message.body));
    return o;
  });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();
  EXPECT_EQ(broker.confirmed_opens(), 2);
  const int store = Find(steps, [](const Step& s) { return s.kind == Step::Kind::kStore; });
  ASSERT_GE(store, 0);
  EXPECT_GT(ReplyTo(steps, "a"), store);
  EXPECT_EQ(counters.acked.load(), 1u);
}

TEST_F(WorkerTest, AWorkerThatDiesHandsItsMessageBackAndSettlesWhatItAnswered) {
  broker.Enqueue(Request("fine"));
  broker.Enqueue(Request("fatal"));
  Start([](const amqp::Delivery& d, int) -> Outcome {
    if (d.message.body == "fatal") throw WorkerDeath("injected");
    return Outcome::Ack("ok");
  });
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& b) { return b.ready() == 1; }));
  for (int i = 0; i < 500 && !worker->exited(); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(worker->exited());
  EXPECT_TRUE(worker->died());
  const auto steps = Stop();
  EXPECT_GE(ReplyTo(steps, "fine"), 0);
  EXPECT_GE(AckOf(steps, 1), 0) << "the answered message is settled before the worker goes";
  ASSERT_EQ(broker.queue().size(), 1u);
  EXPECT_EQ(broker.queue().front().message.body, "fatal");
  EXPECT_TRUE(broker.queue().front().redelivered) << "the broker hands it to another worker";
}

TEST_F(WorkerTest, AThrowingHandlerIsRetried) {
  broker.Enqueue(Request("t"));
  Start([](const amqp::Delivery&, int) -> Outcome { throw std::runtime_error("bug"); });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  const auto steps = Stop();
  const int store = Find(steps, [](const Step& s) { return s.kind == Step::Kind::kStore; });
  ASSERT_GE(store, 0);
  EXPECT_EQ(
      std::get<std::string>(steps[static_cast<size_t>(store)].message.headers.at(kErrorHeader)),
      "handler failed: bug");
}

TEST_F(WorkerTest, ReconnectsWithABackoffThatGrows) {
  broker.FailConsumerOpens(3);
  broker.Enqueue(Request("late"));
  Start([](const amqp::Delivery&, int) { return Outcome::Ack("ok"); });
  ASSERT_TRUE(broker.WaitUntil(Drained));
  Stop();
  const auto sleeps = clock.sleeps();
  ASSERT_GE(sleeps.size(), 3u);
  EXPECT_EQ(sleeps[0], 100ms);
  EXPECT_EQ(sleeps[1], 200ms);
  EXPECT_EQ(sleeps[2], 400ms);
  EXPECT_EQ(broker.consumer_opens(), 4);
  EXPECT_EQ(counters.reconnects.load(), 1u);
}

TEST_F(WorkerTest, ALostConnectionHandsBackWhatWasNotAcked) {
  broker.Enqueue(Request("a"));
  std::atomic<bool> broke{false};
  Start([&](const amqp::Delivery& d, int) {
    // The connection breaks while the first delivery runs: its reply and ack cannot go out, so
    // it comes again, redelivered, on the next connection.
    if (!broke.exchange(true)) broker.BreakConsumer();
    return Outcome::Ack(d.redelivered ? "second" : "first");
  });
  ASSERT_TRUE(
      broker.WaitUntil([](const FakeBroker& b) { return Drained(b) && b.consumer_opens() >= 2; }));
  Stop();
  EXPECT_EQ(handler->calls.load(), 2);
  EXPECT_EQ(counters.reconnects.load(), 1u);
}

}  // namespace
}  // namespace beds::brokers
