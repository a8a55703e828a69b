// Template loading (every rule of docs/templates.md, with file and key in the message), bind-check
// against a catalogue, and scaffold output that loads and binds.
#include "templates/templates.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/lineage.hpp"

namespace beds::templates {
namespace {

constexpr const char* kUsers = R"(name = "Users"
class = "rel"
tla = "usr"
database = "main"

[fields]
id = { type = "int", key = true }
email = { type = "string", required = true, max = 128 }
created = { type = "datetime" }

[ops.create]
procedure = "usr_create"
params = ["email"]
[ops.fetch]
view = "usr_v_users"
where = ["id", "email"]
order = ["id", "created"]
max_limit = 500
[ops.update]
procedure = "usr_update"
params = ["id", "email"]
[ops.delete]
procedure = "usr_delete"
params = ["id"]
[ops.calls.report]
procedure = "usr_report"
params = ["min_purchases"]
out = ["total"]
kind = "read"
)";

void ExpectError(std::string_view text, std::string_view fragment,
                 const std::string& file = "templates/usr_users_rel.toml") {
  auto t = Parse(text, file);
  ASSERT_FALSE(t) << "accepted; expected: " << fragment;
  EXPECT_EQ(t.error().code, Code::kValidation);
  EXPECT_NE(t.error().message.find(fragment), std::string::npos) << t.error().message;
}

// A top-level key must come before the first table.
std::string With(std::string_view extra) { return std::string(extra) + std::string(kUsers); }
std::string Replace(std::string text, std::string_view from, std::string_view to) {
  const size_t at = text.find(from);
  if (at != std::string::npos) text.replace(at, from.size(), to);
  return text;
}

TEST(Parse, TheExampleLoads) {
  auto t = Parse(kUsers, "templates/usr_users_rel.toml");
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->name, "Users");
  EXPECT_EQ(t->route, "rel");
  ASSERT_NE(t->Key(), nullptr);
  EXPECT_EQ(t->Key()->name, "id");
  EXPECT_EQ(t->Field("email")->max, 128);
  EXPECT_TRUE(t->Field("email")->required);
  ASSERT_NE(t->Op("fetch"), nullptr);
  EXPECT_TRUE(t->Op("fetch")->read);
  EXPECT_FALSE(t->Op("create")->read);
  // count reads the fetch view with the same filters
  ASSERT_NE(t->Op("count"), nullptr);
  EXPECT_EQ(t->Op("count")->view, "usr_v_users");
  ASSERT_NE(t->Call("report"), nullptr);
  EXPECT_TRUE(t->Call("report")->read);
  EXPECT_EQ(t->Call("report")->out, std::vector<std::string>{"total"});
}

TEST(Parse, UnknownKeysNameFileLineAndKey) {
  ExpectError(With("colour = \"red\"\n"), "templates/usr_users_rel.toml:");
  ExpectError(With("colour = \"red\"\n"), "key 'colour': unknown key");
  ExpectError(Replace(kUsers, "max_limit = 500", "max_limit = 500\nlimit = 3"),
              "key 'ops.fetch.limit': unknown key");
  ExpectError(Replace(kUsers, "key = true", "key = true, unique = true"),
              "key 'fields.id.unique': unknown key");
  ExpectError(Replace(kUsers, "[ops.delete]", "[ops.remove]"), "key 'ops.remove': unknown op");
}

TEST(Parse, TlaConvention) {
  ExpectError(Replace(kUsers, "\"usr_create\"", "\"create_user\""),
              "does not start with the template's TLA prefix \"usr_\"");
  ExpectError(Replace(kUsers, "\"usr_v_users\"", "\"v_users\""), "key 'ops.fetch.view'");
  ExpectError(kUsers, "file name must start with \"usr_\"", "templates/users_rel.toml");
  ExpectError(Replace(kUsers, "tla = \"usr\"", "tla = \"USR\""), "three lowercase letters");
  ExpectError(Replace(kUsers, "\"usr_create\"", "\"usr_create; DROP\""), "database object name");
}

TEST(Parse, FieldsAndOps) {
  ExpectError(Replace(kUsers, "type = \"datetime\"", "type = \"timestamp\""),
              "key 'fields.created.type': unknown type \"timestamp\"");
  ExpectError(Replace(kUsers, "where = [\"id\", \"email\"]", "where = [\"id\", \"phone\"]"),
              "key 'ops.fetch.where': \"phone\" is not a declared field");
  ExpectError(Replace(kUsers, "params = [\"email\"]", "params = [\"email\", \"phone\"]"),
              "key 'ops.create.params': \"phone\" is not a declared field");
  ExpectError(Replace(kUsers, "max_limit = 500", "max_limit = 0"), "key 'ops.fetch.max_limit'");
  ExpectError(Replace(kUsers, "kind = \"read\"", "kind = \"sometimes\""), "expected \"read\"");
  ExpectError(Replace(kUsers, "params = [\"id\"]", "params = []"),
              "ops.delete.params': must include the key field \"id\"");
  ExpectError(Replace(kUsers, "id = { type = \"int\", key = true }", "id = { type = \"int\" }"),
              "update and delete need a field with key = true");
  ExpectError(Replace(kUsers, "name = \"Users\"", "name = \"sys\""), "\"sys\" is reserved");
  ExpectError(Replace(kUsers, "class = \"rel\"", "class = \"graph\""),
              "expected \"rel\" or \"rec\"");
  ExpectError("name = \"Users\"\nclass = \"rel\"\ntla = \"usr\"\n", "key 'database': is required");
  ExpectError("name = [", "templates/usr_users_rel.toml:1");
  ExpectError(Replace(kUsers, "created = { type = \"datetime\" }",
                      "created = { type = \"datetime\", required = true }"),
              "key 'fields.created': required, but not a parameter of ops.create");
  // A call is a call whatever its name: it needs a procedure, and may say `out` and `kind`.
  ExpectError(With("").append("[ops.calls.count]\nview = \"usr_v_users\"\n"),
              "key 'ops.calls.count.procedure': is required");
  EXPECT_TRUE(Parse(std::string(kUsers) + "[ops.calls.create]\nprocedure = \"usr_make\"\nout = "
                                          "[\"id\"]\nkind = \"write\"\n",
                    "templates/usr_users_rel.toml"));
}

Schema Catalogue() {
  Schema s;
  s.procedures["usr_create"] = {"usr_create", {{"p_email", "IN", "varchar"}}};
  s.procedures["usr_update"] = {"usr_update",
                                {{"p_id", "IN", "bigint"}, {"p_email", "IN", "varchar"}}};
  s.procedures["usr_delete"] = {"usr_delete", {{"p_id", "IN", "bigint"}}};
  s.procedures["usr_report"] = {"usr_report",
                                {{"p_min_purchases", "IN", "int"}, {"p_total", "OUT", "decimal"}}};
  s.views["usr_v_users"] = {
      "usr_v_users",
      {{"id", "bigint", false}, {"email", "varchar", false}, {"created", "datetime", false}}};
  return s;
}

TEST(BindCheck, BoundWhenEverythingMatches) {
  auto t = Parse(kUsers, "templates/usr_users_rel.toml");
  ASSERT_TRUE(t);
  EXPECT_TRUE(BindCheck(*t, Catalogue()).empty());
}

TEST(BindCheck, ReportsMissingObjectsCountsAndColumns) {
  auto t = Parse(kUsers, "templates/usr_users_rel.toml");
  ASSERT_TRUE(t);
  Schema s = Catalogue();
  s.procedures.erase("usr_delete");
  s.procedures["usr_report"].params.pop_back();
  s.views["usr_v_users"].columns.pop_back();
  const auto problems = BindCheck(*t, s);
  auto has = [&](std::string_view what) {
    for (const auto& p : problems) {
      if (p.find(what) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("Users/delete: procedure usr_delete does not exist"));
  EXPECT_TRUE(
      has("procedure usr_report takes 1 IN and 0 OUT/INOUT parameters; the template "
          "declares 1 and 1"));
  EXPECT_TRUE(has("view usr_v_users has no column created"));
  EXPECT_EQ(problems.size(), 3u) << ::testing::PrintToString(problems);
}

TEST(BindCheck, OutParametersMustFollowTheInOnesAndInoutIsRefused) {
  auto t = Parse(kUsers, "templates/usr_users_rel.toml");
  ASSERT_TRUE(t);
  Schema s = Catalogue();
  s.procedures["usr_report"].params = {{"p_total", "OUT", "decimal"}, {"p_min", "IN", "int"}};
  auto problems = BindCheck(*t, s);
  ASSERT_EQ(problems.size(), 1u) << ::testing::PrintToString(problems);
  EXPECT_NE(problems[0].find("must take its IN parameters before its OUT parameters"),
            std::string::npos);
  s.procedures["usr_report"].params = {{"p_min", "IN", "int"}, {"p_total", "INOUT", "decimal"}};
  problems = BindCheck(*t, s);
  ASSERT_EQ(problems.size(), 1u) << ::testing::PrintToString(problems);
  EXPECT_NE(problems[0].find("INOUT parameter (p_total)"), std::string::npos);
}

TEST(Scaffold, WritesATemplateThatLoadsAndBinds) {
  auto text = Scaffold("usr", "main", Catalogue());
  ASSERT_TRUE(text) << text.error().message;
  auto t = Parse(*text, "templates/usr_scaffold_rel.toml");
  ASSERT_TRUE(t) << t.error().message << "\n" << *text;
  EXPECT_TRUE(BindCheck(*t, Catalogue()).empty()) << *text;
  EXPECT_EQ(t->Key()->name, "id");  // the delete procedure's parameter, prefix dropped
  EXPECT_EQ(t->Op("create")->params, std::vector<std::string>{"email"});
  ASSERT_NE(t->Call("report"), nullptr);
  EXPECT_EQ(t->Call("report")->out, std::vector<std::string>{"total"});
  EXPECT_FALSE(Scaffold("abc", "main", Catalogue()));
}

TEST(LoadDir, LoadsEveryFileAndRefusesDuplicateNames) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("beds-templates-" + NewGuid());
  fs::create_directories(dir);
  std::ofstream(dir / "usr_users_rel.toml") << kUsers;
  std::ofstream(dir / "README.md") << "not a template";
  auto all = LoadDir(dir.string());
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_EQ(all->size(), 1u);
  std::ofstream(dir / "usr_again_rel.toml") << kUsers;
  auto twice = LoadDir(dir.string());
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("\"Users\" is already defined in"), std::string::npos);
  EXPECT_FALSE(LoadDir((dir / "missing").string()));
  fs::remove_all(dir);
}

TEST(LoadDir, TheRepositoryTemplatesLoad) {
  auto all = LoadDir(std::string(BEDS_SOURCE_DIR) + "/templates");
  ASSERT_TRUE(all) << all.error().message;
  EXPECT_GE(all->size(), 4u);
}

constexpr const char* kSessions = R"(name = "Sessions"
class = "rec"
tla = "ses"
collection = "sesSessions"
database = "docs"

[fields]
token = { type = "string", key = true }
user_id = { type = "int", required = true }
created = { type = "datetime" }
expires = { type = "datetime" }
data = { type = "json" }

[indexes]
by_user = { fields = ["user_id", "-created"] }
ttl = { fields = ["expires"], expire_after_s = 0 }

[ops.fetch]
where = ["token", "user_id", "created"]
order = ["created"]
[ops.create]
[ops.update]
[ops.delete]
)";
const std::string kRecFile = "templates/ses_sessions_rec.toml";

TEST(ParseRec, TheExampleLoadsWithIndexesAndDocumentOps) {
  auto t = Parse(kSessions, kRecFile);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->collection, "sesSessions");
  ASSERT_EQ(t->indexes.size(), 2u);
  EXPECT_EQ(t->indexes[0].fields, (std::vector<std::string>{"user_id", "-created"}));
  EXPECT_EQ(t->indexes[1].expire_after_s, 0);
  // create and update take any declared field; delete takes the key; count follows fetch.
  EXPECT_EQ(t->Op("create")->params.size(), 5u);
  EXPECT_EQ(t->Op("update")->params.size(), 5u);
  EXPECT_EQ(t->Op("delete")->params, (std::vector<std::string>{"token"}));
  EXPECT_EQ(t->Op("count")->where, t->Op("fetch")->where);
}

TEST(ParseRec, WithoutAKeyAnImplicitStringIdIsTheKey) {
  auto t = Parse(Replace(kSessions, "token = { type = \"string\", key = true }", ""), kRecFile);
  ASSERT_FALSE(t);  // `token` is still named by ops.fetch.where
  EXPECT_NE(t.error().message.find("\"token\" is not a declared field"), std::string::npos);
  auto ok = Parse(Replace(Replace(kSessions, "token = { type = \"string\", key = true }", ""),
                          "where = [\"token\",", "where = [\"id\","),
                  kRecFile);
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_NE(ok->Key(), nullptr);
  EXPECT_EQ(ok->Key()->name, "id");
  EXPECT_EQ(ok->Key()->type, FieldType::kString);
  ExpectError(Replace(Replace(kSessions, "token = { type = \"string\", key = true }",
                              "id = { type = \"int\" }"),
                      "where = [\"token\",", "where = [\"id\","),
              "implicit key", kRecFile);
}

TEST(ParseRec, RulesOfTheDocumentStore) {
  ExpectError(
      Replace(kSessions, "[ops.delete]", "[ops.delete]\n[ops.calls.x]\nprocedure = \"ses_x\""),
      "REC templates have no calls", kRecFile);
  ExpectError(Replace(kSessions, "where = [\"token\",", "where = [\"data\", \"token\","),
              "REC filters, order and indexes take scalar fields only", kRecFile);
  ExpectError(Replace(kSessions, "fields = [\"expires\"], expire_after_s",
                      "fields = [\"user_id\"], expire_after_s"),
              "a TTL index has exactly one datetime field", kRecFile);
  ExpectError(Replace(kSessions, "\"-created\"", "\"-nope\""), "\"-nope\" is not a declared field",
              kRecFile);
  ExpectError(Replace(kSessions, "token = { type = \"string\", key = true }",
                      "token = { type = \"float\", key = true }"),
              "a REC key is a string or an int", kRecFile);
  ExpectError(Replace(kSessions, "collection = \"sesSessions\"\n", ""), "collection", kRecFile);
  // Only example_*.toml files may break the file-name rule (they document the format).
  ExpectError(kSessions, "file name must start with \"ses_\"", "templates/sessions_rec.toml");
  EXPECT_TRUE(Parse(kSessions, "templates/example_rec.toml"));
}

// The books domain of the issue: a procedure named by its parameters (p_isbn, p_title, p_price).
constexpr const char* kBooks = R"(name = "Books"
class = "rel"
tla = "bks"
database = "main"

[fields]
id = { type = "int", key = true }
isbn = { type = "string", required = true }
title = { type = "string", required = true }
price = { type = "decimal" }

[ops.create]
procedure = "bks_create"
params = ["isbn", "title", "price"]
[ops.calls.touch]
procedure = "bks_touch"
params = ["id"]
kind = "read"
)";

Schema BooksCatalogue() {
  Schema s;
  s.procedures["bks_create"] = {
      "bks_create",
      {{"p_isbn", "IN", "varchar"}, {"p_title", "IN", "varchar"}, {"p_price", "IN", "decimal", 2}},
      "MODIFIES SQL DATA"};
  s.procedures["bks_touch"] = {"bks_touch", {{"p_id", "IN", "bigint"}}, "READS SQL DATA"};
  return s;
}

bool Mentions(const std::vector<std::string>& lines, std::string_view what) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const std::string& l) { return l.find(what) != std::string::npos; });
}

TEST(BindCheck, ParamsInAnotherOrderThanTheProcedureTakesThemAreAProblem) {
  auto t = Parse(Replace(kBooks, R"(["isbn", "title", "price"])", R"(["title", "isbn", "price"])"),
                 "templates/bks_books_rel.toml");
  ASSERT_TRUE(t) << t.error().message;
  const auto problems = BindCheck(*t, BooksCatalogue());
  ASSERT_EQ(problems.size(), 1u) << ::testing::PrintToString(problems);
  EXPECT_NE(problems[0].find("order (p_isbn, p_title, p_price)"), std::string::npos) << problems[0];
  EXPECT_NE(problems[0].find(R"(list them as ["isbn", "title", "price"])"), std::string::npos)
      << problems[0];
  // The right order binds, and says nothing more.
  auto right = Parse(kBooks, "templates/bks_books_rel.toml");
  ASSERT_TRUE(right);
  EXPECT_TRUE(BindCheck(*right, BooksCatalogue()).empty());
  // The suggestion keeps every field once: each parameter's own where it has one.
  Schema shuffled = BooksCatalogue();
  shuffled.procedures["bks_create"].params = {
      {"p_title", "IN", "varchar"}, {"p_x", "IN", "varchar"}, {"p_isbn", "IN", "varchar"}};
  const auto suggestion = BindCheck(*right, shuffled);
  ASSERT_EQ(suggestion.size(), 1u) << ::testing::PrintToString(suggestion);
  EXPECT_NE(suggestion[0].find(R"(list them as ["title", "price", "isbn"])"), std::string::npos)
      << suggestion[0];
  // Parameters named for nothing the op passes are not misplaced (a warning says so instead).
  Schema other = BooksCatalogue();
  other.procedures["bks_create"].params[0].name = "code";
  EXPECT_TRUE(BindCheck(*right, other).empty());
}

TEST(BindWarnings, NamesTypesAndReadCallsThatModifyData) {
  auto t = Parse(kBooks, "templates/bks_books_rel.toml");
  ASSERT_TRUE(t);
  EXPECT_TRUE(BindWarnings(*t, BooksCatalogue()).empty())
      << ::testing::PrintToString(BindWarnings(*t, BooksCatalogue()));

  Schema s = BooksCatalogue();
  s.procedures["bks_create"].params[0].name = "p_code";    // named for no field
  s.procedures["bks_create"].params[1].data_type = "int";  // title is a string
  s.procedures["bks_touch"].data_access = "MODIFIES SQL DATA";
  const auto warnings = BindWarnings(*t, s);
  EXPECT_EQ(warnings.size(), 3u) << ::testing::PrintToString(warnings);
  EXPECT_TRUE(Mentions(warnings,
                       "IN parameter 1 is named p_code, and the template passes field "
                       "'isbn' there"))
      << ::testing::PrintToString(warnings);
  EXPECT_TRUE(Mentions(warnings,
                       "field 'title' is string, but procedure bks_create's parameter "
                       "p_title is int"))
      << ::testing::PrintToString(warnings);
  EXPECT_TRUE(Mentions(warnings,
                       "Books/call touch is declared kind = \"read\", but procedure "
                       "bks_touch is declared MODIFIES SQL DATA"))
      << ::testing::PrintToString(warnings);
  EXPECT_TRUE(BindCheck(*t, s).empty()) << "warnings, not problems: the template still serves";
}

TEST(Annotate, RecordsTheScaleOfEachDecimalParameter) {
  auto t = Parse(kBooks, "templates/bks_books_rel.toml");
  ASSERT_TRUE(t);
  Annotate(*t, BooksCatalogue());
  const OpSpec* create = t->Op("create");
  ASSERT_NE(create, nullptr);
  EXPECT_EQ(create->decimal_scale, (std::map<std::string, int, std::less<>>{{"price", 2}}));
  EXPECT_TRUE(t->Call("touch")->decimal_scale.empty());
}

TEST(Scaffold, TypesJsonColumnsAndTakesACallsKindFromItsDeclaredDataAccess) {
  Schema s = BooksCatalogue();
  s.procedures["bks_touch"].data_access = "MODIFIES SQL DATA";
  s.procedures["bks_cheaper"] = {
      "bks_cheaper", {{"p_price", "IN", "decimal", 2}}, "READS SQL DATA"};
  s.procedures["bks_other"] = {"bks_other", {{"p_id", "IN", "bigint"}}, "CONTAINS SQL"};
  s.views["bks_v_books"] = {"bks_v_books",
                            {{"id", "bigint", false},
                             {"isbn", "varchar", false},
                             {"meta", "longtext", true, true},
                             {"notes", "longtext", true, false}}};
  auto text = Scaffold("bks", "main", s);
  ASSERT_TRUE(text) << text.error().message;
  auto t = Parse(*text, "templates/bks_scaffold_rel.toml");
  ASSERT_TRUE(t) << t.error().message << "\n" << *text;
  EXPECT_EQ(t->Field("meta")->type, FieldType::kJson) << *text;
  EXPECT_EQ(t->Field("notes")->type, FieldType::kString) << *text;
  const auto& where = t->Op("fetch")->where;
  EXPECT_EQ(std::count(where.begin(), where.end(), "meta"), 0) << "a JSON column is not a filter";
  const auto& order = t->Op("fetch")->order;
  EXPECT_EQ(std::count(order.begin(), order.end(), "meta"), 0) << "nor an order";
  EXPECT_TRUE(t->Call("cheaper")->read) << *text;
  EXPECT_FALSE(t->Call("touch")->read) << *text;
  EXPECT_FALSE(t->Call("other")->read) << "undeclared access may modify: write, with a comment";
  EXPECT_NE(text->find("does not declare READS SQL DATA"), std::string::npos) << *text;
}

TEST(FieldOfParameter, DropsTheUsualPrefixes) {
  EXPECT_EQ(FieldOfParameter("p_isbn"), "isbn");
  EXPECT_EQ(FieldOfParameter("in_title"), "title");
  EXPECT_EQ(FieldOfParameter("isbn"), "isbn");
  EXPECT_EQ(FieldOfParameter("p_"), "p_");
}

}  // namespace
}  // namespace beds::templates

namespace beds::templates {
namespace {

TEST(OnceCheck, EndsTransactionSeesStatementsNotCommentsOrText) {
  EXPECT_TRUE(EndsTransaction("BEGIN INSERT INTO t VALUES (1); COMMIT; END"));
  EXPECT_TRUE(EndsTransaction("BEGIN\n  rollback;\nEND"));
  EXPECT_TRUE(EndsTransaction("BEGIN START TRANSACTION; INSERT INTO t VALUES (1); END"));
  EXPECT_TRUE(EndsTransaction("BEGIN BEGIN WORK; END"));
  EXPECT_FALSE(EndsTransaction("BEGIN INSERT INTO t VALUES (1); END"));
  EXPECT_FALSE(EndsTransaction("BEGIN -- we COMMIT nothing\n  SELECT 1; END"));
  EXPECT_FALSE(EndsTransaction("BEGIN # no ROLLBACK here\n SELECT 1; END"));
  EXPECT_FALSE(EndsTransaction("BEGIN /* COMMIT */ SELECT 'COMMIT', \"ROLLBACK\"; END"));
  EXPECT_FALSE(EndsTransaction("BEGIN SELECT `commit` FROM t; END"));
  EXPECT_FALSE(EndsTransaction("BEGIN SAVEPOINT a; ROLLBACK TO a; END"));
  EXPECT_FALSE(EndsTransaction("BEGIN SELECT committed, rollback_count FROM t; END"));
  EXPECT_FALSE(EndsTransaction("BEGIN SELECT 'it''s COMMIT' ; END"));
}

TEST(OnceCheck, NamesMissingRecordObjectsAndCommittingProcedures) {
  auto t = Parse(kBooks, "templates/bks_books_rel.toml");
  ASSERT_TRUE(t);
  Schema s = BooksCatalogue();
  auto problems = OnceCheck(*t, s);
  EXPECT_EQ(problems.missing,
            (std::vector<std::string>{
                "table beds_idempotency", "procedure beds_once_begin", "procedure beds_once_commit",
                "procedure beds_once_commit_many", "procedure beds_once_sweep"}));
  EXPECT_TRUE(problems.ends_transaction.empty());

  s.tables = {"beds_idempotency", "bks_books"};
  for (const char* p :
       {"beds_once_begin", "beds_once_commit", "beds_once_commit_many", "beds_once_sweep"})
    s.procedures[p] = {p, {}, "MODIFIES SQL DATA", "BEGIN COMMIT; END"};
  s.procedures["bks_create"].definition = "BEGIN INSERT INTO bks_books VALUES (1); COMMIT; END";
  s.procedures["bks_touch"].definition = "BEGIN COMMIT; END";  // a read call: not checked
  problems = OnceCheck(*t, s);
  EXPECT_TRUE(problems.missing.empty()) << ::testing::PrintToString(problems.missing);
  ASSERT_EQ(problems.ends_transaction.size(), 1u);
  EXPECT_NE(problems.ends_transaction[0].find("Books/create: procedure bks_create"),
            std::string::npos)
      << problems.ends_transaction[0];

  // A template without writes needs no records.
  auto reads = Parse(Replace(kBooks,
                             "[ops.create]\nprocedure = \"bks_create\"\n"
                             "params = [\"isbn\", \"title\", \"price\"]\n",
                             ""),
                     "templates/bks_books_rel.toml");
  ASSERT_TRUE(reads) << reads.error().message;
  EXPECT_TRUE(OnceCheck(*reads, BooksCatalogue()).missing.empty());
}

}  // namespace
}  // namespace beds::templates
