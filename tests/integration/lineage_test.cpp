// Event lineage end to end: dispatch nodes emit request, adapter and audit events on beds.logs
// through the AMQP log sink; an admin node's `logs` handler stores them in msLogs (the Logs
// template, on a SQLite file the nodes share); `lineage/fetch` answers the tree. Real RabbitMQ,
// real MariaDB, real `beds` processes.
#include "core/lineage.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "integration/node_fixture.hpp"

namespace beds::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

// One unlabelled sample of a Prometheus text scrape (the exact-line parser is enough for our own
// plain counters; the admin tests parse whole scrapes with python3-prometheus-client).
std::optional<double> Sample(const std::string& scrape, const std::string& name) {
  std::istringstream in(scrape);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return std::nullopt;
}

struct Flat {
  std::string event_id, parent_id, kind, node, op;
  int64_t depth = 0;
};

// The tree as a list, checking on the way that every child names its parent and sits one level
// below it.
void Flatten(const json::object& e, const Flat* parent, std::vector<Flat>& out) {
  Flat f;
  f.event_id = std::string(e.at("event_id").as_string());
  f.parent_id = std::string(e.at("parent_id").as_string());
  f.kind = std::string(e.at("kind").as_string());
  f.node = std::string(e.at("node").as_string());
  f.op = std::string(e.at("op").as_string());
  f.depth = e.at("depth").as_int64();
  if (parent) {
    EXPECT_EQ(f.parent_id, parent->event_id);
    EXPECT_EQ(f.depth, parent->depth + 1) << f.event_id;
  }
  out.push_back(f);
  const Flat self = f;
  for (const auto& c : e.at("children").as_array()) Flatten(c.as_object(), &self, out);
}

class LineageTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (HasFatalFailure()) return;
    db_ = TestDatabaseName();
    std::vector<std::string> schema;
    for (const auto& e : fs::directory_iterator(kSource + "/schema/mariadb")) {
      if (e.path().extension() == ".sql") schema.push_back(e.path().string());
    }
    std::sort(schema.begin(), schema.end());
    ASSERT_TRUE(FreshDatabase(db_, schema));
    dir_ = fs::temp_directory_path() / ("beds-lineage-it-" + NewGuid());
    fs::create_directories(dir_ / "templates");
    for (const auto& e : fs::directory_iterator(kSource + "/templates")) {
      fs::copy_file(e.path(), dir_ / "templates" / e.path().filename());
    }
  }
  void TearDown() override {
    NodeTest::TearDown();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  // A dispatch node; all nodes share the templates and the SQLite file holding msLogs.
  NodeOptions App(const std::string& name) const {
    NodeOptions o;
    o.name = name;
    o.database = db_;
    o.templates_dir = (dir_ / "templates").string();
    o.docs_path = (dir_ / "docs.sqlite").string();
    o.instances = 2;
    o.prefetch = 1;  // spreads concurrent requests over every worker of every node
    o.logging_extra = "metrics_interval_s = 0\n";
    return o;
  }
  NodeOptions Admin(const std::string& name = "admin") const {
    NodeOptions o = App(name);
    o.dispatch = false;
    o.extra_toml =
        "[brokers.adminLogsBroker]\nhandler = \"logs\"\ninstances = 1\nprefetch = 256\n"
        "batch_ms = 50\nbindings = [\"log.#\", \"audit.#\"]\n";
    return o;
  }

  json::object Request(const std::string& key, const std::string& body) {
    auto reply = Call(key, body);
    EXPECT_TRUE(reply.ok) << body << " → " << json::serialize(reply.body);
    return reply.body.is_object() ? reply.body.as_object() : json::object{};
  }

  // lineage/fetch until the tree holds at least `events` events (they arrive asynchronously).
  json::object WaitForTree(const std::string& event_id, int64_t events) {
    json::object tree;
    WaitFor(
        [&] {
          auto reply =
              Call("sys.read", R"({"template":"lineage","op":"fetch","id":")" + event_id + "\"}");
          if (!reply.ok) return false;
          tree = reply.body.at("data").as_object();
          return tree.at("events").as_int64() >= events;
        },
        20s);
    return tree;
  }

  // Events of one node in the log store.
  int64_t Stored(const std::string& where) {
    auto reply = Call("rec.read", R"({"template":"Logs","op":"count","where":)" + where + "}");
    EXPECT_TRUE(reply.ok) << json::serialize(reply.body);
    return reply.ok ? reply.body.at("count").as_int64() : -1;
  }

  // The same, read from the SQLite file itself: a request would add events of its own.
  int64_t StoredInFile(const std::string& node) {
    sqlite3* db = nullptr;
    int64_t n = -1;
    if (sqlite3_open_v2((dir_ / "docs.sqlite").c_str(), &db, SQLITE_OPEN_READONLY, nullptr) ==
        SQLITE_OK) {
      sqlite3_busy_timeout(db, 5000);
      sqlite3_stmt* st = nullptr;
      const char* sql = "SELECT count(*) FROM msLogs WHERE json_extract(doc, '$.node') = ?";
      if (sqlite3_prepare_v2(db, sql, -1, &st, nullptr) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, node.c_str(), -1, SQLITE_TRANSIENT);
        if (sqlite3_step(st) == SQLITE_ROW) n = sqlite3_column_int64(st, 0);
      }
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
  }

  std::string Scrape(int port) {
    return RunCommand("curl -s http://127.0.0.1:" + std::to_string(port) + "/metrics").output;
  }

  std::string db_;
  fs::path dir_;
};

TEST_F(LineageTest, ARequestTreeIsCompleteAcrossTwoNodesWithAFanOutOf24Children) {
  StartNode(Admin());
  StartNode(App("appa"));
  StartNode(App("appb"));

  // The root: a write (request, adapter call, audit record).
  auto root = Request(
      "rel.write",
      R"({"template":"Users","op":"create","data":{"email":"ann@example.org","name":"Ann"}})");
  auto parent = client::LineageOfReply(json::serialize(root));
  ASSERT_TRUE(parent) << parent.error().message;

  // 24 child requests on its behalf, all in flight at once.
  std::vector<client::Client::Request> children;
  for (int i = 0; i < 24; ++i) {
    auto body = client::AsChildOf(*parent, R"({"template":"Users","op":"fetch","id":"1"})");
    ASSERT_TRUE(body);
    children.push_back({"rel.read", *body, {}});
  }
  auto replies = client_->FanOut(std::move(children), 20s);
  ASSERT_TRUE(replies) << replies.error().message;
  std::set<std::string> child_ids;
  for (const auto& r : *replies) {
    auto reply = protocol::DecodeReply(r.body);
    ASSERT_TRUE(reply && reply->ok) << r.body;
    child_ids.insert(reply->event_id);
  }
  EXPECT_EQ(child_ids.size(), 24u);

  // 3 events of the root, 2 of each child (its request and its adapter call).
  const int64_t expected = 3 + 24 * 2;
  json::object tree = WaitForTree(parent->event_id, expected);
  ASSERT_TRUE(tree.contains("root")) << json::serialize(tree);
  EXPECT_FALSE(tree.at("truncated").as_bool());
  std::vector<Flat> flat;
  Flatten(tree.at("root").as_object(), nullptr, flat);

  std::set<std::string> ids;
  std::map<std::string, int> kinds;
  std::set<std::string> child_nodes;
  for (const auto& f : flat) {
    EXPECT_TRUE(ids.insert(f.event_id).second) << "twice: " << f.event_id;
    ++kinds[f.kind];
    if (f.kind == "request" && f.depth == 1) {
      EXPECT_TRUE(child_ids.contains(f.event_id)) << f.event_id;
      child_nodes.insert(f.node);
    }
  }
  // Log lines a request causes (a worker's first database connection, say) belong to its tree
  // too; the request, adapter and audit events are exact.
  EXPECT_EQ(kinds["request"], 25);
  EXPECT_EQ(kinds["adapter"], 25);
  EXPECT_EQ(kinds["audit"], 1);
  EXPECT_EQ(static_cast<int64_t>(flat.size()), tree.at("events").as_int64());
  EXPECT_EQ(flat.front().event_id, parent->event_id);
  EXPECT_EQ(flat.front().depth, 0);
  EXPECT_EQ(flat.front().kind, "request");
  // Children were served by both dispatch nodes.
  EXPECT_EQ(child_nodes, (std::set<std::string>{"appa", "appb"}));
  for (const auto& f : flat) {
    if (f.kind == "adapter" && f.depth == 2) {
      EXPECT_TRUE(child_ids.contains(f.parent_id));
    }
  }
}

// Before: events emitted before the first admin node ever started were gone (no queue was bound
// to beds.logs yet), while the sink counted them as published with 0 drops.
TEST_F(LineageTest, EventsEmittedBeforeTheFirstAdminNodeStartsAreStoredOnceItDoes) {
  const int port = FreePort();
  NodeOptions app = App("appserver");
  app.extra_toml = "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
  NodeProcess& node = StartNode(app);
  auto root = Request(
      "rel.write",
      R"({"template":"Users","op":"create","data":{"email":"early@example.org","name":"Early"}})");
  const std::string root_id(root.at("event_id").as_string());
  // The request's own events came back and wait in the node's spill file.
  const fs::path spill = fs::path(node.config_dir()) / "spill.events";
  auto spilled = [&] {
    for (const auto& f : {spill, fs::path(spill.string() + ".replay")}) {
      std::ifstream in(f);
      const std::string text((std::istreambuf_iterator<char>(in)), {});
      if (text.find(root_id) != std::string::npos) return true;
    }
    return false;
  };
  ASSERT_TRUE(WaitFor(spilled, 10s)) << "the request's events are not in " << spill;
  std::string scrape = Scrape(port);
  EXPECT_GE(Sample(scrape, "beds_log_events_unrouted_total").value_or(0), 3) << scrape;
  EXPECT_EQ(Sample(scrape, "beds_log_events_published_total"), 0.0)
      << "no queue took anything, so nothing counts as published\n"
      << scrape;
  EXPECT_EQ(Sample(scrape, "beds_log_sink_drops_total"), 0.0) << scrape;

  StartNode(Admin());
  // The request, its database call and its audit record, all emitted before the admin existed.
  const auto tree = WaitForTree(root_id, 3);
  EXPECT_GE(tree.at("events").as_int64(), 3) << json::serialize(tree);
  EXPECT_TRUE(WaitFor(
      [&] {
        scrape = Scrape(port);
        return Sample(scrape, "beds_log_events_published_total").value_or(0) >= 3;
      },
      10s))
      << scrape;
}

TEST_F(LineageTest, TheLogSinkRidesOutItsBrokerGoingAwayAndCountsWhatItDropped) {
  // The sink publishes as a user of its own, so its broker can go away (refused logins, closed
  // connections) while requests keep flowing on the node's own connection.
  const std::string user = "itlogs" + std::to_string(getpid());
  ASSERT_TRUE(Servers("user " + user + " right " + vhost_));
  const int port = FreePort();
  StartNode(Admin());
  NodeOptions app = App("appserver");
  app.logging_extra =
      "metrics_interval_s = 0\nbroker_service = \"logs\"\nbuffer_events = 16\n"
      "spill_max_bytes = 40000\n";
  app.extra_toml = "[broker_services.logs]\nhost = \"127.0.0.1\"\nport = " +
                   std::to_string(BEDS_TEST_AMQP_PORT) + "\nuser = \"" + user +
                   "\"\npass = \"right\"\nvhost = \"" + vhost_ +
                   "\"\n[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
  StartNode(app);
  Request("rel.write",
          R"({"template":"Users","op":"create","data":{"email":"ann@example.org","name":"Ann"}})");

  auto timed_reads = [&](int n) {
    std::vector<double> ms;
    for (int i = 0; i < n; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      Request("rel.read", R"({"template":"Users","op":"fetch","id":"1"})");
      ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    return ms;
  };
  const auto before = timed_reads(30);

  // The sink's broker goes away: its password no longer works and its connection is closed.
  ASSERT_TRUE(Servers("user " + user + " wrong " + vhost_));
  ASSERT_TRUE(Servers("close-user " + user));
  const auto during = timed_reads(150);
  const double p50_before = before[before.size() / 2];
  const double p50_during = during[during.size() / 2];
  EXPECT_LE(p50_during, 3 * p50_before + 2) << "p50 " << p50_before << " → " << p50_during << " ms";
  EXPECT_LT(during.back(), 1000) << "slowest request during the outage: " << during.back() << " ms";

  // The sink moves what it still buffers to the spill file at its next connection attempt; once
  // the buffer is empty, nothing more can be dropped.
  std::string scrape;
  EXPECT_TRUE(WaitFor(
      [&] {
        scrape = Scrape(port);
        return Sample(scrape, "beds_log_events_buffered") == 0.0;
      },
      15s));
  EXPECT_GT(Sample(scrape, "beds_log_events_spilled_total").value_or(0), 0) << scrape;
  const double dropped = Sample(scrape, "beds_log_sink_drops_total").value_or(-1);
  EXPECT_GT(dropped, 0) << "the spill file (40000 bytes) should have filled up";

  // Back: the spill file is replayed, and the store ends up with every event not dropped.
  ASSERT_TRUE(Servers("user " + user + " right " + vhost_));
  double emitted = 0;
  int64_t stored = 0;
  const bool settled = WaitFor(
      [&] {
        scrape = Scrape(port);
        emitted = Sample(scrape, "beds_log_events_emitted_total").value_or(-1);
        const double spill = Sample(scrape, "beds_log_spill_bytes").value_or(-1);
        stored = StoredInFile("appserver");
        return spill == 0 && static_cast<double>(stored) == emitted - dropped;
      },
      30s);
  EXPECT_TRUE(settled) << "stored " << stored << ", emitted " << emitted << ", dropped " << dropped
                       << "\n"
                       << scrape;
  EXPECT_EQ(Sample(scrape, "beds_log_sink_drops_total").value_or(-1), dropped)
      << "drops after the broker returned";
  EXPECT_GT(Sample(scrape, "beds_log_events_replayed_total").value_or(0), 0);
}

TEST_F(LineageTest, AnAdminNodeKilledMidStreamLosesNoEventAndStoresNoneTwice) {
  StartNode(Admin("admin"));
  StartNode(App("appserver"));
  Request("rel.write",
          R"({"template":"Users","op":"create","data":{"email":"ann@example.org","name":"Ann"}})");
  const std::string fetch = R"({"template":"Users","op":"fetch","id":"1"})";
  const std::string counted = R"({"kind":"request","template":"Users","op":"fetch"})";
  for (int i = 0; i < 150; ++i) Request("rel.read", fetch);
  // Killed while it stores: whatever batch it held unacked is redelivered to its successor.
  NodeProcess& first = *nodes_.front();
  EXPECT_EQ(first.Signal(SIGKILL), 128 + SIGKILL);
  for (int i = 0; i < 150; ++i) Request("rel.read", fetch);
  StartNode(Admin("admin2"));
  for (int i = 0; i < 100; ++i) Request("rel.read", fetch);

  EXPECT_TRUE(WaitFor([&] { return Stored(counted) >= 400; }, 30s)) << Stored(counted);
  // Duplicates would be stored under the same event id, so the count is also the distinct count;
  // nothing beyond the 400 requests may appear either.
  EXPECT_EQ(Stored(counted), 400);
  EXPECT_EQ(Stored(R"({"kind":"adapter","template":"Users","op":"fetch"})"), 400);
}

}  // namespace
}  // namespace beds::testing

namespace beds::testing {
namespace {

TEST_F(LineageTest, ACalgonJobIsAChildOfItsSubmitInTheTree) {
  StartNode(Admin());
  NodeOptions app = App("appserver");
  app.extra_toml =
      "[brokers.cBroker]\nhandler = \"calgon\"\ninstances = 1\nprefetch = 1\nbindings = []\n"
      "max_retries = 1\nretry_backoff_ms = [50]\n";
  StartNode(app);
  auto submitted = Request(
      "rel.write",
      R"({"template":"Users","op":"create","async":true,"data":{"email":"job@example.org"}})");
  ASSERT_TRUE(submitted.contains("ticket")) << json::serialize(submitted);
  const std::string ticket(submitted.at("ticket").as_string());
  auto done = Request("sys.read", R"({"template":"calgon","op":"wait","id":")" + ticket +
                                      R"(","data":{"timeout_ms":10000}})");
  ASSERT_EQ(done.at("data").at("status"), json::value("done")) << json::serialize(done);
  // The submit (the ticket's own event), the job's request under it, and under that the job's
  // database call and its audit record.
  const auto tree = WaitForTree(ticket, 4);
  EXPECT_GE(tree.at("events").as_int64(), 4) << json::serialize(tree);
  const std::string text = json::serialize(tree);
  EXPECT_NE(text.find("\"audit\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"parent_id\":\"" + ticket + "\""), std::string::npos) << text;
}

}  // namespace
}  // namespace beds::testing
