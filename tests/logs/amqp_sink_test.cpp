// The log sink against an in-memory broker: what it does while the broker is away (spill), when it
// returns (replay, oldest first, nothing twice), and when no queue takes an event yet (kept, and
// offered again). The same sink runs against a real RabbitMQ in the integration tier
// (admin_test.cpp, lineage_test.cpp).
#include "logs/amqp_sink.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "core/lineage.hpp"

namespace beds::logs {
namespace {

using namespace std::chrono_literals;

// The broker: up or down, taking every routing key or none, and what it stored (each packed
// message split back into its events).
struct FakeLogBroker {
  std::mutex mutex;
  bool up = false;
  bool bound = true;                // a queue takes every key
  std::vector<std::string> events;  // stored, in order
  int opens = 0;

  class Channel final : public amqp::Channel {
   public:
    explicit Channel(FakeLogBroker& b) : b_(b) {}
    Result<std::optional<amqp::Delivery>> Next(std::chrono::milliseconds) override {
      return std::nullopt;
    }
    Result<void> Publish(const std::string& exchange, const std::string& key,
                         const amqp::Message& m) override {
      return PublishMany({amqp::Publication{exchange, key, m, true}}, nullptr);
    }
    Result<void> PublishMany(const std::vector<amqp::Publication>& batch,
                             std::vector<std::string>* unroutable) override {
      std::lock_guard lock(b_.mutex);
      if (!b_.up) return Fail(Code::kUnavailable, "connection lost (fake)");
      for (const auto& p : batch) {
        EXPECT_EQ(p.exchange, "beds.logs");
        if (!b_.bound) {
          if (unroutable) unroutable->push_back(p.routing_key);
          continue;
        }
        // A packed message holds one event per line.
        size_t from = 0;
        while (from <= p.message.body.size()) {
          size_t to = p.message.body.find('\n', from);
          if (to == std::string::npos) to = p.message.body.size();
          b_.events.push_back(p.message.body.substr(from, to - from));
          from = to + 1;
        }
      }
      return Ok();
    }
    Result<void> Ack(uint64_t, bool) override { return Ok(); }
    Result<void> Reject(uint64_t, bool) override { return Ok(); }
    Result<void> Cancel(const std::string&) override { return Ok(); }

   private:
    FakeLogBroker& b_;
  };

  Result<std::unique_ptr<amqp::Channel>> Open() {
    std::lock_guard lock(mutex);
    ++opens;
    if (!up) return Fail(Code::kUnavailable, "connection refused (fake)");
    return std::unique_ptr<amqp::Channel>(std::make_unique<Channel>(*this));
  }
  void Set(bool is_up, bool is_bound) {
    std::lock_guard lock(mutex);
    up = is_up;
    bound = is_bound;
  }
  std::vector<std::string> Stored() {
    std::lock_guard lock(mutex);
    return events;
  }
};

class SinkOverFakeBrokerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = std::filesystem::temp_directory_path() /
          ("beds-sink-test-" + std::to_string(::getpid()) + "-" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir);
  }
  void TearDown() override {
    sink.reset();
    std::filesystem::remove_all(dir);
  }

  void Start() {
    AmqpSinkSettings s;
    s.spill_path = (dir / "node.events").string();
    s.flush_interval = 5ms;
    s.open = [this] { return broker.Open(); };
    sink = std::make_unique<AmqpSink>(s);
  }

  // Emits `n` info events, each with its own event id, and returns the ids in order.
  std::vector<std::string> Emit(int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      LogEvent e;
      e.kind = "log";
      e.level = "info";
      e.lineage = RootLineage("node", "dev");
      e.msg = "event " + std::to_string(i);
      ids.push_back(e.lineage.event_id);
      sink->Emit(std::move(e));
    }
    return ids;
  }

  // Waits (at most 10 s) for `done`.
  static bool WaitFor(const std::function<bool()>& done) {
    for (int i = 0; i < 1000; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return done();
  }

  // The event ids the broker stored, in order.
  std::vector<std::string> StoredIds() {
    std::vector<std::string> ids;
    for (const std::string& body : broker.Stored()) {
      const size_t at = body.find("\"event_id\":\"");
      if (at == std::string::npos) continue;
      const size_t from = at + 12;
      ids.push_back(body.substr(from, body.find('"', from) - from));
    }
    return ids;
  }

  std::filesystem::path dir;
  FakeLogBroker broker;
  std::unique_ptr<AmqpSink> sink;
};

TEST_F(SinkOverFakeBrokerTest, WhileTheBrokerIsAwayEventsSpillAndAreReplayedInOrderWhenItReturns) {
  Start();
  const auto ids = Emit(50);
  ASSERT_TRUE(WaitFor([&] { return sink->Stats().spilled == 50; }));
  EXPECT_GT(sink->Stats().spill_bytes, 0);
  EXPECT_TRUE(broker.Stored().empty());

  broker.Set(true, true);
  ASSERT_TRUE(WaitFor([&] { return sink->Stats().replayed == 50; }));
  EXPECT_EQ(StoredIds(), ids) << "every event once, oldest first";
  const SinkStats st = sink->Stats();
  EXPECT_EQ(st.published, 50u);
  EXPECT_EQ(st.dropped, 0u);
  EXPECT_EQ(st.spill_bytes, 0);
  EXPECT_TRUE(st.connected);
}

TEST_F(SinkOverFakeBrokerTest, WithTheBrokerUpEventsArePublishedWithoutSpilling) {
  broker.Set(true, true);
  Start();
  const auto ids = Emit(20);
  ASSERT_TRUE(WaitFor([&] { return sink->Stats().published == 20; }));
  EXPECT_EQ(StoredIds(), ids);
  EXPECT_EQ(sink->Stats().spilled, 0u);
}

TEST_F(SinkOverFakeBrokerTest, EventsNoQueueTakesAreKeptAndOfferedAgainOnceOneDoes) {
  broker.Set(true, false);  // up, but no admin node has declared its queue yet
  Start();
  const auto ids = Emit(10);
  ASSERT_TRUE(WaitFor([&] { return sink->Stats().unrouted >= 10; }));
  ASSERT_TRUE(WaitFor([&] { return sink->Stats().spilled >= 10; }));
  EXPECT_TRUE(broker.Stored().empty());

  broker.Set(true, true);  // the admin node's queue appears
  ASSERT_TRUE(WaitFor([&] { return StoredIds().size() == 10; }));
  EXPECT_EQ(StoredIds(), ids);
  EXPECT_EQ(sink->Stats().dropped, 0u);
}

TEST_F(SinkOverFakeBrokerTest, WhatIsLeftAtStopWaitsInTheSpillFileForTheNextStart) {
  Start();
  const auto ids = Emit(5);
  sink->Stop(10ms);
  sink.reset();
  EXPECT_GT(std::filesystem::file_size(dir / "node.events"), 0u);

  broker.Set(true, true);
  Start();  // the next run of the node replays the last one's events
  ASSERT_TRUE(WaitFor([&] { return StoredIds().size() == 5; }));
  EXPECT_EQ(StoredIds(), ids);
}

}  // namespace
}  // namespace beds::logs
