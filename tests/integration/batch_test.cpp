// Batch envelopes (docs/protocol.md "Batches"), and the point reads a worker's cycle runs as one
// query, end to end: the real `beds` binary, the fixture's
// RabbitMQ and MariaDB, the exactly-once test domain (tests/integration/once/: Items, whose
// create signals on a negative work_ms).
#include <signal.h>

#include <map>
#include <set>
#include <sstream>

#include "integration/node_fixture.hpp"

namespace beds::testing {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

const std::string kDomain = kSource + "/tests/integration/once";

class BatchTest : public DomainTest {
 protected:
  void SetUp() override {
    SetUpDomain({kDomain + "/onc_items.sql"}, {kDomain + "/onc_items_rel.toml"});
    StartNode(DomainOptions());
  }

  json::object Send(const std::string& key, const std::string& body,
                    const client::SendOptions& options = {}) {
    auto reply = client_->Call(key, body, 15s, options);
    EXPECT_TRUE(reply.has_value()) << (reply ? "" : reply.error().message);
    if (!reply) return {};
    auto decoded = json::parse(reply->body);
    return decoded.is_object() ? decoded.as_object() : json::object{};
  }

  static std::string Create(const std::string& name, int work_ms = 0) {
    return R"({"template":"Items","op":"create","data":{"name":")" + name + R"(","work_ms":)" +
           std::to_string(work_ms) + "}}";
  }

  std::string Names() {
    return Scalar("SELECT IFNULL(GROUP_CONCAT(name ORDER BY id SEPARATOR ','), '') FROM onc_items");
  }
};

bool Ok(const json::value& reply) { return reply.at("ok").as_bool(); }
std::string CodeOf(const json::value& reply) {
  return reply.as_object().contains("error") ? std::string(reply.at("error").at("code").as_string())
                                             : "(ok)";
}

TEST_F(BatchTest, EnvelopesRunInOrderAndEachIsAnsweredAsIfAlone) {
  const std::string body = R"({"batch":[)" + Create("x") + "," + Create("bad", -1) + "," +
                           R"({"template":"Items","op":"fetch","where":{"name":"x"}},)" +
                           R"({"template":"sys","op":"ping"},{"template":"Nope","op":"fetch"},)" +
                           Create("y") + "]}";
  client::SendOptions keyed;
  keyed.idempotency_key = "batch-1";
  auto reply = Send("rel.write", body, keyed);
  ASSERT_TRUE(Ok(reply)) << json::serialize(reply);
  const json::array& each = reply.at("data").as_array();
  ASSERT_EQ(each.size(), 6u);
  EXPECT_EQ(reply.at("count"), json::value(6));
  EXPECT_TRUE(Ok(each[0])) << json::serialize(each[0]);
  EXPECT_EQ(CodeOf(each[1]), "VALIDATION");
  EXPECT_NE(json::serialize(each[1]).find("work_ms must not be negative"), std::string::npos);
  ASSERT_TRUE(Ok(each[2])) << json::serialize(each[2]);
  EXPECT_EQ(each[2].at("count"), json::value(1)) << "the fetch ran after the create before it";
  EXPECT_TRUE(Ok(each[3]));
  EXPECT_EQ(CodeOf(each[4]), "UNKNOWN_TEMPLATE");
  EXPECT_TRUE(Ok(each[5]));
  EXPECT_EQ(Names(), "x,y");
  // Every envelope has an event id of its own, a child of the batch's.
  std::set<std::string> ids{std::string(reply.at("event_id").as_string())};
  for (const auto& r : each) ids.insert(std::string(r.at("event_id").as_string()));
  EXPECT_EQ(ids.size(), 7u);

  // Sent again with its key (an answer that was lost): the writes are answered from their
  // records, nothing is applied twice.
  auto again = Send("rel.write", body, keyed);
  ASSERT_TRUE(Ok(again)) << json::serialize(again);
  const json::array& replayed = again.at("data").as_array();
  EXPECT_EQ(replayed[0].at("replayed"), json::value(true));
  EXPECT_EQ(replayed[0].at("data"), each[0].at("data"));
  EXPECT_EQ(replayed[5].at("replayed"), json::value(true));
  EXPECT_EQ(Names(), "x,y");
}

TEST_F(BatchTest, ConsecutivePointReadsShareOneQueryAndAnswerEachAsAlone) {
  std::vector<int64_t> ids;
  for (const char* name : {"a", "b", "c"}) {
    auto created = Send("rel.write", Create(name));
    ASSERT_TRUE(Ok(created)) << json::serialize(created);
    ids.push_back(created.at("data").at(0).at("id").as_int64());
  }
  auto fetch = [](const std::string& id) {
    return R"({"template":"Items","op":"fetch","id":)" + id + "}";
  };
  const std::string next = std::to_string(ids[2] + 1);  // what the create below will be given
  const std::vector<std::string> envelopes = {fetch(std::to_string(ids[1])),
                                              fetch("987654321"),
                                              fetch(R"("abc")"),
                                              fetch(std::to_string(ids[0])),
                                              fetch(std::to_string(ids[1])),
                                              Create("d"),
                                              fetch(next),
                                              fetch(std::to_string(ids[2]))};
  std::string body = R"({"batch":[)";
  for (size_t i = 0; i < envelopes.size(); ++i) body += (i ? "," : "") + envelopes[i];
  body += "]}";
  auto reply = Send("rel.write", body);
  ASSERT_TRUE(Ok(reply)) << json::serialize(reply);
  const json::array& each = reply.at("data").as_array();
  ASSERT_EQ(each.size(), envelopes.size());
  // Each answers what it answers sent alone (event ids aside): the row, NOT_FOUND, VALIDATION.
  for (size_t i = 0; i < envelopes.size(); ++i) {
    if (i == 5 || i == 6) continue;  // the create, and the read of what it made
    auto alone = Send("rel.read", envelopes[i]);
    EXPECT_EQ(CodeOf(each[i]), CodeOf(alone)) << i << ": " << json::serialize(each[i]);
    if (Ok(alone)) {
      EXPECT_EQ(each[i].at("data"), alone.at("data")) << i;
      EXPECT_EQ(each[i].at("count"), alone.at("count")) << i;
    } else {
      EXPECT_EQ(each[i].at("error").at("message"), alone.at("error").at("message")) << i;
    }
  }
  EXPECT_EQ(CodeOf(each[1]), "NOT_FOUND");
  EXPECT_EQ(CodeOf(each[2]), "VALIDATION");
  EXPECT_EQ(each[4].at("data").at(0).at("name"), json::value("b"));
  // The batch keeps its order: the read after the create sees it.
  ASSERT_TRUE(Ok(each[5])) << json::serialize(each[5]);
  ASSERT_EQ(each[5].at("data").at(0).at("id").as_int64(), ids[2] + 1);
  ASSERT_TRUE(Ok(each[6])) << json::serialize(each[6]);
  EXPECT_EQ(each[6].at("data").at(0).at("name"), json::value("d"));
  EXPECT_EQ(each[7].at("data").at(0).at("name"), json::value("c"));

  // Twelve point reads cost one SELECT, not twelve (the server's count of them, which other
  // connections could only raise).
  auto selects = [&] {
    return std::stoll(
        Scalar("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE "
               "VARIABLE_NAME = 'COM_SELECT'"));
  };
  std::string reads = R"({"batch":[)";
  for (int i = 0; i < 12; ++i) reads += (i ? "," : "") + fetch(std::to_string(ids[i % 3]));
  reads += "]}";
  const long long before = selects();
  auto read_reply = Send("rel.read", reads);
  const long long after = selects();
  ASSERT_TRUE(Ok(read_reply)) << json::serialize(read_reply);
  for (const auto& r : read_reply.at("data").as_array()) EXPECT_TRUE(Ok(r));
  // The two counting queries are SELECTs themselves.
  EXPECT_LE(after - before, 1 + 2 + 3) << "each read ran alone";
}

TEST_F(BatchTest, PointReadsOfSeparateMessagesInOneWorkerCycleShareOneQuery) {
  std::vector<int64_t> ids;
  for (const char* name : {"a", "b"}) {
    auto created = Send("rel.write", Create(name));
    ASSERT_TRUE(Ok(created)) << json::serialize(created);
    ids.push_back(created.at("data").at(0).at("id").as_int64());
  }
  // One worker: while it sleeps on an injected fault, the reads sent meanwhile wait in its lane,
  // and the rest of its cycle takes them together.
  ASSERT_EQ(nodes_.back()->Signal(SIGTERM), 0);
  NodeOptions one = DomainOptions();
  one.instances = 1;
  const int port = FreePort();
  ASSERT_NE(port, 0);
  one.extra_toml += "\n[metrics]\nlisten = \"127.0.0.1:" + std::to_string(port) + "\"\n";
  StartNode(one);
  // The node's count of point reads, and of the queries they took (its /metrics).
  auto counted = [&] {
    auto r = RunCommand(
        "/usr/bin/python3 -c 'import sys, urllib.request; "
        "print(urllib.request.urlopen(sys.argv[1]).read().decode())' http://127.0.0.1:" +
        std::to_string(port) + "/metrics");
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::pair<long, long> reads_queries{0, 0};
    std::istringstream lines(r.output);
    for (std::string line; std::getline(lines, line);) {
      const std::string labels = "{template=\"Items\"} ";
      if (line.starts_with("beds_point_reads_total" + labels)) {
        reads_queries.first = std::stol(line.substr(line.rfind(' ') + 1));
      } else if (line.starts_with("beds_point_read_queries_total" + labels)) {
        reads_queries.second = std::stol(line.substr(line.rfind(' ') + 1));
      }
    }
    return reads_queries;
  };
  auto fetch = [](const std::string& id) {
    return R"({"template":"Items","op":"fetch","id":)" + id + "}";
  };
  const std::vector<std::string> reads = {fetch(std::to_string(ids[0])),
                                          fetch("987654321"),
                                          fetch(R"("abc")"),
                                          fetch(std::to_string(ids[1])),
                                          fetch(std::to_string(ids[0])),
                                          fetch(std::to_string(ids[1]))};
  std::map<std::string, json::object> alone;
  for (const std::string& r : reads) alone[r] = Send("rel.read", r);
  // One by one: a query each, but none for the invalid key.
  const auto before = counted();
  EXPECT_EQ(before, std::pair(6L, 5L));
  auto sleeping = client_->Send("sys.read", R"({"template":"sys","op":"call","call":"fault",)"
                                            R"("data":{"mode":"sleep","ms":1500}})");
  ASSERT_TRUE(sleeping) << sleeping.error().message;
  std::map<std::string, std::string> sent;  // correlation id -> request
  for (const std::string& r : reads) {
    auto id = client_->Send("rel.read", r);
    ASSERT_TRUE(id) << id.error().message;
    sent[*id] = r;
  }
  size_t answered = 0;
  const auto until = std::chrono::steady_clock::now() + 15s;
  while (answered < sent.size() && std::chrono::steady_clock::now() < until) {
    auto reply = client_->Receive(1s);
    ASSERT_TRUE(reply) << reply.error().message;
    if (!*reply || !sent.contains((*reply)->correlation_id)) continue;
    ++answered;
    const std::string& request = sent[(*reply)->correlation_id];
    const json::object got = json::parse((*reply)->body).as_object();
    const json::object& want = alone[request];
    // Each answers what it answered alone (event ids aside).
    EXPECT_EQ(CodeOf(got), CodeOf(want)) << request;
    if (Ok(want)) {
      EXPECT_EQ(got.at("data"), want.at("data")) << request;
    } else {
      EXPECT_EQ(got.at("error").at("message"), want.at("error").at("message")) << request;
    }
  }
  EXPECT_EQ(answered, sent.size());
  // Together: one shared query, and the one whose key found nothing asked again alone.
  const auto after = counted();
  EXPECT_EQ(after.first - before.first, 6);
  EXPECT_EQ(after.second - before.second, 2) << "the reads ran one by one";
}

TEST_F(BatchTest, AnAtomicBatchAppliesAllOrNothingAndOnce) {
  auto failed = Send("rel.write", R"({"atomic":true,"batch":[)" + Create("p") + "," + Create("q") +
                                      "," + Create("bad", -1) + "]}");
  EXPECT_EQ(CodeOf(failed), "VALIDATION") << json::serialize(failed);
  EXPECT_EQ(failed.at("error").at("index"), json::value(2));
  EXPECT_EQ(Names(), "") << "the writes before the failing one were rolled back";

  client::SendOptions keyed;
  keyed.idempotency_key = "atomic-1";
  const std::string body = R"({"atomic":true,"batch":[)" + Create("p") + "," + Create("q") + "]}";
  auto applied = Send("rel.write", body, keyed);
  ASSERT_TRUE(Ok(applied)) << json::serialize(applied);
  EXPECT_EQ(Names(), "p,q");
  auto again = Send("rel.write", body, keyed);
  ASSERT_TRUE(Ok(again)) << json::serialize(again);
  EXPECT_EQ(again.at("data").at(1).at("replayed"), json::value(true));
  EXPECT_EQ(again.at("data").at(1).at("data"), applied.at("data").at(1).at("data"));
  EXPECT_EQ(Names(), "p,q");

  // Only REL writes: a read in an atomic batch runs nothing at all.
  auto mixed = Send("rel.write", R"({"atomic":true,"batch":[)" + Create("r") +
                                     R"(,{"template":"Items","op":"fetch"}]})");
  EXPECT_EQ(CodeOf(mixed), "VALIDATION") << json::serialize(mixed);
  EXPECT_EQ(mixed.at("error").at("index"), json::value(1));
  EXPECT_EQ(Names(), "p,q");
}

TEST_F(BatchTest, AnAtomicBatchOnANodeKilledMidTransactionAppliesOnceWhenRedelivered) {
  // The second create works on for a while with the first one's row already written: the node
  // is killed then, its transaction dies with its connection, and the redelivered batch runs
  // again as a whole. Four seconds, so that a machine busy with other tests still sees it
  // writing (1.5 s was missed once, under CI's load).
  client::SendOptions persistent;
  persistent.delivery_mode = 2;
  auto id = client_->Send(
      "rel.write", R"({"atomic":true,"batch":[)" + Create("k1") + "," + Create("k2", 4000) + "]}",
      persistent);
  ASSERT_TRUE(id.has_value()) << id.error().message;
  const auto until = std::chrono::steady_clock::now() + 30s;
  // Any transaction that has written: other tests share the server, so this may see theirs and
  // kill the node before its batch wrote, which the redelivery must survive as well. (Joining
  // processlist on this database's connections missed the batch twice under load.)
  const std::string writing =
      "SELECT COUNT(*) FROM information_schema.innodb_trx WHERE trx_rows_modified > 0";
  while (Scalar(writing) == "0") {
    ASSERT_LT(std::chrono::steady_clock::now(), until) << "the batch never started writing";
  }
  nodes_.back()->Signal(SIGKILL);
  StartNode(DomainOptions());
  std::optional<client::Reply> reply;
  while (!reply && std::chrono::steady_clock::now() < until + 30s) {
    auto r = client_->Receive(500ms);
    ASSERT_TRUE(r.has_value()) << r.error().message;
    if (*r && (*r)->correlation_id == *id) reply = std::move(**r);
  }
  ASSERT_TRUE(reply) << "the redelivered batch was never answered";
  auto body = json::parse(reply->body);
  ASSERT_TRUE(Ok(body)) << reply->body;
  EXPECT_EQ(body.at("count"), json::value(2));
  EXPECT_EQ(Names(), "k1,k2") << "applied once, as a whole";
}

TEST_F(BatchTest, MalformedBatchesAreRefusedAndNothingRuns) {
  EXPECT_EQ(CodeOf(Send("rel.write", R"({"batch":{}})")), "BAD_REQUEST");
  EXPECT_EQ(CodeOf(Send("rel.write", R"({"batch":[]})")), "BAD_REQUEST");
  EXPECT_EQ(CodeOf(Send("rel.write", R"({"batch":[)" + Create("s") + R"(],"op":"create"})")),
            "BAD_REQUEST");
  std::string many = R"({"batch":[)";
  for (int i = 0; i < 101; ++i) many += (i ? "," : "") + Create("m" + std::to_string(i));
  many += "]}";
  auto too_many = Send("rel.write", many);
  EXPECT_EQ(CodeOf(too_many), "BAD_REQUEST");
  EXPECT_NE(json::serialize(too_many).find("max_batch"), std::string::npos);
  // Injection strings are values like any other.
  auto hostile = Send(
      "rel.write", R"({"batch":[)" + Create("'); DROP TABLE onc_items; --") + R"(,{"batch":[]}]})");
  ASSERT_TRUE(Ok(hostile)) << json::serialize(hostile);
  EXPECT_TRUE(Ok(hostile.at("data").at(0)));
  EXPECT_EQ(CodeOf(hostile.at("data").at(1)), "BAD_REQUEST");
  EXPECT_EQ(Names(), "'); DROP TABLE onc_items; --");
  // A write on a read key is refused per envelope, as it would be alone.
  auto wrong_key = Send("rel.read", R"({"batch":[)" + Create("t") + "]}");
  EXPECT_EQ(CodeOf(wrong_key.at("data").at(0)), "BAD_REQUEST") << json::serialize(wrong_key);
  EXPECT_EQ(Names(), "'); DROP TABLE onc_items; --");
}

TEST_F(BatchTest, BedsctlSendsAFileOfEnvelopesAsOneBatchAndSaysWhatFailed) {
  TempConfigDir dir({{"ok.jsonl", Create("u") + "\n\n" + Create("v") + "\n"},
                     {"mixed.jsonl", Create("w") + "\n" + Create("bad", -1) + "\n"},
                     {"broken.jsonl", Create("z") + "\nnot json\n"}});
  const std::string ctl = std::string("BEDS__BROKER_SERVICES__APP_SERVER__PORT=") +
                          std::to_string(BEDS_TEST_AMQP_PORT) +
                          " BEDS__BROKER_SERVICES__APP_SERVER__VHOST=" + vhost_ +
                          " BEDS__BROKER_SERVICES__APP_SERVER__PASS=guest " + BEDSCTL_BINARY +
                          " --config-dir " + kSource + "/config batch rel.write ";
  auto ok = RunCommand(ctl + dir.path() + "/ok.jsonl" + " --idempotency-key file-1");
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  auto again = RunCommand(ctl + dir.path() + "/ok.jsonl" + " --idempotency-key file-1");
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("\"replayed\":true"), std::string::npos) << again.output;
  EXPECT_EQ(Names(), "u,v");
  auto mixed = RunCommand(ctl + dir.path() + "/mixed.jsonl");
  EXPECT_EQ(mixed.exit_code, 1) << mixed.output;
  EXPECT_NE(mixed.output.find("1 of 2 envelopes failed"), std::string::npos) << mixed.output;
  auto atomic = RunCommand(ctl + dir.path() + "/mixed.jsonl" + " --atomic");
  EXPECT_EQ(atomic.exit_code, 1) << atomic.output;
  EXPECT_NE(atomic.output.find("envelope 1: work_ms must not be negative"), std::string::npos)
      << atomic.output;
  auto broken = RunCommand(ctl + dir.path() + "/broken.jsonl");
  EXPECT_EQ(broken.exit_code, 2) << broken.output;
  EXPECT_NE(broken.output.find("line 2: not a JSON object"), std::string::npos) << broken.output;
  EXPECT_EQ(Names(), "u,v,w") << "the atomic batch and the broken file applied nothing";
}

}  // namespace
}  // namespace beds::testing
