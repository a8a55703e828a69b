// The REL data path end to end: the real `beds` binary, the real RabbitMQ and the real MariaDB of
// the fixture, a fresh database per test holding the example schema (schema/mariadb/) and the
// type-mapping test domain (tests/integration/schema/), and the repository's templates.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "core/lineage.hpp"
#include "integration/node_fixture.hpp"

namespace beds::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

std::vector<std::string> SchemaFiles() {
  std::vector<std::string> files;
  for (const auto& dir : {kSource + "/schema/mariadb", kSource + "/tests/integration/schema"}) {
    std::vector<std::string> here;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.path().extension() == ".sql") here.push_back(e.path().string());
    }
    std::sort(here.begin(), here.end());
    files.insert(files.end(), here.begin(), here.end());
  }
  return files;
}

class RelTest : public DomainTest {
 protected:
  void SetUp() override {
    std::vector<std::string> templates;
    for (const auto& dir : {kSource + "/templates", kSource + "/tests/integration/templates"}) {
      for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().extension() == ".toml") templates.push_back(e.path().string());
      }
    }
    SetUpDomain(SchemaFiles(), templates);
  }

  NodeOptions Options() const { return DomainOptions(); }

  // A request through the node; the reply's body.
  json::object Rel(const std::string& key, const std::string& body) {
    auto reply = Call(key, body);
    return reply.body.is_object() ? reply.body.as_object() : json::object{};
  }
  json::object Read(const std::string& body) { return Rel("rel.read", body); }
  json::object Write(const std::string& body) { return Rel("rel.write", body); }
};

bool Ok(const json::object& reply) { return reply.contains("ok") && reply.at("ok").as_bool(); }

std::string CodeOf(const json::object& reply) {
  if (!reply.contains("error")) return "(ok)";
  return std::string(reply.at("error").at("code").as_string());
}

std::string MessageOf(const json::object& reply) {
  if (!reply.contains("error")) return "";
  return std::string(reply.at("error").at("message").as_string());
}

const json::array& Data(const json::object& reply) { return reply.at("data").as_array(); }
const json::object& Row(const json::object& reply, size_t i = 0) {
  return Data(reply).at(i).as_object();
}

TEST_F(RelTest, EveryOpOnUsers) {
  StartNode(Options());
  auto created = Write(
      R"({"template":"Users","op":"create","data":{"email":"ann@example.org","name":"Ann","profile":{"tier":"gold"}}})");
  ASSERT_TRUE(Ok(created)) << json::serialize(created);
  const int64_t id = Row(created).at("id").as_int64();
  EXPECT_EQ(Row(created).at("email").as_string(), "ann@example.org");
  EXPECT_EQ(Row(created).at("profile").at("tier").as_string(), "gold");
  const std::string when(Row(created).at("created").as_string());
  EXPECT_EQ(when.size(), 27u) << when;  // 2026-11-24T17:07:20.123456Z
  EXPECT_EQ(when.back(), 'Z');
  ASSERT_TRUE(Ok(Write(
      R"({"template":"Users","op":"create","data":{"email":"bob@example.org","name":"Bob"}})")));
  ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"cy@example.org"}})")));

  auto one = Read(R"({"template":"Users","op":"fetch","id":")" + std::to_string(id) + "\"}");
  ASSERT_TRUE(Ok(one)) << json::serialize(one);
  EXPECT_EQ(one.at("count").as_int64(), 1);
  EXPECT_EQ(Row(one).at("name").as_string(), "Ann");

  auto page = Read(
      R"({"template":"Users","op":"fetch","where":{"id":{"gte":1}},"order":"-id","limit":2,"offset":1})");
  ASSERT_TRUE(Ok(page)) << json::serialize(page);
  ASSERT_EQ(Data(page).size(), 2u);
  EXPECT_EQ(Row(page, 0).at("email").as_string(), "bob@example.org");
  EXPECT_EQ(Row(page, 1).at("email").as_string(), "ann@example.org");

  auto in = Read(
      R"({"template":"Users","op":"fetch","where":{"email":{"in":["cy@example.org","nobody@x.y"]}}})");
  ASSERT_EQ(Data(in).size(), 1u);
  EXPECT_TRUE(Row(in).at("name").is_null());

  auto count =
      Read(R"({"template":"Users","op":"count","where":{"id":{"gt":)" + std::to_string(id) + "}}}");
  ASSERT_TRUE(Ok(count)) << json::serialize(count);
  EXPECT_EQ(count.at("count").as_int64(), 2);

  // An update may leave fields out: the procedure keeps them.
  auto updated = Write(R"({"template":"Users","op":"update","id":")" + std::to_string(id) +
                       R"(","data":{"name":"Annie"}})");
  ASSERT_TRUE(Ok(updated)) << json::serialize(updated);
  EXPECT_EQ(Row(updated).at("name").as_string(), "Annie");
  EXPECT_EQ(Row(updated).at("email").as_string(), "ann@example.org");
  EXPECT_EQ(Scalar("SELECT name FROM usr_users WHERE id = " + std::to_string(id)), "Annie");

  auto deleted = Write(R"({"template":"Users","op":"delete","id":")" + std::to_string(id) + "\"}");
  ASSERT_TRUE(Ok(deleted)) << json::serialize(deleted);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM usr_users"), "2");
  auto gone = Read(R"({"template":"Users","op":"fetch","id":")" + std::to_string(id) + "\"}");
  EXPECT_EQ(CodeOf(gone), "NOT_FOUND");
  EXPECT_EQ(
      CodeOf(Write(R"({"template":"Users","op":"delete","id":")" + std::to_string(id) + "\"}")),
      "NOT_FOUND");
  EXPECT_EQ(
      CodeOf(Write(R"({"template":"Users","op":"update","id":"999999","data":{"name":"x"}})")),
      "NOT_FOUND");
}

TEST_F(RelTest, JoinViewForeignKeyOutParamsAndMultipleResultSets) {
  StartNode(Options());
  auto user = Write(
      R"({"template":"Users","op":"create","data":{"email":"ann@example.org","name":"Ann"}})");
  ASSERT_TRUE(Ok(user));
  const std::string uid = std::to_string(Row(user).at("id").as_int64());
  auto order = Write(R"({"template":"Orders","op":"create","data":{"user_id":)" + uid +
                     R"(,"amount":"12.50","note":"first"}})");
  ASSERT_TRUE(Ok(order)) << json::serialize(order);
  EXPECT_EQ(Row(order).at("amount").as_string(), "12.50");  // DECIMAL: exact, as a string
  EXPECT_EQ(Row(order).at("user_email").as_string(), "ann@example.org");  // from the join
  ASSERT_TRUE(Ok(Write(R"({"template":"Orders","op":"create","data":{"user_id":)" + uid +
                       R"(,"amount":"99999999.99"}})")));

  auto mine = Read(
      R"({"template":"Orders","op":"fetch","where":{"user_email":"ann@example.org"},"order":"-amount"})");
  ASSERT_EQ(Data(mine).size(), 2u);
  EXPECT_EQ(Row(mine, 0).at("amount").as_string(), "99999999.99");

  // The foreign key: no such user; a user with orders cannot go.
  EXPECT_EQ(CodeOf(Write(
                R"({"template":"Orders","op":"create","data":{"user_id":987654,"amount":"1"}})")),
            "CONFLICT");
  EXPECT_EQ(CodeOf(Write(R"({"template":"Users","op":"delete","id":")" + uid + "\"}")), "CONFLICT");
  // The DBA's SIGNAL '45000' message reaches the client.
  auto negative = Write(R"({"template":"Orders","op":"create","data":{"user_id":)" + uid +
                        R"(,"amount":"-5"}})");
  EXPECT_EQ(CodeOf(negative), "VALIDATION");
  EXPECT_EQ(MessageOf(negative), "amount must be positive");

  // Two result sets: one array of rows per set.
  auto summary = Read(
      R"({"template":"Orders","op":"call","call":"user_summary","data":{"user_id":)" + uid + "}}");
  ASSERT_TRUE(Ok(summary)) << json::serialize(summary);
  ASSERT_EQ(Data(summary).size(), 2u);
  EXPECT_EQ(Data(summary)[0].as_array().size(), 1u);
  EXPECT_EQ(Data(summary)[0].as_array()[0].at("email").as_string(), "ann@example.org");
  EXPECT_EQ(Data(summary)[1].as_array().size(), 2u);

  // OUT parameters: one row keyed by the template's `out` names.
  auto report = Read(
      R"({"template":"Users","op":"call","call":"rewards_report","data":{"min_orders":2,"min_amount":"100"}})");
  ASSERT_TRUE(Ok(report)) << json::serialize(report);
  ASSERT_EQ(Data(report).size(), 1u);
  EXPECT_EQ(Row(report).at("customers").as_int64(), 1);
  EXPECT_EQ(Row(report).at("total").as_string(), "100000012.49");
}

TEST_F(RelTest, EveryTypeRoundTripsFaithfully) {
  StartNode(Options());
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes.push_back(static_cast<char>(i));
  json::object data{
      {"small", -2147483648LL},
      {"big", 9223372036854775807LL},
      {"ratio", 0.1},
      {"price", "-12345678901234567890.0123456789"},
      {"flag", true},
      {"label", "Grüße 🚀 '\"\\%_"},
      {"day", "1999-12-31"},
      {"at", "2026-11-24T17:07:20.123456Z"},
      {"stamp", "2026-11-24T17:07:20.123Z"},
      {"doc", json::parse(R"({"a":[1,2.5,"x",null,true],"b":{}})")},
      {"raw",
       "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+"
       "P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+"
       "AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKztLW2t7i5uru8vb6/"
       "wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w=="}};
  json::object request{{"template", "Types"}, {"op", "create"}, {"data", data}};
  auto created = Write(json::serialize(request));
  ASSERT_TRUE(Ok(created)) << json::serialize(created);
  const std::string id = std::to_string(Row(created).at("id").as_int64());
  auto fetched = Read(R"({"template":"Types","op":"fetch","id":")" + id + "\"}");
  ASSERT_TRUE(Ok(fetched));
  for (const auto* reply : {&created, &fetched}) {
    const json::object& row = Row(*reply);
    for (const auto& [key, value] : data) {
      EXPECT_EQ(row.at(key), value) << key << ": " << json::serialize(row.at(key));
    }
    EXPECT_TRUE(row.at("ubig").is_null());
  }
  // The bytes arrive in the database as they were sent.
  EXPECT_EQ(Scalar("SELECT HEX(raw) = HEX(FROM_BASE64('" + std::string(data.at("raw").as_string()) +
                   "')) FROM typ_values WHERE id = " + id),
            "1");

  // NULL everywhere.
  auto empty = Write(R"({"template":"Types","op":"create","data":{}})");
  ASSERT_TRUE(Ok(empty)) << json::serialize(empty);
  for (const auto& [key, value] : Row(empty)) {
    if (key != "id") {
      EXPECT_TRUE(value.is_null()) << key;
    }
  }

  // Unsigned BIGINT beyond int64 stays exact.
  Scalar("UPDATE typ_values SET ubig = 18446744073709551615 WHERE id = " + id);
  auto big = Read(R"({"template":"Types","op":"fetch","id":")" + id + "\"}");
  ASSERT_TRUE(Row(big).at("ubig").is_uint64()) << json::serialize(Row(big));
  EXPECT_EQ(Row(big).at("ubig").as_uint64(), 18446744073709551615ULL);

  // Filters bind typed values: a decimal, a bool and a datetime range.
  auto filtered = Read(
      R"({"template":"Types","op":"fetch","where":{"price":"-12345678901234567890.0123456789","flag":true,"at":{"gte":"2026-11-24T17:07:20Z","lt":"2026-11-24T17:07:21Z"}}})");
  ASSERT_TRUE(Ok(filtered)) << json::serialize(filtered);
  EXPECT_EQ(filtered.at("count").as_int64(), 1);
}

TEST_F(RelTest, OutParametersAndResultSetsOfProcedures) {
  StartNode(Options());
  auto out = Read(R"({"template":"Types","op":"call","call":"echo_out","data":{"value":21}})");
  ASSERT_TRUE(Ok(out)) << json::serialize(out);
  EXPECT_EQ(json::serialize(out.at("data")), R"([{"doubled":42,"text":"n=21"}])");
  auto sets = Read(R"({"template":"Types","op":"call","call":"three_sets"})");
  ASSERT_TRUE(Ok(sets)) << json::serialize(sets);
  EXPECT_EQ(json::serialize(sets.at("data")), R"([[{"a":1}],[{"b":"x","c":2}],[]])");
  // The statements are prepared once and reused: the same call again gives the same answer.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(
        json::serialize(Read(R"({"template":"Types","op":"call","call":"three_sets"})").at("data")),
        R"([[{"a":1}],[{"b":"x","c":2}],[]])");
  }
}

TEST_F(RelTest, SignalsAndDriverErrorsMapToProtocolCodes) {
  StartNode(Options());
  auto signal = [&](const std::string& state) {
    return Write(R"({"template":"Types","op":"call","call":"signal","data":{"state":")" + state +
                 R"(","message":"the DBA says no"}})");
  };
  EXPECT_EQ(CodeOf(signal("45000")), "VALIDATION");
  EXPECT_EQ(MessageOf(signal("45000")), "the DBA says no");
  EXPECT_EQ(CodeOf(signal("02000")), "NOT_FOUND");
  EXPECT_EQ(CodeOf(signal("23000")), "CONFLICT");
  EXPECT_TRUE(Ok(signal("none")));
  ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"a@b.c"}})")));
  auto duplicate = Write(R"({"template":"Users","op":"create","data":{"email":"a@b.c"}})");
  EXPECT_EQ(CodeOf(duplicate), "CONFLICT");
  EXPECT_FALSE(duplicate.at("error").at("retryable").as_bool());
  // No SQL, no table or key names in what the client sees.
  EXPECT_EQ(MessageOf(duplicate).find("usr_users"), std::string::npos) << MessageOf(duplicate);
  EXPECT_EQ(MessageOf(duplicate).find("INSERT"), std::string::npos);
}

TEST_F(RelTest, InjectionStringsAreStoredAndReturnedVerbatim) {
  StartNode(Options());
  const std::vector<std::string> attacks = {
      "'; DROP TABLE usr_users; --",
      "\" OR \"1\"=\"1",
      "x' OR '1'='1",
      "1); DELETE FROM usr_users WHERE (1=1",
      "\\'; SELECT SLEEP(5); -- \\",
      "%_% ` ${x} $where",
  };
  int n = 0;
  for (const auto& attack : attacks) {
    const std::string email = "u" + std::to_string(n++) + attack.substr(0, 40) + "@x.y";
    json::object request{{"template", "Users"},
                         {"op", "create"},
                         {"data", json::object{{"email", email},
                                               {"name", attack.substr(0, 64)},
                                               {"profile", json::object{{attack, attack}}}}}};
    auto created = Write(json::serialize(request));
    ASSERT_TRUE(Ok(created)) << attack << ": " << json::serialize(created);
    EXPECT_EQ(Row(created).at("name").as_string(), attack.substr(0, 64));
    EXPECT_EQ(Row(created).at("email").as_string(), email);
    EXPECT_EQ(Row(created).at("profile").at(attack).as_string(), attack);
    // As a filter value it matches exactly that row and nothing else.
    json::object fetch{
        {"template", "Users"}, {"op", "fetch"}, {"where", json::object{{"email", email}}}};
    auto found = Read(json::serialize(fetch));
    ASSERT_TRUE(Ok(found)) << json::serialize(found);
    EXPECT_EQ(found.at("count").as_int64(), 1) << attack;
    json::object miss{
        {"template", "Users"}, {"op", "fetch"}, {"where", json::object{{"name", attack + "'"}}}};
    auto none = Read(json::serialize(miss));
    ASSERT_TRUE(Ok(none));
    EXPECT_EQ(none.at("count").as_int64(), 0) << attack;
  }
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM usr_users"), std::to_string(attacks.size()));
  // usr_users, usr_v_users, ord_orders, ord_v_orders, typ_values, typ_v_values and
  // beds_idempotency: all still there.
  EXPECT_EQ(
      Scalar("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"),
      "7");
}

TEST_F(RelTest, BadInputIsRefusedBeforeAnyDatabaseCall) {
  StartNode(Options());
  ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"a@b.c"}})")));
  const std::string before = Scalar("SHOW GLOBAL STATUS LIKE 'Com_stmt_execute'");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"template":"Users","op":"create","data":{"email":5}})", "VALIDATION"},
      {R"({"template":"Users","op":"create","data":{"name":"no email"}})", "VALIDATION"},
      {R"({"template":"Users","op":"create","data":{"email":"a@b.c","phone":"1"}})", "VALIDATION"},
      {R"({"template":"Users","op":"create","data":{"email":")" + std::string(129, 'x') + "\"}}",
       "VALIDATION"},
      {R"({"template":"Users","op":"fetch","where":{"password":"x"}})", "VALIDATION"},
      {R"({"template":"Users","op":"fetch","where":{"id":{"like":"%"}}})", "VALIDATION"},
      {R"({"template":"Users","op":"fetch","where":{"id":"1 OR 1=1"}})", "VALIDATION"},
      {R"({"template":"Users","op":"fetch","limit":501})", "VALIDATION"},
      {R"({"template":"Users","op":"fetch","order":"name"})", "VALIDATION"},
      {R"({"template":"Users","op":"fetch","id":"abc"})", "VALIDATION"},
      {R"({"template":"Users","op":"update","data":{"name":"no id"}})", "VALIDATION"},
      {R"({"template":"Users","op":"fetch","data":{"email":"a@b.c"}})", "VALIDATION"},
      {R"({"template":"Users","op":"create","where":{"email":"a@b.c"},"data":{"email":"x@y.z"}})",
       "VALIDATION"},
      {R"({"template":"Users","op":"call","call":"nope"})", "UNKNOWN_OP"},
      {R"({"template":"Users","op":"call"})", "VALIDATION"},
      {R"({"template":"Users","op":"explode"})", "UNKNOWN_OP"},
      {R"({"template":"Nobody","op":"fetch"})", "UNKNOWN_TEMPLATE"},
      {R"({"template":"Users","op":"fetch","limit":"10"})", "BAD_REQUEST"},
  };
  for (const auto& [body, code] : cases) {
    auto reply = Rel("rel.write", body);
    EXPECT_EQ(CodeOf(reply), code) << body << " → " << json::serialize(reply);
  }
  EXPECT_EQ(Scalar("SHOW GLOBAL STATUS LIKE 'Com_stmt_execute'"), before)
      << "a refused request reached the database";
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM usr_users"), "1");
}

TEST_F(RelTest, ADroppedProcedureMakesItsTemplateUnavailableAndOthersKeepWorking) {
  StartNode(Options());
  ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"a@b.c"}})")));
  // Dropped while the node runs: that op answers UNAVAILABLE, the rest work on.
  Scalar("DROP PROCEDURE usr_delete");
  auto gone = Write(R"({"template":"Users","op":"delete","id":"1"})");
  EXPECT_EQ(CodeOf(gone), "UNAVAILABLE") << json::serialize(gone);
  EXPECT_TRUE(gone.at("error").at("retryable").as_bool());
  EXPECT_TRUE(Ok(Read(R"({"template":"Users","op":"fetch","id":"1"})")));
  EXPECT_TRUE(
      Ok(Write(R"({"template":"Orders","op":"create","data":{"user_id":1,"amount":"3"}})")));

  // At the next IPL the bind-check finds it: in development the template is marked unavailable.
  EXPECT_EQ(nodes_.back()->Signal(SIGTERM), 0);
  StartNode(Options());
  auto described = Read(R"({"template":"sys","op":"describe"})");
  ASSERT_TRUE(Ok(described));
  std::map<std::string, std::string> status;
  for (const auto& t : described.at("data").at("templates").as_array()) {
    if (t.as_object().contains("status")) {
      status[std::string(t.at("name").as_string())] = std::string(t.at("status").as_string());
    }
  }
  EXPECT_EQ(status["Users"], "unavailable");
  EXPECT_EQ(status["Orders"], "bound");
  EXPECT_EQ(status["Types"], "bound");
  EXPECT_EQ(CodeOf(Read(R"({"template":"Users","op":"fetch","id":"1"})")), "UNAVAILABLE");
  EXPECT_TRUE(Ok(Read(R"({"template":"Orders","op":"fetch"})")));
}

TEST_F(RelTest, AViewChangedWhileRunningIsPreparedAfresh) {
  NodeOptions o = Options();
  o.instances = 1;  // one connection: the cached statement is the one that goes stale
  StartNode(o);
  ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"a@b.c"}})")));
  ASSERT_TRUE(Ok(Read(R"({"template":"Users","op":"fetch"})")));
  Scalar(
      "CREATE OR REPLACE VIEW usr_v_users AS SELECT id, email, name, profile, created, 7 AS extra "
      "FROM usr_users");
  auto after = Read(R"({"template":"Users","op":"fetch"})");
  ASSERT_TRUE(Ok(after)) << json::serialize(after);
  EXPECT_EQ(Row(after).at("extra").as_int64(), 7);
  EXPECT_TRUE(Ok(Read(R"({"template":"Users","op":"fetch"})")));
}

TEST_F(RelTest, AResultOverMaxReplyBytesIsAnsweredTooLarge) {
  NodeOptions o = Options();
  o.extra_toml = "max_reply_bytes = 2048";  // lands in [protocol], the fixture's last table
  StartNode(o);
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"user)" +
                         std::to_string(i) + R"(@example.org"}})")));
  }
  auto all = Read(R"({"template":"Users","op":"fetch"})");
  EXPECT_EQ(CodeOf(all), "TOO_LARGE") << json::serialize(all);
  EXPECT_NE(MessageOf(all).find("narrow the filter or lower the limit"), std::string::npos);
  EXPECT_TRUE(Ok(Read(R"({"template":"Users","op":"fetch","limit":5})")));
  // A write with a large result was applied all the same, and the client is told so.
  json::object big{
      {"template", "Users"},
      {"op", "create"},
      {"data", json::object{{"email", "big@example.org"},
                            {"profile", json::object{{"bio", std::string(3000, 'x')}}}}}};
  auto created = Write(json::serialize(big));
  EXPECT_EQ(CodeOf(created), "TOO_LARGE") << json::serialize(created);
  EXPECT_NE(MessageOf(created).find("the write was applied"), std::string::npos);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM usr_users WHERE email = 'big@example.org'"), "1");
}

TEST_F(RelTest, ProductionRefusesToStartWithAnUnboundTemplate) {
  Scalar("DROP PROCEDURE ord_update");
  NodeOptions o = Options();
  o.production = true;
  o.fault_injection = false;
  nodes_.push_back(std::make_unique<NodeProcess>(vhost_, o));
  auto code = nodes_.back()->Wait(60s);
  ASSERT_TRUE(code.has_value()) << nodes_.back()->Log();
  EXPECT_EQ(*code, 3);
  EXPECT_NE(nodes_.back()->Log().find("procedure ord_update does not exist"), std::string::npos)
      << nodes_.back()->Log();
}

TEST_F(RelTest, AnInvalidTemplateStopsIplInEveryMode) {
  std::ofstream(templates_ / "usr_users_rel.toml", std::ios::app)
      << "\n[ops.calls.x]\nprocedure = \"usr_get\"\nretries = 3\n";
  nodes_.push_back(std::make_unique<NodeProcess>(vhost_, Options()));
  auto code = nodes_.back()->Wait(60s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 2);
  EXPECT_NE(nodes_.back()->Log().find("usr_users_rel.toml:"), std::string::npos)
      << nodes_.back()->Log();
  EXPECT_NE(nodes_.back()->Log().find("key 'ops.calls.x.retries': unknown key"), std::string::npos)
      << nodes_.back()->Log();
}

TEST_F(RelTest, TemplateCheckAndScaffoldCommands) {
  // A node config that `beds template …` reads; the node itself is not started.
  NodeProcess* config_holder = nullptr;
  {
    NodeOptions o = Options();
    o.production = true;
    o.fault_injection = false;
    // Ready = answers a ping (StartNode retries pings sent before the node's queues exist).
    config_holder = &StartNode(o);
    ASSERT_TRUE(config_holder->running());
  }
  const std::string beds = std::string(BEDS_BINARY) + " template ";
  const std::string dir = " --config-dir " + config_holder->config_dir();
  auto check = RunCommand(beds + "check" + dir);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("ok   Users"), std::string::npos) << check.output;
  // The repository's REL and REC templates and the type-mapping one; REC collections are not
  // touched offline.
  EXPECT_NE(check.output.find("6 template(s), 0 problem(s)"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("collection sesSessions is ensured at IPL"), std::string::npos)
      << check.output;

  const std::string scaffolded = (templates_ / "ord_scaffold_rel.toml").string();
  auto scaffold = RunCommand(beds + "scaffold --tla ord --out " + scaffolded + dir);
  ASSERT_EQ(scaffold.exit_code, 0) << scaffold.output;
  // Rename the domain so it does not clash with Orders, then it must load and bind.
  RunCommand("sed -i 's/^name     = \"Ord\"/name = \"OrdScaffold\"/' " + scaffolded);
  check = RunCommand(beds + "check" + dir);
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("ok   OrdScaffold"), std::string::npos) << check.output;
  EXPECT_NE(RunCommand(beds + "scaffold --tla zzz" + dir).exit_code, 0);

  // A procedure with a different parameter count than the template declares.
  Scalar(
      "DROP PROCEDURE typ_echo_out; CREATE PROCEDURE typ_echo_out(IN p_in INT, OUT p_doubled INT) "
      "SET p_doubled = p_in * 2");
  check = RunCommand(beds + "check" + dir);
  EXPECT_EQ(check.exit_code, 1) << check.output;
  EXPECT_NE(check.output.find("FAIL Types"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("procedure typ_echo_out takes 1 IN and 1 OUT/INOUT parameters; the "
                              "template declares 1 and 2"),
            std::string::npos)
      << check.output;
}

TEST_F(RelTest, InstancesBoundTheDatabaseConnections) {
  NodeOptions o = Options();
  o.instances = 2;
  StartNode(o);
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  for (int c = 0; c < 6; ++c) {
    clients.emplace_back([&, c] {
      auto client = NewClient();
      for (int i = 0; i < 20; ++i) {
        auto r = client->Call("rel.write",
                              R"({"template":"Users","op":"create","data":{"email":"c)" +
                                  std::to_string(c) + "-" + std::to_string(i) + R"(@x.y"}})",
                              10s);
        if (r && r->body.find("\"ok\":true") != std::string::npos) ++ok;
      }
    });
  }
  // While they run, the database never sees more than `instances` connections of this node.
  int most = 0;
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (ok.load() < 120 && std::chrono::steady_clock::now() < until) {
    auto r =
        Sql("beds", "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '" + db_ + "'");
    most = std::max(most, std::atoi(r.output.c_str()));
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), 120);
  EXPECT_GE(most, 1);
  EXPECT_LE(most, 2);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM usr_users"), "120");
}

TEST_F(RelTest, ReadsFallBackToTheMasterWhenTheSecondaryIsDown) {
  NodeOptions o = Options();
  o.db_extra = "secondaries = [{ host = \"127.0.0.1\", port = 1 }]";
  StartNode(o);
  ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"a@b.c"}})")));
  auto read = Read(R"({"template":"Users","op":"fetch","where":{"email":"a@b.c"}})");
  ASSERT_TRUE(Ok(read)) << json::serialize(read);
  EXPECT_EQ(read.at("count").as_int64(), 1);
  EXPECT_TRUE(Ok(Read(R"({"template":"Users","op":"call","call":"get","id":"1"})")));
}

TEST_F(RelTest, ReadsGoToTheSecondaryAndFallBackToTheMasterWhileItIsDown) {
  // Two independent servers with different rows, so each answer shows which one served it.
  ASSERT_TRUE(Servers("start-secondary"));
  struct StopSecondary {
    ~StopSecondary() { Servers("stop-secondary"); }
  } stop_secondary;
  ASSERT_TRUE(FreshDatabase(db_, SchemaFiles(), /*secondary=*/true));
  ASSERT_EQ(Sql(db_, "INSERT INTO usr_users (email) VALUES ('replica@x.y')", true).exit_code, 0);
  NodeOptions o = Options();
  o.db_extra =
      "secondaries = [{ host = \"127.0.0.1\", port = " + std::to_string(kSecondaryMariadbPort) +
      " }]";
  StartNode(o);

  auto emails = [&] {
    std::set<std::string> out;
    auto r = Read(R"({"template":"Users","op":"fetch"})");
    if (!Ok(r)) return std::set<std::string>{"error: " + CodeOf(r)};
    for (const auto& row : Data(r)) out.insert(std::string(row.at("email").as_string()));
    return out;
  };
  // Writes go to the master, reads to the secondary.
  ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"master@x.y"}})")));
  EXPECT_EQ(Scalar("SELECT email FROM usr_users"), "master@x.y");
  EXPECT_EQ(emails(), std::set<std::string>{"replica@x.y"});
  EXPECT_EQ(Read(R"({"template":"Users","op":"count"})").at("count").as_int64(), 1);
  // A read call goes to the secondary too; a write call would not.
  auto got = Read(R"({"template":"Users","op":"call","call":"get","id":"1"})");
  ASSERT_TRUE(Ok(got));
  EXPECT_EQ(Row(got).at("email").as_string(), "replica@x.y");

  // The secondary goes away: reads fall back to the master at once.
  ASSERT_TRUE(Servers("stop-secondary"));
  EXPECT_EQ(emails(), std::set<std::string>{"master@x.y"});
  // It comes back: reads return to it (after the 5 s cool-down).
  ASSERT_TRUE(Servers("start-secondary"));
  EXPECT_TRUE(WaitFor([&] { return emails() == std::set<std::string>{"replica@x.y"}; }, 20s));
}

TEST_F(RelTest, AStatementOverQueryTimeoutIsAbandonedAndTheConnectionKept) {
  NodeOptions o = Options();
  o.instances = 1;  // the next request runs on the same connection
  o.db_extra = "query_timeout_ms = 1000";
  StartNode(o);
  const auto started = std::chrono::steady_clock::now();
  auto busy = Read(R"({"template":"Types","op":"call","call":"busy"})");
  const auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(CodeOf(busy), "UNAVAILABLE") << json::serialize(busy);
  EXPECT_NE(MessageOf(busy).find("did not answer in time"), std::string::npos) << MessageOf(busy);
  EXPECT_LT(took, 4s);
  auto next = Read(R"({"template":"Types","op":"call","call":"echo_out","data":{"value":1}})");
  EXPECT_TRUE(Ok(next)) << json::serialize(next);
}

TEST_F(RelTest, ADeadDatabaseIsAnsweredByTheDeadlineAndServedAgainWhenBack) {
  NodeOptions o = Options();
  o.db_extra = "reconnect_wait_ms = 1500";
  StartNode(o);
  ASSERT_TRUE(Ok(Read(R"({"template":"Users","op":"count"})")));
  ASSERT_TRUE(Servers("stop-mariadb"));
  struct Restart {
    ~Restart() { Servers("start-mariadb"); }
  } restart;
  auto down = Read(R"({"template":"Users","op":"count"})");
  EXPECT_EQ(CodeOf(down), "UNAVAILABLE") << json::serialize(down);
  EXPECT_TRUE(down.at("error").at("retryable").as_bool());
  const int64_t deadline = NowUnixMs() + 600;
  auto late =
      Read(R"({"template":"Users","op":"count","deadline_ms":)" + std::to_string(deadline) + "}");
  EXPECT_EQ(CodeOf(late), "TIMEOUT") << json::serialize(late);
  EXPECT_LE(NowUnixMs(), deadline + 1000);  // answered by its deadline, give or take a poll
  auto write = Write(R"({"template":"Users","op":"create","data":{"email":"down@x.y"}})");
  EXPECT_EQ(CodeOf(write), "UNAVAILABLE") << json::serialize(write);
  // It never reached a server, so sending it again is safe.
  EXPECT_TRUE(write.at("error").at("retryable").as_bool());
  ASSERT_TRUE(Servers("start-mariadb"));
  EXPECT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"up@x.y"}})")));
  EXPECT_EQ(Scalar("SELECT GROUP_CONCAT(email) FROM usr_users"), "up@x.y");
}

TEST_F(RelTest, MariaDbRestartedUnderLoadLosesAndDuplicatesNothing) {
  NodeOptions o = Options();
  o.instances = 4;
  o.db_extra = "reconnect_wait_ms = 15000";
  StartNode(o);
  ASSERT_TRUE(Ok(Write(R"({"template":"Users","op":"create","data":{"email":"warm@x.y"}})")));

  std::mutex mutex;
  std::set<std::string> confirmed, unknown;
  std::map<std::string, int> other;  // code → count
  std::atomic<bool> stop{false};
  std::atomic<int> sent{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&, w] {
      auto client = NewClient();
      for (int i = 0; !stop.load(); ++i) {
        const std::string email = "w" + std::to_string(w) + "-" + std::to_string(i) + "@x.y";
        ++sent;
        auto r = client->Call(
            "rel.write", R"({"template":"Users","op":"create","data":{"email":")" + email + "\"}}",
            30s);
        std::lock_guard lock(mutex);
        if (!r) {
          other["no reply"]++;
          continue;
        }
        auto reply = protocol::DecodeReply(r->body);
        if (reply && reply->ok) {
          confirmed.insert(email);
        } else if (reply && reply->error && reply->error->code == Code::kUnavailable) {
          unknown.insert(email);
          // "may or may not have been applied" must not invite a blind resend.
          if (reply->error->message.find("may or may not") != std::string::npos &&
              reply->error->retryable()) {
            other["retryable outcome-unknown"]++;
          }
        } else {
          other[reply && reply->error ? std::string(CodeName(reply->error->code))
                                      : "undecodable"]++;
        }
      }
    });
  }
  auto confirmed_count = [&] {
    std::lock_guard lock(mutex);
    return confirmed.size();
  };
  ASSERT_TRUE(WaitFor([&] { return confirmed_count() >= 50; }, 30s));
  ASSERT_TRUE(Servers("restart-mariadb"));
  const size_t at_restart = confirmed_count();
  EXPECT_TRUE(WaitFor([&] { return confirmed_count() >= at_restart + 50; }, 60s))
      << "writes did not resume after the restart";
  stop = true;
  for (auto& t : writers) t.join();

  EXPECT_TRUE(other.empty()) << "unexpected replies: " << ::testing::PrintToString(other);
  // Every confirmed write is stored exactly once; a write whose outcome was reported unknown may
  // or may not be; nothing else is.
  auto rows = Sql(db_, "SELECT email FROM usr_users WHERE email <> 'warm@x.y'");
  ASSERT_EQ(rows.exit_code, 0) << rows.output;
  std::set<std::string> stored;
  std::istringstream lines(rows.output);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_TRUE(stored.insert(line).second) << "stored twice: " << line;
  }
  for (const auto& e : confirmed) EXPECT_TRUE(stored.contains(e)) << "confirmed but lost: " << e;
  for (const auto& e : stored) {
    EXPECT_TRUE(confirmed.contains(e) || unknown.contains(e))
        << "stored but never confirmed: " << e;
  }
  std::cerr << "sent " << sent.load() << ", confirmed " << confirmed.size() << ", unknown outcome "
            << unknown.size() << "\n";
}

}  // namespace
}  // namespace beds::testing
