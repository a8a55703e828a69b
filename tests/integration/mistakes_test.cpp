// Nothing silent: the mistakes a new user makes in the first hour, each answered with an error or a
// warning that says what to do, through the real `beds` and `bedsctl` binaries, the real RabbitMQ
// and the real MariaDB. The domain is tests/integration/mistakes/ (books, TLA bks); each test makes
// one mistake. Every case here did the wrong thing without a word before.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/lineage.hpp"
#include "integration/node_fixture.hpp"

namespace beds::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kDomain = kSource + "/tests/integration/mistakes";

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string Replace(std::string text, const std::string& from, const std::string& to) {
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

class MistakesTest : public DomainTest {
 protected:
  void SetUp() override {
    SetUpDomain({kDomain + "/bks_books.sql"}, {kSource + "/templates/example_rec.toml"});
    if (HasFatalFailure()) return;
    WriteTemplate(ReadFile(kDomain + "/bks_books_rel.toml"));
  }

  void WriteTemplate(const std::string& text) {
    std::ofstream(templates_ / "bks_books_rel.toml") << text;
  }

  NodeOptions Options(const std::string& name = "appserver") const {
    NodeOptions o = DomainOptions();
    o.name = name;
    return o;
  }

  static std::string Code(const protocol::Reply& r) {
    return r.error ? std::string(CodeName(r.error->code)) : "OK";
  }
  static std::string Message(const protocol::Reply& r) { return r.error ? r.error->message : ""; }
};

// Before: `template check` said ok, and the node stored each book's title in the isbn column.
TEST_F(MistakesTest, ParamsInAnotherOrderThanTheProcedureTakesThemDoNotBind) {
  WriteTemplate(Replace(ReadFile(kDomain + "/bks_books_rel.toml"),
                        R"(params    = ["isbn", "title", "price", "shelf"])",
                        R"(params    = ["title", "isbn", "price", "shelf"])"));
  NodeProcess& node = StartNode(Options());
  auto check = RunCommand(std::string(BEDS_BINARY) + " template check --config-dir " +
                          node.config_dir() + " 2>&1");
  EXPECT_EQ(check.exit_code, 1) << check.output;
  EXPECT_NE(check.output.find("FAIL Books"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find(R"(list them as ["isbn", "title", "price", "shelf"])"),
            std::string::npos)
      << check.output;
  // The node serves the template as unavailable rather than storing titles as ISBNs.
  auto r = Call("rel.write",
                R"({"template":"Books","op":"create","data":{"isbn":"978-1","title":"Dune"}})");
  EXPECT_EQ(Code(r), "UNAVAILABLE") << json::serialize(r.body);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM bks_books"), "0");
}

// Before: "9.999" into DECIMAL(10,2) was stored as 10.00 with no error and no log line.
TEST_F(MistakesTest, AValueWithMorePlacesThanItsDecimalParameterKeepsIsRefused) {
  StartNode(Options());
  auto r = Call("rel.write", R"({"template":"Books","op":"create",
      "data":{"isbn":"978-1","title":"Dune","price":"9.999"}})");
  EXPECT_EQ(Code(r), "VALIDATION") << json::serialize(r.body);
  EXPECT_NE(Message(r).find("field 'price' has 3 decimal places; Books/create keeps 2"),
            std::string::npos)
      << Message(r);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM bks_books"), "0") << "nothing stored";
  r = Call("rel.write", R"({"template":"Books","op":"create",
      "data":{"isbn":"978-1","title":"Dune","price":"9.990"}})");
  EXPECT_TRUE(r.ok) << json::serialize(r.body);
  EXPECT_EQ(Scalar("SELECT price FROM bks_books"), "9.99");
  // A call's DECIMAL parameter is checked the same way.
  r = Call("rel.read",
           R"({"template":"Books","op":"call","call":"cheaper_than","data":{"price":"10.005"}})");
  EXPECT_EQ(Code(r), "VALIDATION") << json::serialize(r.body);
}

// Before: a JSON column became a string field (its values came back as escaped strings) and a
// filter and an order; every call was kind = "write"; and a `read` call that modifies data said
// nothing.
TEST_F(MistakesTest, ScaffoldTypesJsonColumnsAndTakesEachCallsKindFromItsDeclaration) {
  NodeProcess& node = StartNode(Options());
  auto scaffold =
      RunCommand(std::string(BEDS_BINARY) + " template scaffold --tla bks --config-dir " +
                 node.config_dir() + " 2>&1");
  ASSERT_EQ(scaffold.exit_code, 0) << scaffold.output;
  const std::string& text = scaffold.output;
  EXPECT_NE(text.find(R"(meta = { type = "json" })"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(where     = ["id", "isbn", "title", "price", "shelf"])"),
            std::string::npos)
      << "no JSON column among the filters\n"
      << text;
  // A TOML table of the scaffold: from its header to the next one.
  auto table = [&](const std::string& header) {
    const size_t at = text.find(header);
    if (at == std::string::npos) return std::string();
    return text.substr(at, text.find("\n[", at + 1) - at);
  };
  EXPECT_NE(table("[ops.calls.cheaper_than]").find(R"(kind      = "read")"), std::string::npos)
      << text;
  EXPECT_NE(table("[ops.calls.touch]").find(R"(kind      = "write")"), std::string::npos) << text;

  WriteTemplate(Replace(ReadFile(kDomain + "/bks_books_rel.toml"),
                        "procedure = \"bks_touch\"\nparams    = [\"id\"]\nkind      = \"write\"",
                        "procedure = \"bks_touch\"\nparams    = [\"id\"]\nkind      = \"read\""));
  auto check = RunCommand(std::string(BEDS_BINARY) + " template check --config-dir " +
                          node.config_dir() + " 2>&1");
  EXPECT_EQ(check.exit_code, 0) << "a warning, not a failure\n" << check.output;
  EXPECT_NE(check.output.find("warning: Books"), std::string::npos) << check.output;
  EXPECT_NE(check.output.find("bks_touch is declared MODIFIES SQL DATA"), std::string::npos)
      << check.output;
}

// Before: a create sent on rel.read ran on the read pool, and a REL template answered on
// rec.read (a REC one on rel.read).
TEST_F(MistakesTest, AWriteOnAReadKeyAndATemplateOnAnotherRouteAreRefusedNamingTheKey) {
  StartNode(Options());
  auto r = Call("rel.read",
                R"({"template":"Books","op":"create","data":{"isbn":"978-1","title":"Dune"}})");
  EXPECT_EQ(Code(r), "BAD_REQUEST") << json::serialize(r.body);
  EXPECT_NE(Message(r).find("send it on rel.write, not rel.read"), std::string::npos) << Message(r);
  EXPECT_EQ(Scalar("SELECT COUNT(*) FROM bks_books"), "0");
  r = Call("rec.read", R"({"template":"Books","op":"fetch"})");
  EXPECT_EQ(Code(r), "BAD_REQUEST") << json::serialize(r.body);
  EXPECT_NE(Message(r).find("send this fetch on rel.read"), std::string::npos) << Message(r);
  r = Call("rel.read", R"({"template":"Sessions","op":"fetch","where":{"user_id":1}})");
  EXPECT_EQ(Code(r), "BAD_REQUEST") << json::serialize(r.body);
  EXPECT_NE(Message(r).find("send this fetch on rec.read"), std::string::npos) << Message(r);
  // A read may go on the write key (the write pool serves it).
  r = Call("rel.write", R"({"template":"Books","op":"fetch"})");
  EXPECT_TRUE(r.ok) << json::serialize(r.body);
  r = Call("rel.read",
           R"({"template":"Books","op":"call","call":"cheaper_than","data":{"price":"5"}})");
  EXPECT_TRUE(r.ok) << json::serialize(r.body);
}

// Before: MariaDB's error 1267 was INTERNAL with retryable: true, so clients retried forever.
TEST_F(MistakesTest, AFilterTheColumnsCharacterSetCannotHoldIsADeterministicError) {
  StartNode(Options());
  auto r = Call("rel.read", R"({"template":"Books","op":"fetch","where":{"shelf":"😀"}})");
  EXPECT_EQ(Code(r), "VALIDATION") << json::serialize(r.body);
  ASSERT_TRUE(r.error);
  EXPECT_FALSE(r.error->retryable()) << json::serialize(r.body);
}

// Before: a request on a routing key no queue is bound to vanished; bedsctl waited 10 s and said
// "no reply". Also: bedsctl refused its own options after the subcommand.
TEST_F(MistakesTest, ARequestOnAnUnboundRoutingKeyIsReportedAtOnce) {
  NodeProcess& node = StartNode(Options());
  const auto started = std::chrono::steady_clock::now();
  auto reply = client_->Call("rel.raed", R"({"template":"Books","op":"fetch"})", 10s);
  ASSERT_TRUE(reply) << reply.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_TRUE(reply->unroutable);
  EXPECT_NE(reply->body.find("no queue is bound to routing key 'rel.raed'"), std::string::npos)
      << reply->body;

  const std::string bedsctl = std::string(BEDSCTL_BINARY);
  const auto cli_started = std::chrono::steady_clock::now();
  auto cli = RunCommand(bedsctl + " --config-dir " + node.config_dir() +
                        R"( request rel.raed '{"template":"Books","op":"fetch"}' 2>&1)");
  EXPECT_EQ(cli.exit_code, 1) << cli.output;
  EXPECT_LT(std::chrono::steady_clock::now() - cli_started, 5s) << cli.output;
  EXPECT_NE(cli.output.find("nothing is bound to routing key 'rel.raed'"), std::string::npos)
      << cli.output;

  auto after = RunCommand(bedsctl + R"( request sys.read '{"template":"sys","op":"ping"}')" +
                          " --config-dir " + node.config_dir() + " --timeout-ms 5000 2>&1");
  EXPECT_EQ(after.exit_code, 0) << after.output;
  EXPECT_NE(after.output.find("\"ok\":true"), std::string::npos) << after.output;
}

// Before: each invented template or op name became a histogram series of its own.
TEST_F(MistakesTest, MetricLabelsTakeOnlyNamesTheNodeKnows) {
  const int port = FreePort();
  NodeOptions o = Options();
  o.extra_toml = "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
  StartNode(o);
  for (int i = 0; i < 5; ++i) {
    const std::string n = std::to_string(i);
    Call("rel.read", R"({"template":"Invented)" + n + R"(","op":"fetch"})");
    Call("rel.read", R"({"template":"Books","op":"invented)" + n + R"("})");
    Call("sys.read", R"({"template":"sys","op":"invented)" + n + R"("})");
  }
  EXPECT_TRUE(Call("rel.read", R"({"template":"Books","op":"fetch"})").ok);
  const std::string scrape =
      RunCommand("curl -s http://127.0.0.1:" + std::to_string(port) + "/metrics").output;
  EXPECT_EQ(scrape.find("nvented"), std::string::npos) << scrape;
  EXPECT_NE(scrape.find(R"x(template="(unknown)",op="(unknown)",outcome="UNKNOWN_TEMPLATE")x"),
            std::string::npos)
      << scrape;
  EXPECT_NE(scrape.find(R"x(template="Books",op="(unknown)",outcome="UNKNOWN_OP")x"),
            std::string::npos)
      << scrape;
  EXPECT_NE(scrape.find(R"(template="Books",op="fetch",outcome="OK")"), std::string::npos)
      << scrape;
}

// Before: a REC delete answered [] and a REL delete [{"id":2}].
TEST_F(MistakesTest, ADeleteAnswersTheKeyOfWhatItDeletedForBothClasses) {
  StartNode(Options());
  auto r = Call("rel.write",
                R"({"template":"Books","op":"create","data":{"isbn":"978-1","title":"Dune"}})");
  ASSERT_TRUE(r.ok) << json::serialize(r.body);
  const int64_t id = r.body.at("data").at(0).at("id").as_int64();
  r = Call("rel.write", R"({"template":"Books","op":"delete","id":")" + std::to_string(id) + "\"}");
  ASSERT_TRUE(r.ok) << json::serialize(r.body);
  EXPECT_EQ(r.body.at("data"), json::parse(R"([{"id":)" + std::to_string(id) + "}]"));
  r = Call("rec.write",
           R"({"template":"Sessions","op":"create","data":{"token":"t-1","user_id":1}})");
  ASSERT_TRUE(r.ok) << json::serialize(r.body);
  r = Call("rec.write", R"({"template":"Sessions","op":"delete","id":"t-1"})");
  ASSERT_TRUE(r.ok) << json::serialize(r.body);
  EXPECT_EQ(r.body.at("data"), json::parse(R"([{"token":"t-1"}])"));
}

// Before: `--env trail` (a typo) ran silently on the defaults.
TEST_F(MistakesTest, AnEnvNamedOnTheCommandLineWithoutItsFileIsAnError) {
  NodeProcess& node = StartNode(Options());
  for (const char* command : {" run", " config check", " template check"}) {
    auto r = RunCommand(std::string(BEDS_BINARY) + command + " --config-dir " + node.config_dir() +
                        " --env trail 2>&1");
    EXPECT_EQ(r.exit_code, 2) << command << ": " << r.output;
    EXPECT_NE(r.output.find("env_trail.toml: not found (--env trail)"), std::string::npos)
        << command << ": " << r.output;
  }
}

// Before: "0 unavailable" right after three "not checked" errors, then "ready … 16 worker(s)"
// as if all was well; and a second node on the same metrics port failed with a bare EADDRINUSE.
TEST_F(MistakesTest, TheReadyLineSaysWhatTheNodeWentOnWithout) {
  const int port = FreePort();
  NodeOptions first = Options("first");
  first.extra_toml = "[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
  StartNode(first);
  NodeOptions second = Options("second");
  second.db_port = FreePort();  // nothing listens there: the templates cannot be checked
  second.extra_toml = first.extra_toml;
  NodeProcess& node = StartNode(second);
  std::string log;
  ASSERT_TRUE(WaitFor(
      [&] {
        log = node.Log();
        return log.find("ready, degraded") != std::string::npos ||
               log.find("ready: ") != std::string::npos;
      },
      10s))
      << log;
  EXPECT_NE(log.find("ready, degraded"), std::string::npos) << log;
  EXPECT_NE(log.find("template(s) not checked"), std::string::npos) << log;
  EXPECT_NE(log.find("metrics endpoint failed"), std::string::npos) << log;
  EXPECT_NE(log.find("give this node its own [metrics] listen"), std::string::npos) << log;
}

}  // namespace
}  // namespace beds::testing
