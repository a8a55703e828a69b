// The pool's intake against an in-memory broker (fake_broker.hpp): deliveries dealt to the
// workers' lanes, their replies written before their acks, a lane's acks settling only its own
// deliveries, quick answers on the intake's thread, and what a dead worker or a broken connection
// hands back. Workers over real lanes run in every integration test of a node.
#include "brokers/intake.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <map>
#include <set>

#include "brokers/fake_broker.hpp"

namespace beds::brokers {
namespace {

using namespace std::chrono_literals;
using testing::FakeBroker;
using testing::Step;

amqp::Message Request(const std::string& id) {
  amqp::Message m;
  m.body = id;
  m.correlation_id = id;
  m.reply_to = "amq.rabbitmq.reply-to.client";
  return m;
}

// Answers "ping" at once; anything else is a worker's, and "m…" merges with its kind.
class PingHandler final : public Handler {
 public:
  Outcome Handle(const amqp::Delivery&, int) override { return Outcome::Ack("handled"); }
  std::string ParkedReply(const amqp::Delivery&, const std::string&) override { return ""; }
  std::optional<std::string> Quick(const amqp::Delivery& d) override {
    if (d.message.body != "ping") return std::nullopt;
    quick_calls.fetch_add(1);
    return "pong";
  }
  // "m…" stands for a point read.
  bool Mergeable(const amqp::Delivery& d) override { return d.message.body.starts_with("m"); }
  std::atomic<int> quick_calls{0};
};

class IntakeTest : public ::testing::Test {
 protected:
  IntakeTest() {
    settings.name = "b";
    settings.instances = 2;
    settings.prefetch = 2;
  }
  ~IntakeTest() override {
    if (intake) intake->Stop();
  }

  void Start(std::shared_ptr<Handler> quick = nullptr) {
    intake = std::make_unique<Intake>(settings, broker, SteadyClock(), std::move(quick), counters);
    intake->Start();
  }
  std::unique_ptr<amqp::Channel> Lane() {
    auto lane = intake->OpenConsumer(settings);
    EXPECT_TRUE(lane) << (lane ? "" : lane.error().message);
    return lane ? std::move(lane->channel) : nullptr;
  }
  // Every delivery dealt to `lane` within a short wait.
  static std::vector<amqp::Delivery> TakeAll(amqp::Channel& lane, size_t expected) {
    std::vector<amqp::Delivery> out;
    while (out.size() < expected) {
      auto d = lane.Next(5s);
      if (!d || !*d) break;
      out.push_back(std::move(**d));
    }
    return out;
  }
  // Replies to each delivery, then settles them all with one multiple-ack, as a worker's cycle
  // does.
  static void Answer(amqp::Channel& lane, const std::vector<amqp::Delivery>& got) {
    for (const auto& d : got) {
      amqp::Message reply;
      reply.body = "answer " + d.message.body;
      reply.correlation_id = d.message.correlation_id;
      ASSERT_TRUE(lane.Publish("", d.message.reply_to, reply));
    }
    ASSERT_TRUE(lane.Ack(got.back().delivery_tag, true));
  }
  static size_t Count(const std::vector<Step>& steps, Step::Kind kind) {
    size_t n = 0;
    for (const Step& s : steps) n += s.kind == kind;
    return n;
  }

  config::BrokerSettings settings;
  FakeBroker broker;
  PoolCounters counters;
  std::unique_ptr<Intake> intake;
};

TEST_F(IntakeTest, DealsToEachLaneAtMostItsPrefetchAndWritesRepliesBeforeAcks) {
  Start();
  auto a = Lane();
  auto b = Lane();
  for (int i = 0; i < 4; ++i) broker.Enqueue(Request("r" + std::to_string(i)));
  auto got_a = TakeAll(*a, 2);
  auto got_b = TakeAll(*b, 2);
  ASSERT_EQ(got_a.size(), 2u);
  ASSERT_EQ(got_b.size(), 2u);
  // Each lane holds at most prefetch (2): nothing more is waiting for either.
  EXPECT_FALSE(*a->Next(0ms));
  EXPECT_FALSE(*b->Next(0ms));
  Answer(*a, got_a);
  Answer(*b, got_b);
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& f) { return f.unacked() == 0; }));
  const auto steps = broker.steps();
  EXPECT_EQ(Count(steps, Step::Kind::kReply), 4u);
  // Each delivery's ack (its own, or a multiple-ack above it) comes after its reply.
  auto index_of = [&](const std::function<bool(const Step&)>& pred) {
    for (size_t i = 0; i < steps.size(); ++i) {
      if (pred(steps[i])) return static_cast<int>(i);
    }
    return -1;
  };
  for (const auto* got : {&got_a, &got_b}) {
    for (const auto& d : *got) {
      const int reply = index_of([&](const Step& s) {
        return s.kind == Step::Kind::kReply && s.message.correlation_id == d.message.body;
      });
      const int ack = index_of([&](const Step& s) {
        return s.kind == Step::Kind::kAck &&
               (s.tag == d.delivery_tag || (s.flag && s.tag > d.delivery_tag));
      });
      ASSERT_GE(reply, 0) << d.message.body;
      EXPECT_LT(reply, ack) << d.message.body;
    }
  }
}

TEST_F(IntakeTest, MergeableDeliveriesGoToOneLaneAndTheOthersAreSharedByIdleWorkers) {
  settings.prefetch = 8;
  Start(std::make_shared<PingHandler>());
  auto a = Lane();
  auto b = Lane();
  // What each lane is dealt within a short wait, taken.
  auto take = [&](size_t expected) {
    std::pair<size_t, size_t> got{0, 0};
    const auto until = std::chrono::steady_clock::now() + 5s;
    while (got.first + got.second < expected && std::chrono::steady_clock::now() < until) {
      if (auto d = a->Next(1ms); d && *d) ++got.first;
      if (auto d = b->Next(1ms); d && *d) ++got.second;
    }
    return got;
  };
  // Calls that arrive together at idle workers are shared by them.
  broker.EnqueueAll({Request("c0"), Request("c1"), Request("c2"), Request("c3")});
  const auto calls = take(4);
  EXPECT_EQ(calls.first, 2u) << "one worker was given the calls while the other waited";
  EXPECT_EQ(calls.second, 2u) << "one worker was given the calls while the other waited";
  // Point reads that arrive together meet in one worker's cycle (one query).
  broker.EnqueueAll({Request("m0"), Request("m1"), Request("m2")});
  const auto reads = take(3);
  EXPECT_EQ(reads.first + reads.second, 3u);
  EXPECT_TRUE(reads.first == 0 || reads.second == 0)
      << "a: " << reads.first << ", b: " << reads.second;
}

TEST_F(IntakeTest, ALanesCoalescedAnswersLeaveTogetherRepliesBeforeTheAck) {
  Start();
  auto a = Lane();
  broker.EnqueueAll({Request("r0"), Request("r1")});
  auto got = TakeAll(*a, 2);
  ASSERT_EQ(got.size(), 2u);
  ASSERT_TRUE(a->Coalesce(true));
  Answer(*a, got);
  ASSERT_FALSE(HasFatalFailure());
  size_t written = 0;
  broker.WaitUntil([&](const FakeBroker& f) {
    written = f.steps().size();
    return true;
  });
  EXPECT_EQ(written, 0u) << "held answers are not written before Coalesce(false)";
  ASSERT_TRUE(a->Coalesce(false));
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& f) { return f.unacked() == 0; }));
  const auto steps = broker.steps();
  // On the connection: coalesce on, the two replies, the ack (written by the lane or, after
  // kAckAtMost, by the intake), all after the replies.
  std::vector<Step::Kind> kinds;
  for (const Step& s : steps) kinds.push_back(s.kind);
  ASSERT_GE(kinds.size(), 4u);
  EXPECT_EQ(kinds[0], Step::Kind::kCoalesce);
  EXPECT_TRUE(steps[0].flag);
  EXPECT_EQ(kinds[1], Step::Kind::kReply);
  EXPECT_EQ(kinds[2], Step::Kind::kReply);
  EXPECT_GE(Count(steps, Step::Kind::kAck), 1u);
}

TEST_F(IntakeTest, ALanesMultipleAckSettlesOnlyItsOwnDeliveries) {
  Start();
  auto a = Lane();
  auto b = Lane();
  for (int i = 0; i < 4; ++i) broker.Enqueue(Request("r" + std::to_string(i)));
  auto got_a = TakeAll(*a, 2);
  auto got_b = TakeAll(*b, 2);
  ASSERT_EQ(got_a.size() + got_b.size(), 4u);
  // The broker's own tags interleave between the lanes; a multiple-ack of the higher of a's must
  // not settle b's.
  std::set<uint64_t> tags_b;
  for (const auto& d : got_b) tags_b.insert(d.delivery_tag);
  ASSERT_TRUE(a->Ack(std::max(got_a[0].delivery_tag, got_a[1].delivery_tag), true));
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& f) { return f.unacked() == 2; }));
  // Settling is idempotent per lane: b's deliveries are still b's to ack.
  EXPECT_FALSE(a->Ack(*tags_b.begin(), false));
  ASSERT_TRUE(b->Ack(*tags_b.rbegin(), true));
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& f) { return f.unacked() == 0; }));
}

TEST_F(IntakeTest, AMultipleAckSettlesWhatTheLaneTookUpToItNotLowerTagsTakenLater) {
  Start();
  // Both wait for a lane, then both go to the first one.
  broker.Enqueue(Request("r1"));
  broker.Enqueue(Request("r2"));
  auto dying = Lane();
  auto first = TakeAll(*dying, 1);
  ASSERT_EQ(first.size(), 1u);
  auto b = Lane();
  broker.Enqueue(Request("r3"));  // the first lane is full: b's
  auto third = TakeAll(*b, 1);
  ASSERT_EQ(third.size(), 1u);
  ASSERT_EQ(third[0].message.body, "r3");
  // The first lane closes: r2, never taken, is passed on to b with its lower tag.
  dying.reset();
  // (r1 comes back too, redelivered, but waits: b is full once it holds r2.)
  auto passed_on = TakeAll(*b, 1);
  ASSERT_EQ(passed_on.size(), 1u);
  const amqp::Delivery& second = passed_on[0];
  ASSERT_EQ(second.message.body, "r2");
  EXPECT_FALSE(second.redelivered);
  ASSERT_LT(second.delivery_tag, third[0].delivery_tag);
  // b's multiple-ack of r3 settles r3 only: r2 was taken after it and is still being worked on.
  ASSERT_TRUE(b->Ack(third[0].delivery_tag, true));
  EXPECT_TRUE(b->Ack(second.delivery_tag, false)) << "r2 was settled with r3";
}

TEST_F(IntakeTest, AQuickAnswerIsWrittenByTheIntakeAndNoWorkerSeesIt) {
  auto handler = std::make_shared<PingHandler>();
  Start(handler);
  auto lane = Lane();
  broker.Enqueue(Request("ping"));
  broker.Enqueue(Request("work"));
  auto got = TakeAll(*lane, 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].message.body, "work");
  // The ping is answered and acked without the lane.
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& f) { return f.unacked() == 1; }));
  const auto steps = broker.steps();
  ASSERT_EQ(Count(steps, Step::Kind::kReply), 1u);
  for (const Step& s : steps) {
    if (s.kind != Step::Kind::kReply) continue;
    EXPECT_EQ(s.message.body, "pong");
    EXPECT_EQ(s.message.correlation_id, "ping");
    EXPECT_EQ(s.routing_key, "amq.rabbitmq.reply-to.client");
  }
  EXPECT_EQ(handler->quick_calls.load(), 1);
  EXPECT_EQ(counters.consumed.load(), 1u);
  ASSERT_TRUE(lane->Ack(got[0].delivery_tag, false));
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& f) { return f.unacked() == 0; }));
}

TEST_F(IntakeTest, AClosedLaneHandsBackWhatItsWorkerTookAndPassesOnTheRest) {
  Start();
  auto dying = Lane();
  broker.Enqueue(Request("taken"));
  broker.Enqueue(Request("waiting"));
  auto got = TakeAll(*dying, 1);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_EQ(got[0].message.body, "taken");
  // Its worker dies holding "taken"; "waiting" was dealt to it but never taken.
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& f) { return f.unacked() == 2; }));
  dying.reset();
  auto fresh = Lane();
  auto again = TakeAll(*fresh, 2);
  ASSERT_EQ(again.size(), 2u);
  std::map<std::string, bool> redelivered;
  for (const auto& d : again) redelivered[d.message.body] = d.redelivered;
  // The taken one went back to the queue (the broker marks it redelivered); the other was passed
  // on as it was.
  EXPECT_TRUE(redelivered.at("taken"));
  EXPECT_FALSE(redelivered.at("waiting"));
  EXPECT_EQ(Count(broker.steps(), Step::Kind::kReject), 1u);
}

TEST_F(IntakeTest, ALostConnectionBreaksEveryLaneAndTheWorkersGetFreshOnes) {
  Start();
  auto lane = Lane();
  broker.Enqueue(Request("r1"));
  auto got = TakeAll(*lane, 1);
  ASSERT_EQ(got.size(), 1u);
  broker.BreakConsumer();
  // The lane reports the loss on its next use; its delivery went back with the connection.
  Result<std::optional<amqp::Delivery>> next = std::nullopt;
  for (int i = 0; i < 500 && next; ++i) next = lane->Next(10ms);
  ASSERT_FALSE(next);
  EXPECT_FALSE(lane->Ack(got[0].delivery_tag, false));
  lane.reset();
  auto fresh = Lane();
  ASSERT_NE(fresh, nullptr);
  auto again = TakeAll(*fresh, 1);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].message.body, "r1");
  EXPECT_TRUE(again[0].redelivered);
  ASSERT_TRUE(fresh->Ack(again[0].delivery_tag, false));
  ASSERT_TRUE(broker.WaitUntil([](const FakeBroker& f) { return f.unacked() == 0; }));
  EXPECT_EQ(broker.consumer_opens(), 2);
}

TEST_F(IntakeTest, AStoppingPoolsLanesAreRefusedAndTheirAnswersStillWritten) {
  Start();
  auto lane = Lane();
  broker.Enqueue(Request("last"));
  auto got = TakeAll(*lane, 1);
  ASSERT_EQ(got.size(), 1u);
  intake->RequestStop();
  EXPECT_FALSE(intake->OpenConsumer(settings));
  // The worker finishes its message after the stop was asked for: its answer still goes out.
  amqp::Message reply;
  reply.body = "done";
  reply.correlation_id = "last";
  ASSERT_TRUE(lane->Publish("", got[0].message.reply_to, reply));
  ASSERT_TRUE(lane->Ack(got[0].delivery_tag, false));
  lane.reset();
  intake->Stop();
  EXPECT_EQ(broker.unacked(), 0u);
  EXPECT_EQ(Count(broker.steps(), Step::Kind::kReply), 1u);
}

}  // namespace
}  // namespace beds::brokers
