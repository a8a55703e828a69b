// Request validation against a template: every rule, with the exact error code.
#include "core/validate.hpp"

#include <gtest/gtest.h>

namespace beds {
namespace {

namespace json = boost::json;

Template Users() {
  Template t;
  t.name = "Users";
  t.template_class = TemplateClass::kRel;
  t.tla = "usr";
  t.fields = {{"id", FieldType::kInt, true, false, 0},
              {"email", FieldType::kString, false, true, 8},
              {"name", FieldType::kString, false, false, 0},
              {"amount", FieldType::kDecimal, false, false, 0},
              {"born", FieldType::kDate, false, false, 0},
              {"seen", FieldType::kDatetime, false, false, 0},
              {"avatar", FieldType::kBytes, false, false, 4},
              {"profile", FieldType::kJson, false, false, 0},
              {"active", FieldType::kBool, false, false, 0},
              {"score", FieldType::kFloat, false, false, 0}};
  OpSpec create;
  create.name = "create";
  create.params = {"email",  "name",    "amount", "born", "seen",
                   "avatar", "profile", "active", "score"};
  t.ops["create"] = create;
  OpSpec update;
  update.name = "update";
  update.params = {"id", "email", "name"};
  t.ops["update"] = update;
  OpSpec fetch;
  fetch.name = "fetch";
  fetch.where = {"id", "email", "seen"};
  fetch.order = {"id", "seen"};
  fetch.max_limit = 50;
  t.ops["fetch"] = fetch;
  OpSpec call;
  call.name = "report";
  call.params = {"min", "id"};
  t.calls["report"] = call;
  return t;
}

json::object Obj(std::string_view text) { return json::parse(text).as_object(); }

Result<Payload> Create(std::string_view data) {
  const Template t = Users();
  return ValidatePayload(t, *t.Op("create"), "create", Obj(data), "");
}

Result<Query> Fetch(std::string_view where, std::string_view id = "",
                    std::optional<int64_t> limit = std::nullopt, std::string_view order = "") {
  const Template t = Users();
  const json::object w = Obj(where);
  return ValidateQuery(t, *t.Op("fetch"), QueryInput{&w, id, limit, std::nullopt, order}, false);
}

void ExpectValidation(const auto& result, std::string_view fragment) {
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().code, Code::kValidation);
  EXPECT_NE(result.error().message.find(fragment), std::string::npos) << result.error().message;
}

TEST(ValidatePayload, TypesEveryField) {
  auto p = Create(R"({"email":"a@b.c","name":"Ann","amount":"-12.3400","born":"2000-02-29",
      "seen":"2026-11-24T17:07:20.123Z","avatar":"AAEC","profile":{"a":[1,2]},"active":true,
      "score":1.5})");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->values.at("email").text, "a@b.c");
  EXPECT_EQ(p->values.at("amount").text, "-12.3400");
  EXPECT_EQ(p->values.at("born").text, "2000-02-29");
  EXPECT_EQ(p->values.at("seen").text, "2026-11-24 17:07:20.123");
  EXPECT_EQ(p->values.at("avatar").text, std::string("\x00\x01\x02", 3));
  EXPECT_EQ(p->values.at("profile").text, R"({"a":[1,2]})");
  EXPECT_EQ(p->values.at("active").i, 1);
  EXPECT_DOUBLE_EQ(p->values.at("score").f, 1.5);
}

TEST(ValidatePayload, NullIsAllowedForOptionalFields) {
  auto p = Create(R"({"email":"a@b.c","name":null})");
  ASSERT_TRUE(p);
  EXPECT_TRUE(p->values.at("name").null);
  EXPECT_TRUE(p->Get("born", FieldType::kDate).null);
}

TEST(ValidatePayload, RequiredUnknownAndNotAParameter) {
  ExpectValidation(Create(R"({"name":"Ann"})"), "'email' is required");
  ExpectValidation(Create(R"({"email":null})"), "'email' is required");
  ExpectValidation(Create(R"({"email":"a@b.c","nick":"x"})"), "unknown field 'nick'");
  ExpectValidation(Create(R"({"email":"a@b.c","id":4})"),
                   "'id' is not a parameter of Users/create");
}

TEST(ValidatePayload, WrongTypesAndLimits) {
  ExpectValidation(Create(R"({"email":5})"), "'email' must be a string");
  ExpectValidation(Create(R"({"email":"123456789"})"), "longer than 8 characters");
  // Characters, not bytes: eight two-byte characters fit.
  EXPECT_TRUE(Create(R"({"email":"éééééééé"})"));
  ExpectValidation(Create(R"({"email":"a","amount":1.5})"), "'amount' must be a decimal");
  ExpectValidation(Create(R"({"email":"a","amount":"1e5"})"), "'amount' must be a decimal");
  ExpectValidation(Create(R"({"email":"a","born":"2001-02-29"})"), "'born' must be a date");
  ExpectValidation(Create(R"({"email":"a","seen":"2026-11-24T10:00:00+02:00"})"), "'seen'");
  ExpectValidation(Create(R"({"email":"a","avatar":"not base64!"})"), "base64");
  ExpectValidation(Create(R"({"email":"a","avatar":"AAECAwQF"})"), "larger than 4 bytes");
  ExpectValidation(Create(R"({"email":"a","active":1})"), "true or false");
  ExpectValidation(Create(R"({"email":"a","score":"1.5"})"), "a number");
}

TEST(ValidatePayload, KeyComesFromTheEnvelopeId) {
  const Template t = Users();
  auto p = ValidatePayload(t, *t.Op("update"), "update", Obj(R"({"name":"B"})"), "42");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->values.at("id").i, 42);
  ExpectValidation(ValidatePayload(t, *t.Op("update"), "update", Obj(R"({"name":"B"})"), ""),
                   "update needs the record's id");
  ExpectValidation(ValidatePayload(t, *t.Op("update"), "update", Obj("{}"), "4x"),
                   "id must be an integer");
  ExpectValidation(ValidatePayload(t, *t.Op("update"), "update", Obj("{}"), "1 OR 1=1"),
                   "id must be an integer");
}

TEST(ValidatePayload, CallParametersThatAreNotFieldsAreTypedByTheirJson) {
  const Template t = Users();
  auto p = ValidatePayload(t, *t.Call("report"), "call", Obj(R"({"min":3})"), "7");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->values.at("min").type, FieldType::kInt);
  EXPECT_EQ(p->values.at("min").i, 3);
  EXPECT_EQ(p->values.at("id").i, 7);
  ExpectValidation(ValidatePayload(t, *t.Call("report"), "call", Obj(R"({"max":3})"), ""),
                   "'max' is not a parameter of Users/report");
}

TEST(ValidateQuery, FiltersOperatorsOrderAndLimit) {
  auto q =
      Fetch(R"({"email":"a@b.c","id":{"gte":2,"lt":9},"seen":{"in":["2026-01-01T00:00:00Z"]}})", "",
            10, "-seen,id");
  ASSERT_TRUE(q) << q.error().message;
  ASSERT_EQ(q->filters.size(), 4u);
  EXPECT_EQ(q->filters[0].field, "email");
  EXPECT_EQ(q->filters[0].op, Filter::Op::kEq);
  EXPECT_EQ(q->filters[1].op, Filter::Op::kGte);
  EXPECT_EQ(q->filters[2].op, Filter::Op::kLt);
  EXPECT_EQ(q->filters[3].op, Filter::Op::kIn);
  EXPECT_EQ(q->filters[3].values[0].text, "2026-01-01 00:00:00");
  ASSERT_EQ(q->order.size(), 2u);
  EXPECT_EQ(q->order[0], std::make_pair(std::string("seen"), true));
  EXPECT_EQ(q->order[1], std::make_pair(std::string("id"), false));
  EXPECT_EQ(q->limit, 10);
}

TEST(ValidateQuery, DefaultsAndId) {
  auto q = Fetch("{}", "5");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->limit, 50);  // max_limit
  ASSERT_EQ(q->filters.size(), 1u);
  EXPECT_EQ(q->filters[0].field, "id");
  EXPECT_EQ(q->filters[0].values[0].i, 5);
}

TEST(ValidateQuery, Refusals) {
  ExpectValidation(Fetch(R"({"name":"Ann"})"), "'name' is not a filter of Users/fetch");
  ExpectValidation(Fetch(R"({"nope":1})"), "'nope' is not a filter");
  ExpectValidation(Fetch(R"({"id":{"$where":"1"}})"), "unknown operator '$where'");
  ExpectValidation(Fetch(R"({"id":{"$gt":1}})"), "unknown operator '$gt'");
  ExpectValidation(Fetch(R"({"id":{}})"), "has no operator");
  ExpectValidation(Fetch(R"({"id":[1,2]})"), "use {\"in\"");
  ExpectValidation(Fetch(R"({"id":{"in":[]}})"), "in takes an array");
  ExpectValidation(Fetch(R"({"id":null})"), "cannot be null");
  ExpectValidation(Fetch(R"({"id":"1; DROP TABLE x"})"), "'id' must be an integer");
  ExpectValidation(Fetch("{}", "", 51), "limit must be between 1 and 50");
  ExpectValidation(Fetch("{}", "", 0), "limit must be between 1 and 50");
  ExpectValidation(Fetch("{}", "", std::nullopt, "email"), "cannot order Users/fetch by 'email'");
  ExpectValidation(Fetch("{}", "", std::nullopt, "id; DROP TABLE x"), "cannot order");
}

TEST(Iso8601, NormalizesUtcOnly) {
  EXPECT_EQ(NormalizeDatetime("2026-11-24T17:07"), "2026-11-24 17:07:00");
  EXPECT_EQ(NormalizeDatetime("2026-11-24 17:07:20"), "2026-11-24 17:07:20");
  EXPECT_EQ(NormalizeDatetime("2026-11-24T17:07:20.123456+00:00"), "2026-11-24 17:07:20.123456");
  EXPECT_FALSE(NormalizeDatetime("2026-11-24T24:00:00Z"));
  EXPECT_FALSE(NormalizeDatetime("2026-11-24T17:07:20.1234567Z"));
  EXPECT_FALSE(NormalizeDatetime("2026-13-01T00:00:00Z"));
  EXPECT_FALSE(NormalizeDate("2026-1-01"));
  EXPECT_TRUE(NormalizeDate("2024-02-29"));
  EXPECT_FALSE(NormalizeDate("2100-02-29"));
}

TEST(Base64, RoundTripsEveryLength) {
  std::string bytes;
  for (int n = 0; n < 10; ++n) {
    auto back = Base64Decode(Base64Encode(bytes));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, bytes);
    bytes.push_back(static_cast<char>(n * 37));
  }
  EXPECT_EQ(Base64Encode("hello"), "aGVsbG8=");
  EXPECT_FALSE(Base64Decode("aGVsbG8"));
  EXPECT_FALSE(Base64Decode("aGV=bG8="));
}

// The bind-check recorded DECIMAL(…, 2) for amount (and for the call's `min`): MariaDB would round
// 9.999 to 10.00 without a word, so the value is refused instead.
TEST(ValidatePayload, ADecimalWithMorePlacesThanItsParameterKeepsIsRefused) {
  Template t = Users();
  t.ops["create"].decimal_scale = {{"amount", 2}};
  t.calls["report"].decimal_scale = {{"min", 2}};
  auto create = [&](std::string_view data) {
    return ValidatePayload(t, *t.Op("create"), "create", Obj(data), "");
  };
  ExpectValidation(create(R"({"email":"a@b.c","amount":"9.999"})"),
                   "field 'amount' has 3 decimal places; Users/create keeps 2");
  EXPECT_TRUE(create(R"({"email":"a@b.c","amount":"9.99"})"));
  EXPECT_TRUE(create(R"({"email":"a@b.c","amount":"9.990"})")) << "trailing zeros change nothing";
  EXPECT_TRUE(create(R"({"email":"a@b.c","amount":12})"));
  EXPECT_TRUE(create(R"({"email":"a@b.c","amount":null})"));
  // A call's parameter that is not a field is typed by its JSON value: checked all the same.
  ExpectValidation(ValidatePayload(t, *t.Call("report"), "call", Obj(R"({"min":"0.001"})"), ""),
                   "field 'min' has 3 decimal places; Users/report keeps 2");
  ExpectValidation(ValidatePayload(t, *t.Call("report"), "call", Obj(R"({"min":19.755})"), ""),
                   "field 'min' has 3 decimal places; Users/report keeps 2");
  EXPECT_TRUE(ValidatePayload(t, *t.Call("report"), "call", Obj(R"({"min":19.75})"), ""));
}

TEST(ValidatePayload, ADayTheCalendarDoesNotHaveIsSaidSo) {
  ExpectValidation(Create(R"({"email":"a","born":"2026-02-30"})"),
                   "field 'born' must be a date that exists: 2026-02-30 is not a day of the "
                   "calendar");
  ExpectValidation(Create(R"({"email":"a","seen":"2026-04-31T10:00:00Z"})"),
                   "2026-04-31 is not a day of the calendar");
  ExpectValidation(Create(R"({"email":"a","born":"soon"})"), "'born' must be a date such as");
}

}  // namespace
}  // namespace beds
