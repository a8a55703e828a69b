// The REC data path end to end on the embedded SQLite engine: the real `beds` binary and the real
// RabbitMQ of the fixture; the node's [databases.docs] is a SQLite file of the test's own.
// The engine-level contract (every type, filter and error, on every engine) is the adapters suite;
// these tests cover what only whole processes show: the AMQP path, IPL with a bad file, and two
// `beds` processes writing one file.
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "core/lineage.hpp"
#include "integration/node_fixture.hpp"

namespace beds::testing {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

class RecTest : public NodeTest {
 protected:
  void SetUp() override {
    NodeTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = fs::temp_directory_path() / ("beds-rec-it-" + NewGuid());
    fs::create_directories(dir_ / "templates");
    for (const auto& dir : {kSource + "/templates", kSource + "/tests/adapters/templates"}) {
      for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().filename().string().ends_with("_rec.toml")) {
          fs::copy_file(e.path(), dir_ / "templates" / e.path().filename());
        }
      }
    }
  }
  void TearDown() override {
    NodeTest::TearDown();
    if (!HasFailure()) fs::remove_all(dir_);
  }

  NodeOptions Options() const {
    NodeOptions o;
    o.templates_dir = (dir_ / "templates").string();
    o.docs_path = (dir_ / "docs.sqlite").string();
    return o;
  }

  json::object Rec(const std::string& key, const std::string& body) {
    auto reply = Call(key, body);
    return reply.body.is_object() ? reply.body.as_object() : json::object{};
  }
  json::object Read(const std::string& body) { return Rec("rec.read", body); }
  json::object Write(const std::string& body) { return Rec("rec.write", body); }

  fs::path dir_;
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

const json::object& Doc(const json::object& reply, size_t i = 0) {
  return reply.at("data").as_array().at(i).as_object();
}

TEST_F(RecTest, EveryOpOnTheExampleTemplateOverAmqp) {
  StartNode(Options());
  auto created = Write(
      R"({"template":"Sessions","op":"create","data":{"user_id":7,"created":"2026-11-25T10:00:00Z","agent":"curl/8","data":{"theme":"dark"}}})");
  ASSERT_TRUE(Ok(created)) << json::serialize(created);
  const std::string token(Doc(created).at("token").as_string());
  EXPECT_EQ(token.size(), 36u) << "a generated UUIDv7";
  EXPECT_EQ(Doc(created).at("created"), "2026-11-25T10:00:00.000Z");

  ASSERT_TRUE(Ok(Write(
      R"({"template":"Sessions","op":"create","data":{"token":"given","user_id":7,"created":"2026-11-25T11:00:00Z"}})")));
  ASSERT_TRUE(Ok(Write(
      R"({"template":"Sessions","op":"create","data":{"token":"other","user_id":8,"created":"2026-11-25T12:00:00Z"}})")));

  auto one = Read(R"({"template":"Sessions","op":"fetch","id":")" + token + R"("})");
  ASSERT_TRUE(Ok(one)) << json::serialize(one);
  EXPECT_EQ(Doc(one), Doc(created));

  auto mine =
      Read(R"({"template":"Sessions","op":"fetch","where":{"user_id":7},"order":"-created"})");
  ASSERT_TRUE(Ok(mine));
  ASSERT_EQ(mine.at("count"), 2);
  EXPECT_EQ(Doc(mine, 0).at("token"), "given");
  EXPECT_EQ(Doc(mine, 1).at("token"), token.c_str());

  auto updated =
      Write(R"({"template":"Sessions","op":"update","id":"given","data":{"agent":"x"}})");
  ASSERT_TRUE(Ok(updated)) << json::serialize(updated);
  EXPECT_EQ(Doc(updated).at("agent"), "x");
  EXPECT_EQ(Doc(updated).at("user_id"), 7);

  auto counted = Read(R"({"template":"Sessions","op":"count","where":{"user_id":{"in":[7,8]}}})");
  EXPECT_EQ(counted.at("count"), 3);
  EXPECT_TRUE(Ok(Write(R"({"template":"Sessions","op":"delete","id":"given"})")));
  EXPECT_EQ(CodeOf(Read(R"({"template":"Sessions","op":"fetch","id":"given"})")), "NOT_FOUND");
  EXPECT_EQ(CodeOf(Write(
                R"({"template":"Sessions","op":"create","data":{"token":"other","user_id":1}})")),
            "CONFLICT");

  // Bad input over the wire: each answered, nothing stored, the node still serving.
  EXPECT_EQ(CodeOf(Write(R"({"template":"Sessions","op":"create","data":{"user_id":"7"}})")),
            "VALIDATION");
  EXPECT_EQ(
      CodeOf(Write(
          R"({"template":"Sessions","op":"create","data":{"user_id":1,"data":{"$where":"1"}}})")),
      "VALIDATION");
  EXPECT_EQ(CodeOf(Read(R"({"template":"Sessions","op":"fetch","where":{"agent":{"$gt":""}}})")),
            "VALIDATION");
  EXPECT_EQ(CodeOf(Read(R"({"template":"Sessions","op":"fetch","where":{"data":1}})")),
            "VALIDATION");
  EXPECT_EQ(CodeOf(Read(R"({"template":"Nope","op":"fetch"})")), "UNKNOWN_TEMPLATE");
  EXPECT_EQ(CodeOf(Read(R"({"template":"Sessions","op":"fetch",)")), "BAD_REQUEST");
  EXPECT_EQ(Read(R"({"template":"Sessions","op":"count"})").at("count"), 2);

  // sys/describe shows the REC templates bound, with their collection's filters.
  auto described = Read(R"({"template":"sys","op":"describe"})");
  bool found = false;
  for (const auto& t : described.at("data").at("templates").as_array()) {
    if (t.at("name") == "Sessions") {
      found = true;
      EXPECT_EQ(t.at("status"), "bound") << json::serialize(t);
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(RecTest, DocumentOverTheLimitIsTooLargeOverAmqp) {
  NodeOptions o = Options();
  o.docs_extra = "max_document_bytes = 2048\n";
  StartNode(o);
  const std::string big(4096, 'x');
  auto r = Write(
      R"({"template":"Sessions","op":"create","data":{"user_id":1,"agent":"a","data":{"pad":")" +
      big + R"("}}})");
  EXPECT_EQ(CodeOf(r), "TOO_LARGE") << MessageOf(r);
  EXPECT_EQ(Read(R"({"template":"Sessions","op":"count"})").at("count"), 0);
}

TEST_F(RecTest, CorruptFileAtIplIsNamed) {
  const std::string path = (dir_ / "docs.sqlite").string();
  std::ofstream(path) << std::string(4096, 'Z');
  // Production: IPL stops, naming the file.
  NodeOptions prod = Options();
  prod.production = true;
  prod.fault_injection = false;
  prod.name = "prodnode";
  NodeProcess node(vhost_, prod);
  const auto code = node.Wait(60s);
  ASSERT_TRUE(code.has_value()) << "a production node with a corrupt store must not start";
  EXPECT_EQ(*code, 3) << node.Log();
  EXPECT_NE(node.Log().find(path), std::string::npos) << node.Log();
  EXPECT_NE(node.Log().find("not a database"), std::string::npos) << node.Log();

  // Development: the node serves, and the REC templates answer UNAVAILABLE with the reason
  // logged; the file is left as it was.
  StartNode(Options());
  auto r = Read(R"({"template":"Sessions","op":"fetch","id":"x"})");
  EXPECT_EQ(CodeOf(r), "UNAVAILABLE") << MessageOf(r);
  auto described = Read(R"({"template":"sys","op":"describe"})");
  for (const auto& t : described.at("data").at("templates").as_array()) {
    if (t.at("name") == "Sessions") {
      EXPECT_EQ(t.at("status"), "unavailable");
    }
  }
  std::ifstream in(path);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, std::string(4096, 'Z')) << "the file was changed";
}

TEST_F(RecTest, TwoProcessesWriteOneFileWithoutLostUpdates) {
  // Two `beds` processes consume the same queues and share one SQLite file.
  NodeOptions a = Options();
  a.name = "nodea";
  a.instances = 4;
  NodeOptions b = a;
  b.name = "nodeb";
  StartNode(a);
  StartNode(b);
  ASSERT_TRUE(Ok(Write(R"({"template":"Wide","op":"create","id":1,"data":{}})")));

  // Eight clients at once: each owns one field of one shared document and sets it to 1…50 in
  // turn, and creates 50 documents of its own. A lost update would leave some field short of 50.
  constexpr int kClients = 8, kEach = 50;
  std::mutex mutex;
  std::map<std::string, int> served;  // node name → replies
  std::vector<std::string> failures;
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      auto client = NewClient();
      for (int i = 1; i <= kEach; ++i) {
        for (const std::string& body :
             {R"({"template":"Wide","op":"update","id":1,"data":{"c)" + std::to_string(c) +
                  R"(":)" + std::to_string(i) + "}}",
              R"({"template":"Counters","op":"create","id":)" + std::to_string(1000 * (c + 1) + i) +
                  R"(,"data":{"label":"c"}})"}) {
          auto reply = client->Call("rec.write", body, 30s);
          std::lock_guard lock(mutex);
          std::error_code ec;
          json::value v = reply ? json::parse(reply->body, ec) : json::value();
          if (!reply || ec || !v.is_object() || !v.as_object().at("ok").as_bool()) {
            failures.push_back(reply ? reply->body : reply.error().message);
            continue;
          }
          const std::string event(v.at("event_id").as_string());
          served[event.substr(0, event.find('.'))]++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << failures.front();
  for (const auto& f : failures) EXPECT_EQ(f.find("locked"), std::string::npos) << f;
  EXPECT_GT(served["nodea"], 0) << "both processes must have written";
  EXPECT_GT(served["nodeb"], 0) << "both processes must have written";
  EXPECT_EQ(Read(R"({"template":"Counters","op":"count"})").at("count"), kClients * kEach);
  auto doc = Read(R"({"template":"Wide","op":"fetch","id":1})");
  ASSERT_TRUE(Ok(doc)) << json::serialize(doc);
  for (int c = 0; c < kClients; ++c) {
    EXPECT_EQ(Doc(doc).at("c" + std::to_string(c)), kEach) << json::serialize(doc);
  }
}

}  // namespace
}  // namespace beds::testing
