// The `beds` node end to end over a real RabbitMQ: envelope errors, DLQ parking, retries, worker
// replacement, broker restarts, shutdown by signal and by admin command.
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "amqp/topology.hpp"
#include "core/lineage.hpp"
#include "integration/node_fixture.hpp"

namespace beds::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

std::string ErrorCode(const protocol::Reply& r) {
  return r.error ? std::string(CodeName(r.error->code)) : "";
}

std::string HeaderString(const amqp::Message& m, const std::string& key) {
  auto it = m.headers.find(key);
  if (it == m.headers.end()) return "";
  if (const auto* s = std::get_if<std::string>(&it->second)) return *s;
  return std::to_string(std::get<int64_t>(it->second));
}

const json::object& PoolOf(const json::object& ping, const std::string& broker) {
  for (const auto& p : ping.at("pools").as_array()) {
    if (p.at("broker").as_string() == broker) return p.as_object();
  }
  static const json::object kNone;
  return kNone;
}

TEST_F(NodeTest, PingRoundTrip) {
  StartNode({.name = "pinger", .instances = 3});
  auto reply = Call("sys.read", R"({"template":"sys","op":"ping"})");
  ASSERT_TRUE(reply.ok);
  EXPECT_TRUE(reply.event_id.starts_with("pinger.dev.")) << reply.event_id;
  EXPECT_TRUE(IsEventId(reply.event_id));
  const auto& data = reply.body.at("data").as_object();
  EXPECT_EQ(data.at("node").as_string(), "pinger");
  EXPECT_EQ(data.at("env").as_string(), "dev");
  EXPECT_FALSE(data.at("version").as_string().empty());
  EXPECT_GE(data.at("uptime_s").as_double(), 0.0);
  const auto& pool = PoolOf(data, "rBroker");
  EXPECT_EQ(pool.at("instances").as_int64(), 3);
  EXPECT_EQ(pool.at("alive").as_int64(), 3);
}

TEST_F(NodeTest, MessageIdOfEventIdFormBecomesTheEventId) {
  StartNode();
  const std::string id = "client.dev." + NewGuid();
  auto r = client_->Call("sys.read", R"({"template":"sys","op":"ping"})", 10s, {.message_id = id});
  ASSERT_TRUE(r);
  EXPECT_EQ(protocol::DecodeReply(r->body)->event_id, id);
}

TEST_F(NodeTest, DescribeListsTheRegisteredTemplates) {
  StartNode();
  auto reply = Call("sys.read", R"({"template":"sys","op":"describe"})");
  ASSERT_TRUE(reply.ok) << json::serialize(reply.body);
  const auto& templates = reply.body.at("data").at("templates").as_array();
  ASSERT_EQ(templates.size(), 1u);
  EXPECT_EQ(templates[0].at("name").as_string(), "sys");
  EXPECT_EQ(templates[0].at("route").as_string(), "sys");
  std::set<std::string> ops;
  for (const auto& op : templates[0].at("ops").as_array()) ops.insert(std::string(op.as_string()));
  EXPECT_TRUE(ops.contains("ping") && ops.contains("describe"));
}

TEST_F(NodeTest, MalformedBodyIsAnsweredAndParkedWithItsReason) {
  StartNode();
  auto reply = Call("sys.read", "{\"template\": \"sys\", \"op\": ");
  EXPECT_FALSE(reply.ok);
  EXPECT_EQ(ErrorCode(reply), "BAD_REQUEST");
  auto not_object = Call("sys.read", "[\"sys\", \"ping\"]");
  EXPECT_EQ(ErrorCode(not_object), "BAD_REQUEST");

  const auto parked = WaitForParked(2);
  ASSERT_EQ(parked.size(), 2u);
  // Two workers park concurrently: match by body, not by order.
  std::map<std::string, const amqp::Delivery*> by_body;
  for (const auto& d : parked) by_body[d.message.body] = &d;
  const auto* truncated = by_body["{\"template\": \"sys\", \"op\": "];
  const auto* array = by_body["[\"sys\", \"ping\"]"];
  ASSERT_TRUE(truncated && array);
  EXPECT_EQ(truncated->routing_key, "beds.rBroker");
  EXPECT_NE(
      HeaderString(truncated->message, "x-beds-error").find("BAD_REQUEST: body is not valid JSON"),
      std::string::npos)
      << HeaderString(truncated->message, "x-beds-error");
  EXPECT_NE(HeaderString(array->message, "x-beds-error").find("must be a JSON object"),
            std::string::npos);
  // The worker that saw them is fine: the pool is whole and still answers.
  const auto ping = Ping();
  EXPECT_EQ(PoolOf(ping, "rBroker").at("alive").as_int64(), 2);
  EXPECT_EQ(PoolOf(ping, "rBroker").at("respawns").as_int64(), 0);
}

TEST_F(NodeTest, WellFormedButWrongRequestsAreAnsweredNotParked) {
  StartNode();
  EXPECT_EQ(ErrorCode(Call("sys.read", R"({"template":"sys","op":"ping","limit":"ten"})")),
            "BAD_REQUEST");
  EXPECT_EQ(ErrorCode(Call("sys.read", R"({"template":"sys","op":"ping","nope":1})")),
            "BAD_REQUEST");
  EXPECT_EQ(ErrorCode(Call("sys.read", R"({"template":"Users","op":"fetch"})")),
            "UNKNOWN_TEMPLATE");
  EXPECT_EQ(ErrorCode(Call("sys.read", R"({"template":"sys","op":"explode"})")), "UNKNOWN_OP");
  EXPECT_EQ(ErrorCode(Call("sys.read", R"({"template":"sys","op":"call","call":"nothing"})")),
            "UNKNOWN_OP");
  auto injection = Call("sys.read", R"({"template":"x'; DROP TABLE users; --","op":"fetch"})");
  EXPECT_EQ(ErrorCode(injection), "UNKNOWN_TEMPLATE");
  EXPECT_TRUE(DrainDlq().empty());
}

TEST_F(NodeTest, ExpiredDeadlineIsAnsweredTimeoutUnrun) {
  StartNode();
  const int64_t past = NowUnixMs() - 1000;
  auto late = Call(
      "sys.read",
      R"({"template":"sys","op":"call","call":"fault","data":{"mode":"throw"},"deadline_ms":)" +
          std::to_string(past) + "}");
  EXPECT_EQ(ErrorCode(late), "TIMEOUT");  // unrun: the fault would have thrown
  EXPECT_TRUE(late.body.at("error").at("retryable").as_bool());
  const int64_t future = NowUnixMs() + 60000;
  auto on_time = Call(
      "sys.read", R"({"template":"sys","op":"ping","deadline_ms":)" + std::to_string(future) + "}");
  EXPECT_TRUE(on_time.ok);
  EXPECT_EQ(PoolOf(Ping(), "rBroker").at("retried").as_int64(), 0);
}

TEST_F(NodeTest, OversizedBodyIsTooLargeAndParked) {
  StartNode({.max_body_bytes = 4096});
  const std::string big =
      R"({"template":"sys","op":"ping","data":{"pad":")" + std::string(10000, 'x') + "\"}}";
  auto reply = Call("sys.read", big);
  EXPECT_EQ(ErrorCode(reply), "TOO_LARGE");
  const auto parked = WaitForParked(1);
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_EQ(parked[0].message.body.size(), big.size());
  EXPECT_NE(HeaderString(parked[0].message, "x-beds-error").find("TOO_LARGE"), std::string::npos);
  const std::string fits =
      R"({"template":"sys","op":"ping","data":{"pad":")" + std::string(3000, 'x') + "\"}}";
  EXPECT_TRUE(Call("sys.read", fits).ok);
}

TEST_F(NodeTest, ThrowingHandlerIsRetriedThroughTheRetryQueue) {
  StartNode({.max_retries = 3, .retry_backoff_ms = "[50, 100]"});
  auto reply =
      Call("sys.read",
           R"({"template":"sys","op":"call","call":"fault","data":{"mode":"throw","times":2}})");
  ASSERT_TRUE(reply.ok) << json::serialize(reply.body);
  EXPECT_EQ(reply.body.at("data").at("retries").as_int64(), 2);
  const auto pool = PoolOf(Ping(), "rBroker");
  EXPECT_EQ(pool.at("retried").as_int64(), 2);
  EXPECT_EQ(pool.at("parked").as_int64(), 0);
  EXPECT_TRUE(DrainDlq().empty());
}

TEST_F(NodeTest, MessageThatKeepsFailingIsParkedAfterMaxRetries) {
  StartNode({.max_retries = 2, .retry_backoff_ms = "[20]"});
  auto reply =
      Call("sys.read", R"({"template":"sys","op":"call","call":"fault","data":{"mode":"throw"}})");
  EXPECT_EQ(ErrorCode(reply), "INTERNAL");
  const auto parked = WaitForParked(1);
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_EQ(HeaderString(parked[0].message, "x-beds-retries"), "2");
  EXPECT_NE(HeaderString(parked[0].message, "x-beds-error").find("gave up after 2 retries"),
            std::string::npos)
      << HeaderString(parked[0].message, "x-beds-error");
  const auto pool = PoolOf(Ping(), "rBroker");
  EXPECT_EQ(pool.at("retried").as_int64(), 2);
  EXPECT_EQ(pool.at("parked").as_int64(), 1);
}

TEST_F(NodeTest, DyingWorkerIsReplacedAndItsMessageIsNotLost) {
  StartNode({.instances = 2});
  auto reply = Call("sys.read",
                    R"({"template":"sys","op":"call","call":"fault","data":{"mode":"die"}})", 20s);
  ASSERT_TRUE(reply.ok) << json::serialize(reply.body);  // answered on redelivery
  json::object pool;
  ASSERT_TRUE(WaitFor(
      [&] {
        pool = PoolOf(Ping(), "rBroker");
        return pool.at("respawns").as_int64() == 1 && pool.at("alive").as_int64() == 2;
      },
      10s))
      << json::serialize(pool);
  // And the replacement works: many more requests are all answered.
  for (int i = 0; i < 20; ++i)
    EXPECT_TRUE(Call("sys.read", R"({"template":"sys","op":"ping"})").ok);
}

TEST_F(NodeTest, RabbitMqRestartWhileIdle) {
  StartNode();
  ASSERT_TRUE(Call("sys.read", R"({"template":"sys","op":"ping"})").ok);
  ASSERT_TRUE(Servers("restart-rabbitmq"));
  // The client reconnects by itself; the node's workers must too.
  auto reply = Call("sys.read", R"({"template":"sys","op":"ping"})", 60s);
  ASSERT_TRUE(reply.ok);
  json::object pool;
  EXPECT_TRUE(WaitFor(
      [&] {
        pool = PoolOf(Ping(), "rBroker");
        return pool.at("connected").as_int64() == 2;
      },
      30s))
      << json::serialize(pool);
  EXPECT_GE(client_->reconnects(), 1u);
}

TEST_F(NodeTest, RabbitMqRestartUnderLoadAnswersEveryRequest) {
  StartNode({.instances = 2});
  constexpr int kTotal = 400;
  constexpr int kWindow = 32;
  std::set<std::string> outstanding;
  int sent = 0;
  int answered = 0;
  bool restarted = false;
  const auto give_up = std::chrono::steady_clock::now() + 120s;
  while (answered < kTotal && std::chrono::steady_clock::now() < give_up) {
    while (sent < kTotal && static_cast<int>(outstanding.size()) < kWindow) {
      auto id = client_->Send(
          "sys.read",
          R"({"template":"sys","op":"call","call":"fault","data":{"mode":"sleep","ms":2}})",
          {.delivery_mode = 2});
      ASSERT_TRUE(id) << id.error().message;
      outstanding.insert(*id);
      ++sent;
    }
    if (!restarted && answered >= kTotal / 4) {
      // Restart in the background while requests are in flight.
      restarted = true;
      std::thread([] { Servers("restart-rabbitmq"); }).detach();
    }
    auto r = client_->Receive(1s);
    ASSERT_TRUE(r) << r.error().message;
    if (!*r) continue;
    auto reply = protocol::DecodeReply((*r)->body);
    ASSERT_TRUE(reply && reply->ok) << (*r)->body;
    EXPECT_EQ(outstanding.erase((*r)->correlation_id), 1u);
    ++answered;
  }
  EXPECT_EQ(answered, kTotal);
  EXPECT_TRUE(outstanding.empty());
  EXPECT_GE(client_->reconnects(), 1u);
  // Wait for the background restart to have finished before the next test.
  EXPECT_TRUE(WaitFor(
      [&] { return Servers("status >/dev/null") && client::Client::Connect(Amqp()).has_value(); },
      60s));
}

TEST_F(NodeTest, SigtermUnderLoadExitsZeroAndLosesNothing) {
  NodeProcess& first = StartNode({.name = "first", .instances = 2, .prefetch = 8});
  constexpr int kTotal = 200;
  std::set<std::string> outstanding;
  for (int i = 0; i < kTotal; ++i) {
    auto id = client_->Send(
        "sys.read",
        R"({"template":"sys","op":"call","call":"fault","data":{"mode":"sleep","ms":10}})",
        {.delivery_mode = 2});
    ASSERT_TRUE(id);
    outstanding.insert(*id);
  }
  // Let some be answered, then stop the node in the middle of the stream.
  int answered = 0;
  while (answered < 20) {
    auto r = client_->Receive(5s);
    ASSERT_TRUE(r && *r);
    outstanding.erase((*r)->correlation_id);
    ++answered;
  }
  EXPECT_EQ(first.Signal(SIGTERM), 0) << first.Log();
  // Whatever it did not finish is still queued: a second node answers all of it.
  StartNode({.name = "second", .instances = 2});
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (!outstanding.empty() && std::chrono::steady_clock::now() < give_up) {
    auto r = client_->Receive(1s);
    ASSERT_TRUE(r);
    if (!*r) continue;
    auto reply = protocol::DecodeReply((*r)->body);
    EXPECT_TRUE(reply && reply->ok);
    outstanding.erase((*r)->correlation_id);
  }
  EXPECT_TRUE(outstanding.empty()) << outstanding.size() << " requests never answered";
}

TEST_F(NodeTest, SigintAlsoShutsDownCleanly) {
  NodeProcess& node = StartNode();
  EXPECT_EQ(node.Signal(SIGINT), 0);
}

TEST_F(NodeTest, AdminShutdownReachesTheNamedNodeOnly) {
  NodeProcess& a = StartNode({.name = "node-a"});
  NodeProcess& b = StartNode({.name = "node-b"});
  auto reply = Call("admin.shutdown.node-a",
                    R"({"template":"admin","op":"shutdown","data":{"mode":"drain"}})");
  EXPECT_TRUE(reply.ok) << json::serialize(reply.body);
  EXPECT_EQ(a.Wait(30s), std::optional<int>(0)) << a.Log();
  EXPECT_TRUE(b.running());
  // node-b still serves.
  auto ping = Call("sys.read", R"({"template":"sys","op":"ping"})");
  ASSERT_TRUE(ping.ok);
  EXPECT_EQ(ping.body.at("data").at("node").as_string(), "node-b");
  auto bad = Call("admin.shutdown.node-b",
                  R"({"template":"admin","op":"shutdown","data":{"mode":"now"}})");
  EXPECT_EQ(ErrorCode(bad), "VALIDATION");
  EXPECT_TRUE(b.running());
}

TEST_F(NodeTest, AdminPingAllIsAnsweredByEveryNode) {
  StartNode({.name = "node-a"});
  StartNode({.name = "node-b"});
  auto conn = amqp::Connection::Open(Amqp());
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->Consume("amq.rabbitmq.reply-to", true));
  amqp::Message m;
  m.body = R"({"template":"admin","op":"ping"})";
  m.reply_to = "amq.rabbitmq.reply-to";
  m.correlation_id = "ping-all";
  ASSERT_TRUE((*conn)->Publish(amqp::kEventsExchange, "admin.ping.all", m));
  std::set<std::string> nodes;
  WaitFor(
      [&] {
        auto d = (*conn)->Next(100ms);
        if (d && *d) {
          auto reply = protocol::DecodeReply((*d)->message.body);
          if (reply && reply->ok)
            nodes.insert(std::string(reply->body.at("data").at("node").as_string()));
        }
        return nodes.size() == 2;
      },
      10s);
  EXPECT_EQ(nodes, (std::set<std::string>{"node-a", "node-b"}));
}

TEST_F(NodeTest, ProductionNodeWithUnreachableBrokerFailsWithOneLine) {
  // Production, and an AMQP port nobody listens on.
  TempConfigDir dir(ConfigFiles{{"beds.toml",
                                 "[node]\nname = \"prodnode\"\nproduction = true\n"
                                 "[broker_services.app_server]\nhost = \"127.0.0.1\"\nport = 1\n"
                                 "[brokers.rBroker]\nbindings = [\"sys.read\"]\n"}});
  const auto r = RunCommand(std::string(BEDS_BINARY) + " run --config-dir " + dir.path());
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.output.find("beds: IPL failed: pre-flight: AMQP broker app_server at 127.0.0.1:1 is "
                          "not reachable"),
            std::string::npos)
      << r.output;
}

TEST_F(NodeTest, InvalidConfigIsFatalInEveryMode) {
  TempConfigDir dir(ConfigFiles{
      {"beds.toml", "[node]\nname = \"x\"\n[brokers.rBroker]\ninstances = \"lots\"\n"}});
  const auto r = RunCommand(std::string(BEDS_BINARY) + " run --config-dir " + dir.path());
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(
      r.output.find("beds.toml:4: key 'brokers.rBroker.instances': expected integer, got string"),
      std::string::npos)
      << r.output;
}

TEST_F(NodeTest, QuorumQueuesWorkToo) {
  StartNode({.max_retries = 2, .retry_backoff_ms = "[20]", .queue_type = "quorum"});
  EXPECT_TRUE(Call("sys.read", R"({"template":"sys","op":"ping"})").ok);
  auto retried =
      Call("sys.read",
           R"({"template":"sys","op":"call","call":"fault","data":{"mode":"throw","times":1}})");
  EXPECT_TRUE(retried.ok) << json::serialize(retried.body);
  EXPECT_EQ(ErrorCode(Call("sys.read", "not json")), "BAD_REQUEST");
  const auto parked = WaitForParked(1);
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_EQ(parked[0].message.body, "not json");
}

TEST_F(NodeTest, DevNodeWithUnreachableDatabaseRunsDegraded) {
  // Port 1: nothing listens. In development the pre-flight failure is logged, not fatal.
  NodeProcess& node = StartNode({.db_port = 1});
  EXPECT_TRUE(Call("sys.read", R"({"template":"sys","op":"ping"})").ok);
  EXPECT_NE(node.Log().find("database main (master) at 127.0.0.1:1 is not reachable"),
            std::string::npos);
}

TEST_F(NodeTest, ShutdownThatOutlivesTheGracePeriodExitsNonZeroAndTheWorkIsRedelivered) {
  NodeProcess& slow = StartNode({.name = "slow", .instances = 1, .shutdown_grace_ms = 300});
  auto id = client_->Send(
      "sys.read",
      R"({"template":"sys","op":"call","call":"fault","data":{"mode":"sleep","ms":5000}})",
      {.delivery_mode = 2});
  ASSERT_TRUE(id);
  // Its only worker is busy, so ask through the control queue: consumed = readiness ping + job.
  auto conn = amqp::Connection::Open(Amqp());
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->Consume("amq.rabbitmq.reply-to", true));
  ASSERT_TRUE(WaitFor(
      [&] {
        amqp::Message m;
        m.body = R"({"template":"admin","op":"ping"})";
        m.reply_to = "amq.rabbitmq.reply-to";
        if (!(*conn)->Publish(amqp::kEventsExchange, "admin.ping.slow", m)) return false;
        auto d = (*conn)->Next(500ms);
        if (!d || !*d) return false;
        auto reply = protocol::DecodeReply((*d)->message.body);
        return reply && reply->ok &&
               PoolOf(reply->body.at("data").as_object(), "rBroker").at("consumed").as_int64() >= 2;
      },
      10s));
  EXPECT_EQ(slow.Signal(SIGTERM), 1) << slow.Log();
  StartNode({.name = "rescuer"});
  auto r = client_->Receive(20s);
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((*r)->correlation_id, *id);
  EXPECT_TRUE(protocol::DecodeReply((*r)->body)->ok);
}

TEST_F(NodeTest, TlsToTheBrokerWithAVerifiedCertificate) {
  StartNode({.name = "tlsnode", .tls = true});
  auto ping = Call("sys.read", R"({"template":"sys","op":"ping"})");
  ASSERT_TRUE(ping.ok);
  EXPECT_EQ(ping.body.at("data").at("node").as_string(), "tlsnode");
  // The first worker to finish its TLS handshake answers the ping; the second may still be in
  // its own (slow under the sanitizers): await it rather than race it.
  int64_t connected = 0;
  WaitFor(
      [&] {
        auto p = Call("sys.read", R"({"template":"sys","op":"ping"})");
        connected =
            p.ok ? PoolOf(p.body.at("data").as_object(), "rBroker").at("connected").as_int64() : 0;
        return connected == 2;
      },
      10s);
  EXPECT_EQ(connected, 2);
}

TEST_F(NodeTest, TlsWithAnUnknownCertificateAuthorityIsRefused) {
  NodeOptions o{.name = "distrustful", .fault_injection = false, .production = true, .tls = true};
  o.tls_ca_file = std::string(BEDS_TEST_VAR) + "/rabbitmq/tls/wrong-ca.pem";
  nodes_.push_back(std::make_unique<NodeProcess>(vhost_, o));
  NodeProcess& node = *nodes_.back();
  EXPECT_EQ(node.Wait(30s), std::optional<int>(3)) << node.Log();
  EXPECT_NE(
      node.Log().find("beds: IPL failed: AMQP topology: cannot connect to AMQP broker at "
                      "localhost:" +
                      std::to_string(BEDS_TEST_AMQPS_PORT) + ": SSL peer cert verification failed"),
      std::string::npos)
      << node.Log();
}

TEST_F(NodeTest, ConfigCheckPrintsTheMergedConfigWithSecretsMasked) {
  TempConfigDir dir(ConfigFiles{
      {"beds.toml", "[node]\nname = \"checked\"\n[broker_services.app_server]\npass = \"\"\n"},
      {"env_qa.toml", "[node]\nproduction = true\n"}});
  const auto r = RunCommand("BEDS_ENV=qa BEDS__BROKER_SERVICES__APP_SERVER__PASS=hunter2 " +
                            std::string(BEDS_BINARY) + " config check --config-dir " + dir.path());
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(
      r.output.find("# env qa, files: " + dir.path() + "/beds.toml " + dir.path() + "/env_qa.toml"),
      std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("pass = '****'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("production = true"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("hunter2"), std::string::npos) << r.output;
}

TEST_F(NodeTest, BedsctlListsAndReplaysTheDlq) {
  NodeProcess& node = StartNode();
  EXPECT_EQ(ErrorCode(Call("sys.read", "{broken")), "BAD_REQUEST");
  auto conn = amqp::Connection::Open(Amqp());
  ASSERT_TRUE(conn);
  ASSERT_TRUE(
      WaitFor([&] { return (*conn)->MessageCount("beds.rBroker.dlq").value_or(0) == 1; }, 10s));
  ASSERT_EQ(node.Signal(SIGTERM), 0);  // nobody consumes beds.rBroker now

  const std::string ctl = std::string(BEDSCTL_BINARY) + " --config-dir " + node.config_dir();
  const auto list = RunCommand(ctl + " dlq list rBroker");
  ASSERT_EQ(list.exit_code, 0) << list.output;
  const std::string& listed = list.output;
  EXPECT_NE(listed.find(R"("body":"{broken")"), std::string::npos) << listed;
  EXPECT_NE(listed.find("BAD_REQUEST: body is not valid JSON"), std::string::npos) << listed;
  EXPECT_NE(listed.find("1 message(s) in beds.rBroker.dlq"), std::string::npos) << listed;
  // Listing leaves the message where it was.
  EXPECT_TRUE(
      WaitFor([&] { return (*conn)->MessageCount("beds.rBroker.dlq").value_or(0) == 1; }, 5s));

  const auto replay = RunCommand(ctl + " dlq replay rBroker");
  ASSERT_EQ(replay.exit_code, 0) << replay.output;
  EXPECT_TRUE(WaitFor(
      [&] {
        return (*conn)->MessageCount("beds.rBroker.dlq").value_or(99) == 0 &&
               (*conn)->MessageCount("beds.rBroker").value_or(99) == 1;
      },
      5s));
  auto moved = (*conn)->Get("beds.rBroker");
  ASSERT_TRUE(moved && *moved);
  EXPECT_EQ((*moved)->message.body, "{broken");
  EXPECT_FALSE((*moved)->message.headers.contains("x-beds-error"));
}

TEST_F(NodeTest, AnAbsurdRetriesHeaderIsClampedNotTrusted) {
  StartNode({.max_retries = 3});
  auto conn = amqp::Connection::Open(Amqp());
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->Consume("amq.rabbitmq.reply-to", true));
  amqp::Message m;
  m.body = R"({"template":"sys","op":"call","call":"fault","data":{"mode":"throw"}})";
  m.reply_to = "amq.rabbitmq.reply-to";
  m.headers["x-beds-retries"] = int64_t{1} << 31;  // would wrap to a negative int
  ASSERT_TRUE((*conn)->Publish(amqp::kEventsExchange, "sys.read", m));
  std::optional<protocol::Reply> reply;
  WaitFor(
      [&] {
        auto d = (*conn)->Next(100ms);
        if (d && *d) reply = protocol::DecodeReply((*d)->message.body).value_or(protocol::Reply{});
        return reply.has_value();
      },
      10s);
  ASSERT_TRUE(reply);
  EXPECT_EQ(ErrorCode(*reply), "INTERNAL");  // parked at once, not retried 2^31 times
  const auto parked = DrainDlq();
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_NE(HeaderString(parked[0].message, "x-beds-error").find("gave up after 1000000 retries"),
            std::string::npos);
  EXPECT_EQ(PoolOf(Ping(), "rBroker").at("retried").as_int64(), 0);
}

TEST_F(NodeTest, ParkingPutsBackADlqDeletedByHand) {
  StartNode();
  auto conn = amqp::Connection::Open(Amqp());
  ASSERT_TRUE(conn);
  ASSERT_TRUE((*conn)->DeleteQueue("beds.rBroker.dlq"));
  // Unroutable now: a confirm alone would have "parked" it into nothing.
  EXPECT_EQ(ErrorCode(Call("sys.read", "{lost?")), "BAD_REQUEST");
  const auto parked = WaitForParked(1);
  ASSERT_EQ(parked.size(), 1u);
  EXPECT_EQ(parked[0].message.body, "{lost?");
  EXPECT_NE(HeaderString(parked[0].message, "x-beds-error").find("BAD_REQUEST"), std::string::npos);
}

}  // namespace
}  // namespace beds::testing
