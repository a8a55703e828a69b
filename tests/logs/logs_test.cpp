// The log event's wire form and the AMQP log sink's buffering, spilling and drop counting with no
// broker to publish to (a closed port): logic that needs no server.
#include "logs/logs.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "core/lineage.hpp"
#include "logs/amqp_sink.hpp"

namespace beds::logs {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

LogEvent Sample() {
  LogEvent e;
  e.kind = "request";
  e.level = "info";
  e.node = "appserver";
  e.env = "dev";
  e.lineage = Lineage{NewEventId("appserver", "dev"), NewEventId("appserver", "dev"), 1};
  e.template_name = "Users";
  e.op = "create";
  e.msg = "ok \"quoted\"\nnewline";
  e.duration_us = 412;
  e.ts_us = 1795000000123456;
  e.fields["rows"] = 1;
  return e;
}

TEST(LogEventTest, EncodeDecodeRoundTrip) {
  const LogEvent e = Sample();
  const std::string wire = EncodeEvent(e);
  EXPECT_EQ(wire.find('\n'), std::string::npos) << "one line per event (the spill file needs it)";
  auto d = DecodeEvent(wire);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->kind, e.kind);
  EXPECT_EQ(d->level, e.level);
  EXPECT_EQ(d->node, e.node);
  EXPECT_EQ(d->env, e.env);
  EXPECT_EQ(d->lineage.event_id, e.lineage.event_id);
  EXPECT_EQ(d->lineage.parent_id, e.lineage.parent_id);
  EXPECT_EQ(d->lineage.depth, 1);
  EXPECT_EQ(d->template_name, "Users");
  EXPECT_EQ(d->op, "create");
  EXPECT_EQ(d->msg, e.msg);
  EXPECT_EQ(d->duration_us, 412);
  EXPECT_EQ(d->ts_us, e.ts_us);
  EXPECT_EQ(d->fields.at("rows").as_int64(), 1);
  EXPECT_EQ(IsoTimeUs(e.ts_us), "2026-11-18T11:06:40.123456Z");
}

// The encoder writes JSON by hand: what it escapes must come back byte for byte.
TEST(LogEventTest, EveryCharacterSurvivesEncoding) {
  LogEvent e = Sample();
  std::string all;
  for (int c = 1; c < 128; ++c) all += static_cast<char>(c);
  e.msg = "quote \" backslash \\ tab \t newline \n é ✓ 🦀 " + all;
  e.template_name = "a\\b\"c";
  e.fields["text"] = all;
  const std::string wire = EncodeEvent(e);
  EXPECT_EQ(wire.find('\n'), std::string::npos);
  boost::system::error_code ec;
  const auto parsed = boost::json::parse(wire, ec);
  ASSERT_FALSE(ec) << wire;
  EXPECT_EQ(parsed.at("msg").as_string(), e.msg);
  auto d = DecodeEvent(wire);
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->msg, e.msg);
  EXPECT_EQ(d->template_name, e.template_name);
  EXPECT_EQ(d->fields.at("text").as_string(), all);
  EXPECT_EQ(IsoTimeUs(-1), "1969-12-31T23:59:59.999999Z");
}

TEST(LogEventTest, DecodeRefusesWhatIsNotAnEvent) {
  const std::string id = NewEventId("n", "dev");
  for (const std::string& bad :
       {std::string("not json"), std::string("[1]"), std::string(R"({"event_id":"x"})"),
        R"({"event_id":")" + id + R"(","ts":"2026-11-18T21:33:20Z","level":"loud"})",
        R"({"event_id":")" + id + R"(","ts":"yesterday","level":"info"})",
        R"({"event_id":")" + id +
            R"(","parent_id":"nope","ts":"2026-11-18T21:33:20Z","level":"info"})"}) {
    auto d = DecodeEvent(bad);
    ASSERT_FALSE(d) << bad;
    EXPECT_EQ(d.error().code, Code::kBadRequest) << bad;
  }
  // The least an event needs: an id, a time and a level; kind defaults to log.
  auto d =
      DecodeEvent(R"({"event_id":")" + id + R"(","ts":"2026-11-18T21:33:20Z","level":"warn"})");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->kind, "log");
}

TEST(LogEventTest, RoutingKeysFollowTheProtocol) {
  LogEvent e = Sample();
  EXPECT_EQ(RoutingKey(e), "log.info.appserver");
  e.level = "error";
  e.kind = "log";
  EXPECT_EQ(RoutingKey(e), "log.error.appserver");
  e.kind = "audit";
  EXPECT_EQ(RoutingKey(e), "audit.Users.create");
  e.kind = "metric";
  EXPECT_EQ(RoutingKey(e), "metric.appserver");
}

TEST(LogEventTest, LevelsAreOrdered) {
  EXPECT_LT(LevelRank("trace"), LevelRank("debug"));
  EXPECT_LT(LevelRank("info"), LevelRank("warn"));
  EXPECT_EQ(LevelRank("warning"), LevelRank("warn"));
  EXPECT_LT(LevelRank("error"), LevelRank("critical"));
  EXPECT_EQ(LevelRank("loud"), -1);
}

TEST(LogEventTest, ABatchMessageCarriesOneEventPerLine) {
  const std::string a = EncodeEvent(Sample());
  LogEvent other = Sample();
  other.lineage.event_id = NewEventId("appserver", "dev");
  const std::string b = EncodeEvent(other);
  auto events = DecodeEvents(a + "\n" + b + "\nnot json\n", kBatchContentType);
  ASSERT_EQ(events.size(), 3u);
  ASSERT_TRUE(events[0]);
  ASSERT_TRUE(events[1]);
  EXPECT_EQ(events[1]->lineage.event_id, other.lineage.event_id);
  EXPECT_FALSE(events[2]) << "a bad line spoils only itself";
  // Without the batch content type a body is one event, whatever it holds.
  auto one = DecodeEvents(a + "\n" + b, "application/json");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_FALSE(one[0]);
  EXPECT_FALSE(DecodeEvents("", kBatchContentType).front());
}

// A port nothing listens on: bound, then closed.
int DeadPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

class AmqpSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("beds-sink-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    settings_.amqp.host = "127.0.0.1";
    settings_.amqp.port = DeadPort();
    settings_.amqp.connect_timeout_ms = 200;
    settings_.spill_path = (dir_ / "spill.events").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  size_t SpillLines() const {
    std::ifstream in(settings_.spill_path);
    size_t n = 0;
    for (std::string line; std::getline(in, line);) ++n;
    return n;
  }

  fs::path dir_;
  AmqpSinkSettings settings_;
};

TEST_F(AmqpSinkTest, WithNoBrokerEventsSpillToTheFileAndEmitNeverWaits) {
  settings_.buffer_events = 8;
  AmqpSink sink(settings_);
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    LogEvent e = Sample();
    e.lineage.event_id = NewEventId("appserver", "dev");
    sink.Emit(std::move(e));
  }
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_LT(took, 500ms) << "Emit must not wait for a broker";
  sink.Stop(100ms);
  const SinkStats s = sink.Stats();
  EXPECT_EQ(s.emitted, 100u);
  EXPECT_EQ(s.published, 0u);
  EXPECT_EQ(s.dropped, 0u);
  EXPECT_EQ(s.spilled, 100u);
  EXPECT_EQ(SpillLines(), 100u);
  EXPECT_FALSE(s.connected);
}

TEST_F(AmqpSinkTest, PastTheSpillLimitEventsAreDroppedAndCountedExactly) {
  settings_.buffer_events = 4;
  const std::string line = RoutingKey(Sample()) + "\t" + EncodeEvent(Sample()) + "\n";
  settings_.spill_max_bytes = static_cast<int64_t>(line.size() * 10 + line.size() / 2);
  AmqpSink sink(settings_);
  for (int i = 0; i < 50; ++i) sink.Emit(Sample());  // every line the same size
  sink.Stop(100ms);
  const SinkStats s = sink.Stats();
  EXPECT_EQ(s.spilled, 10u);
  EXPECT_EQ(s.dropped, 40u);
  EXPECT_EQ(s.spilled + s.dropped, s.emitted);
  EXPECT_EQ(SpillLines(), 10u);
  EXPECT_EQ(s.spill_bytes, static_cast<int64_t>(line.size() * 10));
}

TEST_F(AmqpSinkTest, ASpillFileLeftByAnEarlierRunWaitsForTheBroker) {
  {
    AmqpSink first(settings_);
    for (int i = 0; i < 5; ++i) first.Emit(Sample());
  }
  AmqpSink second(settings_);
  EXPECT_GT(second.Stats().spill_bytes, 0) << "the next run counts it, to replay it";
  second.Stop(100ms);
  EXPECT_EQ(SpillLines(), 5u);
}

TEST_F(AmqpSinkTest, WithoutASpillFileOverflowIsDropped) {
  settings_.spill_path.clear();
  settings_.buffer_events = 3;
  AmqpSink sink(settings_);
  for (int i = 0; i < 10; ++i) sink.Emit(Sample());
  sink.Stop(100ms);
  const SinkStats s = sink.Stats();
  EXPECT_EQ(s.dropped, 10u);
  EXPECT_EQ(s.spilled, 0u);
}

}  // namespace
}  // namespace beds::logs
