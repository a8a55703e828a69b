// The SQLite engine's group commit (adapters/sqlite): many workers' writes on one store share
// transactions, and each write's outcome is still its own.
#include "adapters/sqlite/sqlite.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "adapters/rec_harness.hpp"

namespace beds::testing {
namespace {
namespace fs = std::filesystem;

const std::string kTemplates = std::string(BEDS_SOURCE_DIR) + "/tests/adapters/templates";

class SqliteGroupCommit : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("beds-sqlite-group-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    settings_.name = "docs";
    settings_.engine = config::Engine::kSqlite;
    settings_.path = (dir_ / "docs.sqlite").string();
    settings_.synchronous = "full";
    store_ = adapters::sqlite::OpenStore(settings_);
    for (int i = 0; i < kWorkers; ++i) {
      workers_.push_back(std::make_unique<RecHarness>(settings_, kTemplates, store_));
      ASSERT_EQ(workers_.back()->load_error, "");
    }
    for (const auto& [name, error] : workers_[0]->PrepareAll()) ASSERT_EQ(error, "") << name;
  }
  void TearDown() override {
    workers_.clear();
    store_.reset();
    fs::remove_all(dir_);
  }

  static constexpr int kWorkers = 8;
  fs::path dir_;
  config::DatabaseSettings settings_;
  std::shared_ptr<adapters::sqlite::Store> store_;
  std::vector<std::unique_ptr<RecHarness>> workers_;
};

std::string Create(const std::string& code, int n) {
  return R"({"template":"Docs","op":"create","data":{"code":")" + code + R"(","n":)" +
         std::to_string(n) + "}}";
}

// Eight workers write at once, every fifth write a duplicate (CONFLICT) or a keyed update that
// repeats an earlier one (answered from its record): a failed write, rolled back to its
// savepoint, takes nothing of the others in its group with it, and each write hears its own
// outcome.
TEST_F(SqliteGroupCommit, ConcurrentWritesKeepTheirOwnOutcomes) {
  constexpr int kEach = 150;
  std::atomic<int> wrong{0};
  std::vector<std::string> problems(kWorkers);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      RecHarness& h = *workers_[w];
      const std::string mine = "w" + std::to_string(w) + "-";
      for (int j = 0; j < kEach; ++j) {
        auto r = h.Run(Create(mine + std::to_string(j), j));
        if (!r) {
          ++wrong;
          problems[w] = r.error().message;
        }
        if (j % 5 == 4) {
          auto dup = h.Run(Create(mine + "0", 99));  // exists: CONFLICT
          if (dup || dup.error().code != Code::kConflict) ++wrong;
          const std::string bump = R"({"template":"Docs","op":"update","id":")" + mine +
                                   std::to_string(j) + R"(","data":{"n":-1},"idempotency_key":")" +
                                   mine + std::to_string(j) + R"("})";
          auto first = h.Run(bump);
          auto again = h.Run(bump);
          if (!first || first->replayed || !again || !again->replayed) ++wrong;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0) << [&] {
    std::string all;
    for (const auto& p : problems) all += p.empty() ? "" : p + "; ";
    return all;
  }();
  // Everything that was answered ok is stored, and nothing else: a fresh worker reads it back.
  RecHarness reader(settings_, kTemplates, store_);
  auto count = reader.Run(R"({"template":"Docs","op":"count"})");
  ASSERT_TRUE(count) << count.error().message;
  EXPECT_EQ(count->count, kWorkers * kEach);
  for (int w = 0; w < kWorkers; ++w) {
    auto zero =
        reader.Run(R"({"template":"Docs","op":"fetch","id":"w)" + std::to_string(w) + R"(-0"})");
    ASSERT_TRUE(zero) << zero.error().message;
    EXPECT_EQ(zero->data.at(0).at("n"), 0) << "a duplicate create overwrote nothing";
    auto bumped =
        reader.Run(R"({"template":"Docs","op":"fetch","id":"w)" + std::to_string(w) + R"(-4"})");
    ASSERT_TRUE(bumped) << bumped.error().message;
    EXPECT_EQ(bumped->data.at(0).at("n"), -1) << "the keyed update applied (once)";
  }
}

}  // namespace
}  // namespace beds::testing
