// Exactly-once writes (docs/protocol.md "Exactly once") end to end: the real `beds` binary, the
// fixture's RabbitMQ and MariaDB, the test domain of tests/integration/once/ (a create that works
// on after its INSERT, so a node killed mid-request has a real window to lose or double a write).
#include "core/once.hpp"

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "adapters/mariadb/mariadb.hpp"
#include "core/lineage.hpp"
#include "core/ops.hpp"
#include "integration/node_fixture.hpp"
#include "templates/templates.hpp"

namespace beds::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kDomain = kSource + "/tests/integration/once";

class OnceTest : public DomainTest {
 protected:
  void SetUp() override {
    SetUpDomain({kDomain + "/onc_items.sql"},
                {kDomain + "/onc_items_rel.toml", kDomain + "/onc_notes_rec.toml"});
  }

  NodeOptions Options() const {
    NodeOptions o = DomainOptions();
    o.instances = 4;
    return o;
  }

  json::object Write(const std::string& body, const client::SendOptions& options = {}) {
    auto reply = client_->Call("rel.write", body, 15s, options);
    EXPECT_TRUE(reply.has_value()) << (reply ? "" : reply.error().message);
    if (!reply) return {};
    auto decoded = json::parse(reply->body);
    return decoded.is_object() ? decoded.as_object() : json::object{};
  }

  // Sends `n` creates at once (each named "{prefix}{i}"), killing the node with SIGKILL and
  // starting it again `kills` times while they run; returns the replies by name.
  std::map<std::string, json::object> CreatesThroughKills(const std::string& key,
                                                          const std::string& template_name, int n,
                                                          int kills, bool with_keys,
                                                          const std::string& prefix) {
    const NodeOptions o = Options();
    std::map<std::string, std::string> names;  // correlation id → name
    for (int i = 0; i < n; ++i) {
      const std::string name = prefix + std::to_string(i);
      const std::string body =
          template_name == "Items"
              ? R"({"template":"Items","op":"create","data":{"name":")" + name +
                    R"(","work_ms":20}})"
              : R"({"template":"Notes","op":"create","data":{"text":")" + name + R"("}})";
      client::SendOptions send;
      send.delivery_mode = 2;
      send.add_idempotency_key = with_keys;  // without: the message id is the identity
      auto id = client_->Send(key, body, send);
      EXPECT_TRUE(id.has_value());
      if (id) names[*id] = name;
    }
    std::map<std::string, json::object> replies;
    int killed = 0;
    const auto until = std::chrono::steady_clock::now() + 120s;
    while (replies.size() < names.size() && std::chrono::steady_clock::now() < until) {
      if (killed < kills && replies.size() >= names.size() * (killed + 1) / (kills + 2)) {
        nodes_.back()->Signal(SIGKILL);
        ++killed;
        StartNode(o);
      }
      auto r = client_->Receive(500ms);
      if (!r || !*r) continue;
      auto it = names.find((*r)->correlation_id);
      if (it == names.end()) continue;
      auto body = json::parse((*r)->body);
      replies[it->second] = body.is_object() ? body.as_object() : json::object{};
    }
    EXPECT_EQ(killed, kills);
    return replies;
  }
};

bool Ok(const json::object& reply) { return reply.contains("ok") && reply.at("ok").as_bool(); }

std::string CodeOf(const json::object& reply) {
  if (!reply.contains("error")) return "(ok)";
  return std::string(reply.at("error").at("code").as_string());
}

TEST_F(OnceTest, ARepeatedWriteIsAnsweredFromItsRecord) {
  StartNode(Options());
  client::SendOptions with_key;
  with_key.idempotency_key = "order-7";
  const std::string body = R"({"template":"Items","op":"create","data":{"name":"first"}})";
  auto first = Write(body, with_key);
  ASSERT_TRUE(Ok(first)) << json::serialize(first);
  EXPECT_FALSE(first.contains("replayed"));
  auto again = Write(body, with_key);
  ASSERT_TRUE(Ok(again)) << json::serialize(again);
  EXPECT_EQ(again.at("replayed"), json::value(true));
  EXPECT_EQ(again.at("data"), first.at("data"));
  EXPECT_NE(again.at("event_id"), first.at("event_id"));
  // The same fields in another order are the same request.
  auto reordered = Write(
      R"({"data":{"name":"first"},"op":"create","template":"Items","idempotency_key":"order-7"})");
  EXPECT_EQ(reordered.at("replayed"), json::value(true)) << json::serialize(reordered);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items"), "1");
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM beds_idempotency"), "1");

  // The key with another request: CONFLICT, and nothing is run.
  auto reused = Write(R"({"template":"Items","op":"create","data":{"name":"second"}})", with_key);
  EXPECT_EQ(CodeOf(reused), "CONFLICT") << json::serialize(reused);
  EXPECT_NE(json::serialize(reused).find("idempotency key reused with a different request"),
            std::string::npos);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items"), "1");

  // Another key: applied.
  client::SendOptions other;
  other.idempotency_key = "order-8";
  EXPECT_TRUE(Ok(Write(body, other)));
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items"), "2");

  // Keys BEDS cannot record: VALIDATION, nothing run.
  auto too_long = Write(R"({"template":"Items","op":"create","data":{"name":"x"},)"
                        R"("idempotency_key":")" +
                        std::string(201, 'k') + R"("})");
  EXPECT_EQ(CodeOf(too_long), "VALIDATION") << json::serialize(too_long);
  auto not_string =
      Write(R"({"template":"Items","op":"create","data":{"name":"x"},"idempotency_key":17})");
  EXPECT_EQ(CodeOf(not_string), "VALIDATION") << json::serialize(not_string);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items"), "2");
}

// The REL adapter straight, as a dispatch worker drives it at the end of a cycle: a cycle's
// exactly-once writes run in one transaction and are recorded in one round trip, yet each is
// answered as if it ran alone.
class WriteCycleTest : public OnceTest {
 protected:
  void SetUp() override {
    OnceTest::SetUp();
    std::ifstream in(kDomain + "/onc_items_rel.toml");
    std::stringstream text;
    text << in.rdbuf();
    auto t = templates::Parse(text.str(), "onc_items_rel.toml");
    ASSERT_TRUE(t) << t.error().message;
    items_ = std::move(*t);
    config::DatabaseSettings db;
    db.name = "main";
    db.port = BEDS_TEST_MARIADB_PORT;
    db.pass = "beds";
    db.database = db_;
    core_ = adapters::mariadb::MakeCore(db);
  }

  // A create of `name` under idempotency key `key`.
  beds::Write Create(const std::string& name, const std::string& key, int work_ms = 0) {
    Request r;
    r.template_name = "Items";
    r.op = "create";
    r.data = json::object{{"name", name}, {"work_ms", work_ms}};
    const OnceScope once{OnceIdentityOfKey("Items", "tester", key), true, 600, false};
    auto w = PrepareWrite(items_, *items_.Op("create"), r, &once);
    EXPECT_TRUE(w) << w.error().message;
    return std::move(*w);
  }

  std::vector<Result<OpResult>> Apply(std::vector<beds::Write> writes) {
    auto results = core_->ApplyWrites(writes);
    EXPECT_EQ(results.size(), writes.size());
    return results;
  }

  static std::string NameOf(const Result<OpResult>& r) {
    if (!r || r->data.empty()) return r ? "(no rows)" : std::string(CodeName(r.error().code));
    return std::string(r->data[0].at("name").as_string());
  }

  Template items_;
  std::unique_ptr<NamasteCore> core_;
};

TEST_F(WriteCycleTest, ACycleOfWritesCommitsTogetherAndEachAnswersAsAlone) {
  // Without the one-write record procedure, only the cycle's shared one can record these.
  Scalar("DROP PROCEDURE beds_once_commit");
  auto first = Apply({Create("a", "k-a"), Create("b", "k-b"), Create("çé✓", "k-c")});
  for (size_t i = 0; i < first.size(); ++i) {
    ASSERT_TRUE(first[i]) << i << ": " << first[i].error().message;
    EXPECT_FALSE(first[i]->replayed);
  }
  EXPECT_EQ(NameOf(first[0]) + NameOf(first[1]) + NameOf(first[2]), "abçé✓");
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items"), "3");
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM beds_idempotency"), "3");
  EXPECT_EQ(Scalar("SELECT GROUP_CONCAT(name ORDER BY id SEPARATOR '') FROM onc_items"), "abçé✓");

  std::ifstream schema(kSource + "/schema/mariadb/000_beds_idempotency.sql");
  std::stringstream objects;
  objects << schema.rdbuf();
  ASSERT_EQ(Sql(db_, objects.str()).exit_code, 0);

  // The same cycle again (a client re-sending all three): each answered from its record.
  auto again = Apply({Create("a", "k-a"), Create("b", "k-b"), Create("çé✓", "k-c")});
  for (size_t i = 0; i < again.size(); ++i) {
    ASSERT_TRUE(again[i]) << i << ": " << again[i].error().message;
    EXPECT_TRUE(again[i]->replayed) << i;
    EXPECT_EQ(again[i]->data, first[i]->data) << i;
  }
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items"), "3");
}

TEST_F(WriteCycleTest, AFailingWriteInACycleFailsAloneAndTheOthersApplyOnceInOrder) {
  auto results =
      Apply({Create("d", "k-d"), Create("bad", "k-bad", -1),  // the procedure SIGNALs
             Create("e", "k-e"), Create("d", "k-d"),          // a repeat of the first, same cycle
             Create("other", "k-e"),                          // k-e reused for another request
             Create("f", "k-f")});
  ASSERT_TRUE(results[0]) << results[0].error().message;
  EXPECT_EQ(NameOf(results[0]), "d");
  ASSERT_FALSE(results[1]);
  EXPECT_NE(results[1].error().message.find("work_ms must not be negative"), std::string::npos)
      << results[1].error().message;
  ASSERT_TRUE(results[2]) << results[2].error().message;
  EXPECT_EQ(NameOf(results[2]), "e");
  ASSERT_TRUE(results[3]) << results[3].error().message;
  EXPECT_TRUE(results[3]->replayed);
  EXPECT_EQ(results[3]->data, results[0]->data);
  ASSERT_FALSE(results[4]);
  EXPECT_EQ(results[4].error().code, Code::kConflict) << results[4].error().message;
  ASSERT_TRUE(results[5]) << results[5].error().message;
  EXPECT_EQ(NameOf(results[5]), "f");
  EXPECT_EQ(Scalar("SELECT GROUP_CONCAT(name ORDER BY id SEPARATOR '') FROM onc_items"), "def");
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM beds_idempotency"), "3");
}

TEST_F(WriteCycleTest, WithoutTheSharedRecordProcedureEachWriteStillAppliesOnce) {
  // Objects installed before beds_once_commit_many existed: the cycle falls back to one write
  // at a time, still exactly once.
  Scalar("DROP PROCEDURE beds_once_commit_many");
  auto results = Apply({Create("g", "k-g"), Create("h", "k-h"), Create("g", "k-g")});
  ASSERT_TRUE(results[0] && results[1] && results[2]);
  EXPECT_FALSE(results[0]->replayed);
  EXPECT_FALSE(results[1]->replayed);
  EXPECT_TRUE(results[2]->replayed);
  EXPECT_EQ(Scalar("SELECT GROUP_CONCAT(name ORDER BY id SEPARATOR '') FROM onc_items"), "gh");
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM beds_idempotency"), "2");
}

TEST_F(OnceTest, ARedeliveredMessageIsAnsweredFromItsRecord) {
  StartNode(Options());
  // One message published twice (same message id, same body, no key): a broker redelivery as
  // the node sees it.
  client::SendOptions send;
  send.message_id = "msg-" + vhost_;
  send.add_idempotency_key = false;
  const std::string body = R"({"template":"Items","op":"create","data":{"name":"again"}})";
  auto first = Write(body, send);
  auto second = Write(body, send);
  ASSERT_TRUE(Ok(first)) << json::serialize(first);
  ASSERT_TRUE(Ok(second)) << json::serialize(second);
  EXPECT_FALSE(first.contains("replayed"));
  EXPECT_EQ(second.at("replayed"), json::value(true));
  EXPECT_EQ(second.at("data"), first.at("data"));
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items"), "1");
  // The same message id on another request is another write (a client reusing ids loses
  // nothing).
  auto other = Write(R"({"template":"Items","op":"create","data":{"name":"other"}})", send);
  ASSERT_TRUE(Ok(other)) << json::serialize(other);
  EXPECT_FALSE(other.contains("replayed"));
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items"), "2");
}

void ExpectEachAppliedOnce(const std::map<std::string, json::object>& replies, int n,
                           const std::string& stored) {
  EXPECT_EQ(replies.size(), static_cast<size_t>(n)) << "every request is answered";
  int ok = 0;
  for (const auto& [name, reply] : replies) {
    if (Ok(reply))
      ++ok;
    else
      ADD_FAILURE() << name << ": " << json::serialize(reply);
  }
  EXPECT_EQ(ok, n);
  // `stored`: one line per stored row, "name<TAB>copies", for rows stored more than once.
  EXPECT_EQ(stored, "") << "applied twice";
}

TEST_F(OnceTest, KilledNodesApplyEveryRelWriteOnce) {
  StartNode(Options());
  for (bool with_keys : {true, false}) {
    const std::string prefix = with_keys ? "k" : "m";
    constexpr int n = 300;
    auto replies = CreatesThroughKills("rel.write", "Items", n, 3, with_keys, prefix);
    ExpectEachAppliedOnce(replies, n,
                          Scalar("SELECT name, COUNT(*) FROM onc_items WHERE name LIKE '" + prefix +
                                 "%' GROUP BY name HAVING COUNT(*) > 1"));
    EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items WHERE name LIKE '" + prefix + "%'"),
              std::to_string(n))
        << "lost writes";
  }
}

TEST_F(OnceTest, KilledNodesApplyEveryRecWriteOnce) {
  StartNode(Options());
  constexpr int n = 300;
  auto replies = CreatesThroughKills("rec.write", "Notes", n, 3, false, "r");
  std::map<std::string, int> stored;
  auto count = Call("rec.read", R"({"template":"Notes","op":"fetch","limit":1000})", 10s);
  ASSERT_TRUE(count.ok) << json::serialize(count.body);
  for (const auto& doc : count.body.at("data").as_array()) {
    ++stored[std::string(doc.at("text").as_string())];
  }
  std::string twice;
  for (const auto& [text, copies] : stored) {
    if (copies > 1) twice += text + "\t" + std::to_string(copies) + "\n";
  }
  ExpectEachAppliedOnce(replies, n, twice);
  EXPECT_EQ(stored.size(), static_cast<size_t>(n)) << "lost writes";
}

// The id of the connection running the test domain's SLEEP, once it is there.
std::string SleepingConnection(const std::string& db) {
  std::string id;
  WaitFor(
      [&] {
        auto r = Sql(db, "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '" + db +
                             "' AND INFO LIKE '%SLEEP%' AND ID <> CONNECTION_ID()");
        id = r.output;
        while (!id.empty() && id.back() == '\n') id.pop_back();
        return !id.empty() && id.find('\n') == std::string::npos;
      },
      20s);
  return id;
}

TEST_F(OnceTest, AConnectionLostMidWriteIsResolvedNotLeftUnknown) {
  StartNode(Options());
  auto id = client_->Send(
      "rel.write", R"({"template":"Items","op":"create","data":{"name":"cut","work_ms":1500}})");
  ASSERT_TRUE(id);
  const std::string victim = SleepingConnection(db_);
  ASSERT_FALSE(victim.empty()) << "the write never reached the database";
  ASSERT_EQ(Sql(db_, "KILL CONNECTION " + victim).exit_code, 0);
  auto received = client_->Receive(20s);
  ASSERT_TRUE(received && *received) << "no reply within 20s";
  const std::optional<client::Reply>& reply = *received;
  auto body = json::parse(reply->body).as_object();
  // The effect died with its connection (rolled back); the adapter reconnected, found no record
  // and applied the write: answered, once.
  EXPECT_TRUE(Ok(body)) << reply->body;
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items WHERE name = 'cut'"), "1");
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM beds_idempotency"), "1");
}

TEST_F(OnceTest, MariadbRestartedMidTransaction) {
  NodeOptions o = Options();
  o.db_extra = "reconnect_wait_ms = 60000";
  StartNode(o);
  auto id = client_->Send(
      "rel.write",
      R"({"template":"Items","op":"create","data":{"name":"restart","work_ms":3000}})");
  ASSERT_TRUE(id);
  ASSERT_FALSE(SleepingConnection(db_).empty());
  ASSERT_TRUE(Servers("restart-mariadb"));
  auto received = client_->Receive(90s);
  ASSERT_TRUE(received && *received) << "no reply within 90s";
  const std::optional<client::Reply>& reply = *received;
  EXPECT_TRUE(Ok(json::parse(reply->body).as_object())) << reply->body;
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items WHERE name = 'restart'"), "1");
}

TEST_F(OnceTest, AnOutcomeUnknownWriteIsResolvedByResendingItsKey) {
  // With exactly-once off, a lost connection leaves the write's outcome unknown (and says not to
  // resend it blindly); with it on, bedsctl's hint (re-send with the same key) resolves it.
  StartNode(Options());
  client::SendOptions send;
  send.idempotency_key = "resend-1";
  const std::string body = R"({"template":"Items","op":"create","data":{"name":"resend"}})";
  auto first = Write(body, send);
  ASSERT_TRUE(Ok(first)) << json::serialize(first);
  // The client never saw that reply (say): it sends the write again with its key.
  auto resent = Write(body, send);
  ASSERT_TRUE(Ok(resent)) << json::serialize(resent);
  EXPECT_EQ(resent.at("replayed"), json::value(true));
  EXPECT_EQ(resent.at("data"), first.at("data"));
  // bedsctl puts a fresh key on a write and takes one to re-send with.
  const std::string ctl =
      std::string("BEDS__BROKER_SERVICES__APP_SERVER__PORT=") +
      std::to_string(BEDS_TEST_AMQP_PORT) + " BEDS__BROKER_SERVICES__APP_SERVER__VHOST=" + vhost_ +
      " BEDS__BROKER_SERVICES__APP_SERVER__PASS=guest " + BEDSCTL_BINARY + " --config-dir " +
      kSource + "/config request rel.write '" + body + "' --idempotency-key resend-2";
  auto one = RunCommand(ctl);
  auto two = RunCommand(ctl);
  EXPECT_EQ(one.exit_code, 0) << one.output;
  EXPECT_EQ(two.exit_code, 0) << two.output;
  EXPECT_EQ(two.output.find("\"replayed\":true") != std::string::npos, true) << two.output;
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM onc_items WHERE name = 'resend'"), "2");
}

TEST_F(OnceTest, ExpiredRecordsAreSweptAndCounted) {
  NodeOptions o = Options();
  const int port = FreePort();
  o.extra_toml =
      "[idempotency]\nttl_s = 60\nsweep_every_s = 1\nsweep_batch = 2\n[metrics]\n"
      "listen = \"127.0.0.1:" +
      std::to_string(port) + "\"\n";
  StartNode(o);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Ok(Write(R"({"template":"Items","op":"create","data":{"name":"s)" +
                         std::to_string(i) + R"("}})")));
  }
  ASSERT_EQ(Scalar("SELECT COUNT(*) FROM beds_idempotency"), "5");
  // Four of them are past their time; the fifth is kept.
  ASSERT_EQ(Sql(db_,
                "UPDATE beds_idempotency SET expires_at = UTC_TIMESTAMP(3) - INTERVAL 1 "
                "SECOND ORDER BY created_at LIMIT 4")
                .exit_code,
            0);
  EXPECT_TRUE(WaitFor([&] { return Scalar("SELECT COUNT(*) FROM beds_idempotency") == "1"; }, 10s));
  std::string scrape;
  EXPECT_TRUE(WaitFor(
      [&] {
        scrape = RunCommand("curl -s http://127.0.0.1:" + std::to_string(port) + "/metrics").output;
        return scrape.find("beds_exactly_once_swept_total{database=\"main\"} 4") !=
               std::string::npos;
      },
      10s))
      << scrape;
  EXPECT_NE(scrape.find("beds_exactly_once_total{outcome=\"recorded\"} 5"), std::string::npos)
      << scrape;
}

TEST_F(OnceTest, TheBindCheckNamesWhatIsMissingAndProceduresThatCommit) {
  // A database without the record objects: the write template is unavailable, naming the file.
  const std::string bare = db_ + "_bare";
  ASSERT_EQ(RunCommand(std::string("env ") + BEDS_SERVERS_ENV + " " + BEDS_SERVERS_SCRIPT +
                       " database " + bare + " " + kDomain + "/onc_items.sql")
                .exit_code,
            0);
  NodeOptions o = Options();
  o.database = bare;
  StartNode(o);
  auto refused = Write(R"({"template":"Items","op":"create","data":{"name":"x"}})");
  EXPECT_EQ(CodeOf(refused), "UNAVAILABLE") << json::serialize(refused);
  const std::string log = nodes_.back()->Log();
  EXPECT_NE(log.find("schema/mariadb/000_beds_idempotency.sql"), std::string::npos) << log;
  nodes_.back()->Signal(SIGTERM);
  nodes_.clear();

  // A write procedure that commits on its own: a warning in development, the node runs.
  ASSERT_EQ(Sql(db_, "SOURCE " + kDomain + "/onc_commits.sql").exit_code, 0);
  StartNode(Options());
  const std::string dev_log = nodes_.back()->Log();
  EXPECT_NE(dev_log.find("procedure onc_create ends or starts a transaction itself"),
            std::string::npos)
      << dev_log;
  nodes_.back()->Signal(SIGTERM);
  nodes_.clear();

  // In production the same ends IPL.
  NodeOptions prod = Options();
  prod.production = true;
  prod.fault_injection = false;
  prod.name = "prodnode";
  NodeProcess node(vhost_, prod);
  auto exit_code = node.Wait(60s);
  ASSERT_TRUE(exit_code.has_value()) << node.Log();
  EXPECT_NE(*exit_code, 0);
  EXPECT_NE(node.Log().find("ends or starts a transaction itself"), std::string::npos)
      << node.Log();
}

}  // namespace
}  // namespace beds::testing
