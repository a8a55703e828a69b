// The admin node's handlers of beds.logs events, and the node's /metrics endpoint: real `beds`
// processes against the fixture's RabbitMQ (a vhost per test). Events are published straight onto
// beds.logs with confirms, as any node's log sink would; what the handlers did is read back
// through the nodes' own interfaces (rec.read on the log store, lineage/fetch, a syslog datagram
// socket the test owns, /metrics parsed by Debian's prometheus_client).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "core/error.hpp"
#include "core/lineage.hpp"
#include "integration/node_fixture.hpp"
#include "logs/amqp_sink.hpp"
#include "logs/logs.hpp"

namespace beds::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

// Prints one JSON line per family ({family, type}) and per sample ({family, type, name, labels,
// value}) of the scrape at argv[1], as Debian's prometheus_client parses it.
constexpr const char* kScrapeScript = R"(import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    text = r.read().decode("utf-8")
for family in text_string_to_metric_families(text):
    print(json.dumps({"family": family.name, "type": family.type}))
    for s in family.samples:
        print(json.dumps({"family": family.name, "type": family.type, "name": s.name,
                          "labels": s.labels, "value": s.value}))
)";

using Labels = std::map<std::string, std::string>;

struct Scrape {
  struct Sample {
    std::string name;
    Labels labels;
    double value = 0;
  };
  std::map<std::string, std::string> family_types;  // family name → type ("unknown": no # TYPE)
  std::vector<Sample> samples;

  std::optional<double> Value(const std::string& name, const Labels& labels) const {
    for (const auto& s : samples) {
      if (s.name == name && s.labels == labels) return s.value;
    }
    return std::nullopt;
  }
  // 0 for a series not (yet) there: a counter that has never moved.
  double ValueOr0(const std::string& name, const Labels& labels) const {
    return Value(name, labels).value_or(0);
  }
  size_t Count(const std::string& name, const Labels& labels) const {
    size_t n = 0;
    for (const auto& s : samples) n += s.name == name && s.labels == labels ? 1 : 0;
    return n;
  }
};

// A unix datagram socket bound to `path`, standing in for /dev/log.
class SyslogListener {
 public:
  explicit SyslogListener(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path_.size() >= sizeof addr.sun_path) return;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~SyslogListener() {
    if (fd_ >= 0) close(fd_);
    unlink(path_.c_str());
  }
  SyslogListener(const SyslogListener&) = delete;
  SyslogListener& operator=(const SyslogListener&) = delete;

  bool ok() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  // The next datagram, or nullopt when none arrives within `timeout`.
  std::optional<std::string> Receive(std::chrono::milliseconds timeout) {
    pollfd p{fd_, POLLIN, 0};
    const int r = poll(&p, 1, static_cast<int>(timeout.count()));
    if (r <= 0 || !(p.revents & POLLIN)) return std::nullopt;
    char buf[16384];
    const ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n < 0) return std::nullopt;
    return std::string(buf, static_cast<size_t>(n));
  }

 private:
  std::string path_;
  int fd_ = -1;
};

std::string ErrorCode(const protocol::Reply& r) {
  return r.error ? std::string(CodeName(r.error->code)) : "(ok)";
}

logs::LogEvent Event(const std::string& level, const std::string& node, const std::string& msg) {
  logs::LogEvent e;
  e.kind = "log";
  e.level = level;
  e.node = node;
  e.env = "dev";
  e.lineage = Lineage{NewEventId(node, "dev"), "", 0};
  e.ts_us = NowUnixUs();
  e.msg = msg;
  return e;
}

logs::LogEvent MetricEvent(const std::string& node, json::array pools) {
  logs::LogEvent e = Event("info", node, "pool figures");
  e.kind = "metric";
  e.template_name = "sys";
  e.op = "metrics";
  e.fields["pools"] = std::move(pools);
  return e;
}

class AdminTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = fs::temp_directory_path() / ("beds-admin-it-" + NewGuid());
    fs::create_directories(dir_ / "logs-templates");
    fs::copy_file(fs::path(kSource) / "templates" / "mst_logger_rec.toml",
                  dir_ / "logs-templates" / "mst_logger_rec.toml");
    std::ofstream(dir_ / "scrape.py") << kScrapeScript;
  }
  void TearDown() override {
    NodeTest::TearDown();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // A node without a dispatch pool running the given broker tables (and whatever else
  // `extra_toml` holds).
  NodeOptions AdminOptions(const std::string& extra_toml) const {
    NodeOptions o;
    o.name = "admin";
    o.dispatch = false;
    o.extra_toml = extra_toml;
    return o;
  }
  std::string LogsTemplatesDir() const { return (dir_ / "logs-templates").string(); }
  std::string DocsPath() const { return (dir_ / "docs.sqlite").string(); }

  // Publishes with confirms and mandatory: returns only once a queue holds the message, so an
  // unroutable publish fails the test instead of vanishing.
  void Publish(const std::string& exchange, const std::string& key, const std::string& body) {
    if (!publisher_) {
      auto c = amqp::Connection::Open(Amqp());
      ASSERT_TRUE(c) << c.error().message;
      ASSERT_TRUE((*c)->EnableConfirms());
      publisher_ = std::move(*c);
    }
    amqp::Message m;
    m.body = body;
    auto r = publisher_->Publish(exchange, key, m);
    ASSERT_TRUE(r) << "publish on " << exchange << " " << key << ": " << r.error().message;
  }
  void PublishEvent(const logs::LogEvent& e) {
    Publish("beds.logs", logs::RoutingKey(e), logs::EncodeEvent(e));
  }

  // The parsed scrape of 127.0.0.1:port/metrics; nullopt (with the reason) when it failed.
  std::optional<Scrape> ScrapeMetrics(int port, std::string* why = nullptr) {
    auto r = RunCommand("/usr/bin/python3 " + (dir_ / "scrape.py").string() +
                        " http://127.0.0.1:" + std::to_string(port) + "/metrics");
    if (r.exit_code != 0) {
      if (why) *why = r.output;
      return std::nullopt;
    }
    Scrape s;
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      boost::system::error_code ec;
      json::value v = json::parse(line, ec);
      if (ec || !v.is_object()) {
        if (why) *why = "not a JSON line: " + line;
        return std::nullopt;
      }
      const json::object& o = v.get_object();
      const std::string family(o.at("family").as_string());
      s.family_types[family] = std::string(o.at("type").as_string());
      if (!o.contains("name")) continue;
      Scrape::Sample sample;
      sample.name = std::string(o.at("name").as_string());
      for (const auto& [k, lv] : o.at("labels").as_object()) {
        sample.labels[std::string(k)] = std::string(lv.as_string());
      }
      sample.value = o.at("value").to_number<double>();
      s.samples.push_back(std::move(sample));
    }
    return s;
  }

  // Polls the endpoint until a scrape satisfies `condition`; returns the last scrape taken.
  std::optional<Scrape> ScrapeUntil(int port, const std::function<bool(const Scrape&)>& condition,
                                    std::chrono::milliseconds timeout = 15s) {
    std::optional<Scrape> last;
    std::string why;
    WaitFor(
        [&] {
          auto s = ScrapeMetrics(port, &why);
          if (!s) return false;
          last = std::move(s);
          return condition(*last);
        },
        timeout);
    EXPECT_TRUE(last) << "no scrape of port " << port << " succeeded: " << why;
    return last;
  }

  int64_t CountLogs(const std::string& event_id) {
    auto reply = Call("rec.read", R"({"template":"Logs","op":"count","where":{"event_id":")" +
                                      event_id + R"("}})");
    if (!reply.ok || !reply.body.is_object()) return -1;
    const auto* n = reply.body.as_object().if_contains("count");
    return n && n->is_int64() ? n->as_int64() : -1;
  }

  uint32_t Ready(const std::string& queue) {
    auto c = amqp::Connection::Open(Amqp());
    if (!c) return ~0u;
    auto n = (*c)->MessageCount(queue);
    return n ? *n : ~0u;
  }

  fs::path dir_;
  std::unique_ptr<amqp::Connection> publisher_;
};

TEST_F(AdminTest, LogsHandlerStoresEventsOnceAndParksGarbage) {
  NodeOptions admin = AdminOptions(R"(
[brokers.adminLogsBroker]
handler = "logs"
instances = 1
prefetch = 64
batch_ms = 50
bindings = ["log.#", "audit.#"]
)");
  admin.templates_dir = LogsTemplatesDir();
  admin.docs_path = DocsPath();
  StartNode(admin);
  NodeOptions reader;
  reader.templates_dir = LogsTemplatesDir();
  reader.docs_path = DocsPath();
  StartNode(reader);
  ASSERT_FALSE(HasFailure());

  const logs::LogEvent e = Event("info", "n1", "the first event");
  const std::string garbage = "this is not JSON {";
  logs::LogEvent bad_id = Event("info", "n1", "an event with a broken id");
  bad_id.lineage.event_id = "not-an-event-id";
  const std::string bad_id_body = logs::EncodeEvent(bad_id);
  const logs::LogEvent after = Event("warn", "n2", "after the garbage");

  PublishEvent(e);
  PublishEvent(e);  // a redelivery: the same event id again
  Publish("beds.logs", "log.info.n1", garbage);
  Publish("beds.logs", "log.info.n1", bad_id_body);
  PublishEvent(after);
  ASSERT_FALSE(HasFailure());

  // One consumer, FIFO: once the last event is stored, everything before it has been handled.
  EXPECT_TRUE(WaitFor([&] { return CountLogs(after.lineage.event_id) == 1; }, 20s))
      << "the event published after the garbage was not stored";
  EXPECT_EQ(CountLogs(e.lineage.event_id), 1) << "stored exactly once";

  auto parked = WaitForParked(2, "adminLogsBroker");
  ASSERT_EQ(parked.size(), 2u);
  std::multiset<std::string> bodies;
  for (const auto& d : parked) {
    bodies.insert(d.message.body);
    auto h = d.message.headers.find("x-beds-error");
    ASSERT_NE(h, d.message.headers.end()) << "parked without a reason: " << d.message.body;
    const auto* reason = std::get_if<std::string>(&h->second);
    ASSERT_NE(reason, nullptr);
    EXPECT_FALSE(reason->empty());
  }
  EXPECT_EQ(bodies, (std::multiset<std::string>{garbage, bad_id_body}));

  // The stored event reads back through lineage/fetch as a tree of one.
  auto tree = Call("sys.read",
                   R"({"template":"lineage","op":"fetch","id":")" + e.lineage.event_id + R"("})");
  ASSERT_TRUE(tree.ok) << json::serialize(tree.body);
  const json::object& data = tree.body.at("data").as_object();
  EXPECT_EQ(data.at("events"), 1);
  EXPECT_EQ(data.at("truncated"), false);
  const json::object& root = data.at("root").as_object();
  EXPECT_EQ(root.at("event_id"), e.lineage.event_id.c_str());
  EXPECT_EQ(root.at("node"), "n1");
  EXPECT_EQ(root.at("level"), "info");
  EXPECT_EQ(root.at("message"), "the first event");
  EXPECT_TRUE(root.at("children").as_array().empty());
}

TEST_F(AdminTest, LineageFetchErrors) {
  NodeOptions with_store;
  with_store.templates_dir = LogsTemplatesDir();
  with_store.docs_path = DocsPath();
  NodeProcess& node = StartNode(with_store);
  ASSERT_FALSE(HasFailure());
  const std::string unknown = NewEventId("nowhere", "dev");

  EXPECT_EQ(ErrorCode(Call("sys.read", R"({"template":"lineage","op":"fetch","id":"not an id"})")),
            "VALIDATION");
  EXPECT_EQ(ErrorCode(Call("sys.read", R"({"template":"lineage","op":"fetch"})")), "VALIDATION");
  EXPECT_EQ(ErrorCode(Call("sys.read",
                           R"({"template":"lineage","op":"fetch","id":")" + unknown + R"("})")),
            "NOT_FOUND");
  EXPECT_EQ(ErrorCode(Call("sys.read",
                           R"({"template":"lineage","op":"count","id":")" + unknown + R"("})")),
            "UNKNOWN_OP");
  // The log store is read-only to clients: forged or erased audit records would be worthless.
  EXPECT_EQ(ErrorCode(Call("rec.write", R"({"template":"Logs","op":"create","data":{"event_id":")" +
                                            unknown + R"(","kind":"audit","level":"info"}})")),
            "FORBIDDEN");
  EXPECT_EQ(ErrorCode(Call("rec.write",
                           R"({"template":"Logs","op":"delete","id":")" + unknown + R"("})")),
            "FORBIDDEN");
  EXPECT_EQ(CountLogs(unknown), 0) << "reading it is fine";

  // One dispatch node at a time on beds.rBroker, so the next request surely reaches the bare one.
  EXPECT_EQ(node.Signal(SIGTERM), 0);
  NodeOptions bare;
  bare.name = "bare";  // templates_dir "": system templates only, no log store
  StartNode(bare);
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(ErrorCode(Call("sys.read",
                           R"({"template":"lineage","op":"fetch","id":")" + unknown + R"("})")),
            "UNAVAILABLE");
}

TEST_F(AdminTest, SyslogForwardsAtOrAboveItsLevel) {
  SyslogListener syslog((dir_ / "log.sock").string());
  ASSERT_TRUE(syslog.ok()) << "cannot bind " << syslog.path() << ": " << std::strerror(errno);
  NodeOptions admin = AdminOptions(R"(
[brokers.adminSyslogBroker]
handler = "syslog"
instances = 1
level = "error"
syslog_socket = ")" + syslog.path() +
                                   R"("
bindings = ["log.#"]
)");
  // The admin node's own events stay off beds.logs: the socket sees the test's events only.
  admin.logging_extra = "amqp = false";
  StartNode(admin);
  ASSERT_FALSE(HasFailure());

  logs::LogEvent error = Event("error", "n1", "write failed");
  error.template_name = "Users";
  error.op = "create";
  const logs::LogEvent critical = Event("critical", "n1", "disk gone");
  PublishEvent(Event("info", "n1", "all fine"));
  PublishEvent(Event("warn", "n1", "slow"));
  PublishEvent(error);
  PublishEvent(critical);
  ASSERT_FALSE(HasFailure());

  // One consumer, FIFO: had the info or warn event been forwarded it would arrive first.
  auto first = syslog.Receive(15s);
  ASSERT_TRUE(first) << "nothing forwarded";
  EXPECT_EQ(*first,
            "<11>beds[n1]: error [" + error.lineage.event_id + "] Users/create write failed");
  auto second = syslog.Receive(15s);
  ASSERT_TRUE(second) << "the critical event was not forwarded";
  EXPECT_EQ(*second, "<10>beds[n1]: critical [" + critical.lineage.event_id + "] disk gone");
  auto third = syslog.Receive(300ms);
  EXPECT_FALSE(third) << "forwarded more than the error and critical events: "
                      << third.value_or("");
}

TEST_F(AdminTest, MetricsHandlerShowsEveryNodesFigures) {
  const int port = FreePort();
  ASSERT_NE(port, 0);
  StartNode(AdminOptions(R"(
[brokers.adminMetricsBroker]
handler = "metrics"
instances = 1
bindings = ["metric.#"]
[metrics]
listen = "127.0.0.1:)" + std::to_string(port) +
                         "\"\n"));
  ASSERT_FALSE(HasFailure());

  const Labels n1{{"node", "n1"}, {"broker", "rBroker"}};
  const Labels n2{{"node", "n2"}, {"broker", "rBroker"}};
  const Labels n2_logs{{"node", "n2"}, {"broker", "adminLogsBroker"}};
  PublishEvent(MetricEvent(
      "n1",
      {json::object{{"broker", "rBroker"}, {"instances", 8}, {"alive", 8}, {"consumed", 7}}}));
  PublishEvent(MetricEvent(
      "n2", {json::object{{"broker", "rBroker"}, {"instances", 2}, {"alive", 1}, {"consumed", 3}},
             json::object{{"broker", "adminLogsBroker"}, {"consumed", 41}}}));
  ASSERT_FALSE(HasFailure());

  auto s = ScrapeUntil(port, [&](const Scrape& s) {
    return s.Value("beds_node_consumed", n1) == 7.0 && s.Value("beds_node_consumed", n2) == 3.0 &&
           s.Value("beds_node_consumed", n2_logs) == 41.0;
  });
  ASSERT_TRUE(s);
  EXPECT_EQ(s->Value("beds_node_consumed", n1), 7.0);
  EXPECT_EQ(s->Value("beds_node_consumed", n2), 3.0);
  EXPECT_EQ(s->Value("beds_node_consumed", n2_logs), 41.0);
  EXPECT_EQ(s->Value("beds_node_alive", n1), 8.0);
  EXPECT_EQ(s->Value("beds_node_alive", n2), 1.0);
  EXPECT_EQ(s->family_types["beds_node_consumed"], "gauge");

  // A newer event of n1 replaces its figures; n2's stay.
  PublishEvent(MetricEvent(
      "n1",
      {json::object{{"broker", "rBroker"}, {"instances", 8}, {"alive", 6}, {"consumed", 19}}}));
  ASSERT_FALSE(HasFailure());
  s = ScrapeUntil(port, [&](const Scrape& s) { return s.Value("beds_node_consumed", n1) == 19.0; });
  ASSERT_TRUE(s);
  EXPECT_EQ(s->Value("beds_node_consumed", n1), 19.0);
  EXPECT_EQ(s->Count("beds_node_consumed", n1), 1u);
  EXPECT_EQ(s->Value("beds_node_alive", n1), 6.0);
  EXPECT_EQ(s->Value("beds_node_consumed", n2), 3.0);
  EXPECT_EQ(s->Value("beds_node_consumed", n2_logs), 41.0);
}

TEST_F(AdminTest, MetricsEndpointCountersMatchTheTraffic) {
  const int port = FreePort();
  ASSERT_NE(port, 0);
  NodeOptions o;
  o.extra_toml = "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
  StartNode(o);
  ASSERT_FALSE(HasFailure());

  const Labels pool{{"broker", "rBroker"}};
  const Labels ping{{"template", "sys"}, {"op", "ping"}, {"outcome", "OK"}};
  const Labels unknown{
      {"template", "(unknown)"}, {"op", "(unknown)"}, {"outcome", "UNKNOWN_TEMPLATE"}};
  // The baseline once the node is idle: StartNode's readiness pings all handled and acked.
  auto idle = [&](const Scrape& s) {
    return s.Value("beds_messages_in_flight", pool) == 0.0 &&
           s.ValueOr0("beds_messages_consumed_total", pool) ==
               s.ValueOr0("beds_messages_acked_total", pool) &&
           Ready("beds.rBroker") == 0;
  };
  auto before = ScrapeUntil(port, idle);
  ASSERT_TRUE(before && idle(*before));

  constexpr int kPings = 7, kUnknown = 3;
  for (int i = 0; i < kPings; ++i) {
    EXPECT_TRUE(Call("sys.read", R"({"template":"sys","op":"ping"})").ok);
  }
  for (int i = 0; i < kUnknown; ++i) {
    EXPECT_EQ(ErrorCode(Call("rec.read", R"({"template":"NoSuchTemplate","op":"fetch"})")),
              "UNKNOWN_TEMPLATE");
  }
  const std::string not_json = "this is not JSON {";
  Publish("beds.events", "sys.read", not_json);
  ASSERT_FALSE(HasFailure());
  auto parked = WaitForParked(1);
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_EQ(parked[0].message.body, not_json);

  constexpr double kAll = kPings + kUnknown + 1;
  auto delta = [&](const Scrape& s, const std::string& name, const Labels& labels) {
    return s.ValueOr0(name, labels) - before->ValueOr0(name, labels);
  };
  auto after = ScrapeUntil(port, [&](const Scrape& s) {
    return idle(s) && delta(s, "beds_messages_consumed_total", pool) >= kAll &&
           delta(s, "beds_messages_dead_lettered_total", pool) >= 1 &&
           delta(s, "beds_request_duration_seconds_count", ping) >= kPings &&
           delta(s, "beds_request_duration_seconds_count", unknown) >= kUnknown;
  });
  ASSERT_TRUE(after);
  EXPECT_EQ(delta(*after, "beds_messages_consumed_total", pool), kAll);
  EXPECT_EQ(delta(*after, "beds_messages_acked_total", pool), kAll);
  EXPECT_EQ(delta(*after, "beds_messages_dead_lettered_total", pool), 1.0);
  EXPECT_EQ(delta(*after, "beds_messages_retried_total", pool), 0.0);
  EXPECT_EQ(delta(*after, "beds_request_duration_seconds_count", ping), kPings);
  EXPECT_EQ(delta(*after, "beds_request_duration_seconds_count", unknown), kUnknown);
  Labels ping_inf = ping;
  ping_inf["le"] = "+Inf";
  EXPECT_EQ(delta(*after, "beds_request_duration_seconds_bucket", ping_inf), kPings);
  EXPECT_TRUE(after->Value("beds_log_events_emitted_total", {}).has_value());
  EXPECT_TRUE(after->Value("beds_log_sink_drops_total", {}).has_value());

  // Every family came with its # TYPE (the parser says "unknown" for one without).
  ASSERT_FALSE(after->family_types.empty());
  for (const auto& [family, type] : after->family_types) {
    EXPECT_NE(type, "unknown") << family << " has no # TYPE";
  }
  EXPECT_EQ(after->family_types["beds_messages_consumed"], "counter");
  EXPECT_EQ(after->family_types["beds_request_duration_seconds"], "histogram");
}

// The log sink lingers for company: a burst of events travels as a few NDJSON messages, not one
// message per event, and every event arrives exactly once.
TEST_F(AdminTest, TheLogSinkPacksABurstIntoFewMessages) {
  auto c = amqp::Connection::Open(Amqp());
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE((*c)->DeclareExchange("beds.logs", "topic"));
  amqp::QueueOptions q;
  q.durable = false;
  q.auto_delete = false;
  ASSERT_TRUE((*c)->DeclareQueue("burst", q));
  ASSERT_TRUE((*c)->BindQueue("burst", "beds.logs", "log.#"));

  logs::AmqpSinkSettings settings;
  settings.amqp = Amqp();
  settings.spill_path = (dir_ / "burst.events").string();
  settings.flush_interval = 1s;  // longer than the burst takes, even under a sanitizer
  logs::AmqpSink sink(settings);
  ASSERT_TRUE(WaitFor([&] { return sink.Stats().connected; }, 10s));
  // Paced like a busy node (a publisher that did not linger would send dozens of messages).
  std::set<std::string> sent;
  for (int i = 0; i < 300; ++i) {
    logs::LogEvent e = Event("info", "n1", "burst event " + std::to_string(i));
    sent.insert(e.lineage.event_id);
    sink.Emit(std::move(e));
    std::this_thread::sleep_for(500us);
  }
  ASSERT_TRUE(WaitFor([&] { return sink.Stats().published == 300; }, 20s))
      << "published " << sink.Stats().published;

  std::set<std::string> received;
  size_t messages = 0;
  size_t events = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        while (true) {
          auto d = (*c)->Get("burst");
          if (!d || !*d) break;
          ++messages;
          for (auto& e : logs::DecodeEvents((*d)->message.body, (*d)->message.content_type)) {
            EXPECT_TRUE(e) << e.error().message;
            if (!e) continue;
            ++events;
            received.insert(e->lineage.event_id);
          }
        }
        return events >= 300;
      },
      20s));
  EXPECT_EQ(events, 300u) << "every event once";
  EXPECT_EQ(received, sent);
  EXPECT_LE(messages, 3u) << "a burst of 300 events should share a few messages";
  sink.Stop();
}

}  // namespace
}  // namespace beds::testing
