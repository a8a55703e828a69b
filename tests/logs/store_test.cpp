// The log store over a real REC engine (SQLite): batch stores that skip events already stored,
// and lineage trees with their depth and size bounds. Uses the repository's log store template.
#include "logs/store.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "adapters/sqlite/sqlite.hpp"
#include "core/lineage.hpp"
#include "core/validate.hpp"
#include "templates/templates.hpp"

namespace beds::logs {
namespace {

namespace fs = std::filesystem;

class LogStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("beds-store-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    auto loaded = templates::LoadDir(std::string(BEDS_SOURCE_DIR) + "/templates");
    ASSERT_TRUE(loaded) << loaded.error().message;
    for (auto& t : *loaded) {
      if (t.name == "Logs") store_ = t;
    }
    ASSERT_EQ(store_.collection, "msLogs");
    config::DatabaseSettings db;
    db.name = "docs";
    db.engine = config::Engine::kSqlite;
    db.path = (dir_ / "docs.sqlite").string();
    core_ = adapters::sqlite::MakeCore(adapters::sqlite::OpenStore(db));
    ASSERT_TRUE(core_->Prepare(store_));
  }
  void TearDown() override {
    core_.reset();
    fs::remove_all(dir_);
  }

  // An event under `parent` (a root when empty), stored at once.
  Lineage Add(const Lineage* parent, const std::string& kind = "adapter", int64_t ts_us = 0) {
    LogEvent e;
    e.kind = kind;
    e.node = "appserver";
    e.env = "dev";
    e.lineage =
        parent ? ChildLineage(*parent, "appserver", "dev") : RootLineage("appserver", "dev");
    e.template_name = "Users";
    e.op = "fetch";
    e.msg = "ok";
    e.ts_us = ts_us ? ts_us : NowUnixUs();
    auto p = ToStoreItem(store_, e);
    EXPECT_TRUE(p) << p.error().message;
    std::vector<StoreItem> one;
    one.push_back(std::move(*p));
    auto n = StoreEvents(*core_, store_, std::move(one));
    EXPECT_TRUE(n && *n == 1);
    return e.lineage;
  }

  fs::path dir_;
  Template store_;
  std::unique_ptr<NamasteCore> core_;
};

TEST_F(LogStoreTest, ABatchStoresEachEventOnceWhateverIsRedelivered) {
  std::vector<StoreItem> batch;
  std::vector<LogEvent> events(5);
  for (auto& e : events) {
    e.lineage = RootLineage("appserver", "dev");
    e.ts_us = NowUnixUs();
    e.msg = std::string(20000, 'x');  // longer than the template's max: cut, not refused
    auto p = ToStoreItem(store_, e);
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_FALSE(p->payload) << "the shipped template takes the direct path";
    batch.push_back(*p);
  }
  auto first = StoreEvents(*core_, store_, batch);
  ASSERT_TRUE(first) << first.error().message;
  EXPECT_EQ(*first, 5);
  // The same batch again (a redelivery after a crash before the ack), plus one new event.
  LogEvent extra;
  extra.lineage = RootLineage("appserver", "dev");
  extra.ts_us = NowUnixUs();
  batch.push_back(*ToStoreItem(store_, extra));
  auto second = StoreEvents(*core_, store_, batch);
  ASSERT_TRUE(second) << second.error().message;
  EXPECT_EQ(*second, 1);
  auto tree = FetchTree(*core_, store_, events[0].lineage.event_id, TreeLimits{}, 0);
  ASSERT_TRUE(tree) << tree.error().message;
  EXPECT_EQ(tree->at("root").at("message").as_string().size(), 8192u);
}

// The admin's direct path must store exactly what a validated create of the same values stores.
TEST_F(LogStoreTest, TheDirectPathStoresWhatAValidatedCreateStores) {
  LogEvent e;
  e.kind = "adapter";
  e.level = "warn";
  e.node = "appserver";
  e.env = "dev";
  e.lineage = ChildLineage(RootLineage("appserver", "dev"), "appserver", "dev");
  e.template_name = "Users";
  e.op = "call:get";
  e.msg = "mariadb main: \"quoted\" \u00e9 \n" + std::string(9000, 'y');  // cut at the max
  e.ts_us = 1764633006365123;  // 2025-12-01T23:50:06.365123Z
  e.duration_us = 321;
  e.fields["rows"] = 1;
  e.fields["nested"] = boost::json::object{{"a", boost::json::array{1, "two", nullptr}}};
  auto direct = ToStoreItem(store_, e);
  ASSERT_TRUE(direct) << direct.error().message;
  ASSERT_FALSE(direct->payload);

  // The same document through validation, under another id, the way a client's create goes.
  boost::json::object doc = direct->document;
  const Lineage other = RootLineage("appserver", "dev");
  doc["event_id"] = other.event_id;
  const OpSpec* create = store_.Op("create");
  ASSERT_NE(create, nullptr);
  auto payload = ValidatePayload(store_, *create, "create", doc, "");
  ASSERT_TRUE(payload) << payload.error().message;
  ASSERT_TRUE(core_->Create(store_, *create, *payload));
  std::vector<StoreItem> one;
  one.push_back(std::move(*direct));
  ASSERT_TRUE(StoreEvents(*core_, store_, std::move(one)));

  auto a = FetchTree(*core_, store_, e.lineage.event_id, TreeLimits{}, 0);
  auto b = FetchTree(*core_, store_, other.event_id, TreeLimits{}, 0);
  ASSERT_TRUE(a && b);
  boost::json::object x = a->at("root").as_object();
  boost::json::object y = b->at("root").as_object();
  EXPECT_EQ(x.at("ts"), "2025-12-01T23:50:06.365Z");
  EXPECT_EQ(x.at("message").as_string().size(), 8193u);  // 8192 characters, one of them two bytes
  EXPECT_EQ(x.at("data").at("nested").at("a").as_array().size(), 3u);
  x.erase("event_id");
  y.erase("event_id");
  EXPECT_EQ(x, y);
}

// A JSON key a document store would read as an operator is refused on the direct path too.
TEST_F(LogStoreTest, TheDirectPathRefusesOperatorKeysInData) {
  LogEvent e;
  e.lineage = RootLineage("appserver", "dev");
  e.ts_us = NowUnixUs();
  e.fields["$where"] = "1";
  auto item = ToStoreItem(store_, e);
  ASSERT_TRUE(item) << item.error().message;
  std::vector<StoreItem> one;
  one.push_back(std::move(*item));
  auto r = StoreEvents(*core_, store_, std::move(one));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kValidation) << r.error().message;
}

TEST_F(LogStoreTest, TheTreeNestsEveryDescendantByParent) {
  const Lineage root = Add(nullptr, "request");
  const Lineage a = Add(&root, "adapter");
  const Lineage b = Add(&root, "request");
  const Lineage b1 = Add(&b, "adapter");
  Add(&b1, "log");
  Add(nullptr, "request");  // another root: not part of this tree
  auto tree = FetchTree(*core_, store_, root.event_id, TreeLimits{}, 0);
  ASSERT_TRUE(tree) << tree.error().message;
  EXPECT_EQ(tree->at("events").as_int64(), 5);
  EXPECT_FALSE(tree->at("truncated").as_bool());
  const auto& r = tree->at("root").as_object();
  EXPECT_EQ(r.at("event_id").as_string(), root.event_id);
  const auto& kids = r.at("children").as_array();
  ASSERT_EQ(kids.size(), 2u);
  std::set<std::string> ids{std::string(kids[0].at("event_id").as_string()),
                            std::string(kids[1].at("event_id").as_string())};
  EXPECT_EQ(ids, (std::set<std::string>{a.event_id, b.event_id}));
  const auto& bnode = kids[0].at("event_id").as_string() == b.event_id ? kids[0] : kids[1];
  ASSERT_EQ(bnode.at("children").as_array().size(), 1u);
  const auto& b1node = bnode.at("children").as_array()[0];
  EXPECT_EQ(b1node.at("depth").as_int64(), 2);
  ASSERT_EQ(b1node.at("children").as_array().size(), 1u);
  EXPECT_EQ(b1node.at("children").as_array()[0].at("kind").as_string(), "log");
}

TEST_F(LogStoreTest, DepthAndSizeAreBoundedWithAClearMarker) {
  Lineage chain = Add(nullptr, "request");
  const std::string root = chain.event_id;
  for (int i = 0; i < 6; ++i) chain = Add(&chain);
  auto deep = FetchTree(*core_, store_, root, TreeLimits{3, 1000}, 0);
  ASSERT_TRUE(deep) << deep.error().message;
  EXPECT_TRUE(deep->at("truncated").as_bool());
  EXPECT_EQ(deep->at("events").as_int64(), 4);  // the root and three levels
  EXPECT_NE(deep->at("truncated_reason").as_string().find("levels"), std::string::npos);

  const Lineage wide = Add(nullptr, "request");
  for (int i = 0; i < 20; ++i) Add(&wide);
  auto cut = FetchTree(*core_, store_, wide.event_id, TreeLimits{32, 10}, 0);
  ASSERT_TRUE(cut) << cut.error().message;
  EXPECT_TRUE(cut->at("truncated").as_bool());
  EXPECT_EQ(cut->at("events").as_int64(), 10);
  EXPECT_EQ(cut->at("root").at("children").as_array().size(), 9u);
}

TEST_F(LogStoreTest, AnUnknownEventIsNotFound) {
  auto tree = FetchTree(*core_, store_, NewEventId("appserver", "dev"), TreeLimits{}, 0);
  ASSERT_FALSE(tree);
  EXPECT_EQ(tree.error().code, Code::kNotFound);
}

}  // namespace
}  // namespace beds::logs
