#include "protocol/envelope.hpp"

#include <gtest/gtest.h>

namespace beds::protocol {
namespace {

namespace json = boost::json;

Code CodeOf(std::string_view body, int64_t max = 1 << 20) {
  auto r = DecodeRequest(body, max);
  EXPECT_FALSE(r.has_value()) << body;
  return r ? Code::kInternal : r.error().code;
}

TEST(Envelope, DecodesEveryField) {
  auto r = DecodeRequest(R"({"template":"Users","op":"fetch","call":"x","id":42,
    "data":{"email":"a@example.org"},"where":{"id":{"gt":1}},"limit":50,"offset":5,"order":"-created",
    "async":true,"lineage":{"event_id":"","parent_id":"appserver.dev.0192f0c4e1b87a3c9d2e4f60718293a4","depth":1},
    "deadline_ms":1700000000000,"idempotency_key":"k1"})",
                         1 << 20);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->template_name, "Users");
  EXPECT_EQ(r->op, "fetch");
  EXPECT_EQ(r->call, "x");
  EXPECT_EQ(r->id, "42");
  EXPECT_EQ(r->data.at("email").as_string(), "a@example.org");
  EXPECT_TRUE(r->where.at("id").is_object());
  EXPECT_EQ(r->limit, 50);
  EXPECT_EQ(r->offset, 5);
  EXPECT_EQ(r->order, "-created");
  EXPECT_TRUE(r->async);
  ASSERT_TRUE(r->lineage);
  EXPECT_EQ(r->lineage->depth, 1);
  EXPECT_EQ(r->deadline_ms, 1700000000000);
  EXPECT_EQ(r->idempotency_key, "k1");
}

TEST(Envelope, NotJsonIsBadRequest) {
  EXPECT_EQ(CodeOf("this is not json"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(""), Code::kBadRequest);
  EXPECT_EQ(CodeOf("{\"template\":\"sys\""), Code::kBadRequest);
  EXPECT_EQ(CodeOf("{\"template\":\"\xff\xfe\",\"op\":\"ping\"}"), Code::kBadRequest);  // bad UTF-8
}

TEST(Envelope, NotAnObjectIsBadRequest) {
  EXPECT_EQ(CodeOf("[1,2]"), Code::kBadRequest);
  EXPECT_EQ(CodeOf("\"ping\""), Code::kBadRequest);
  EXPECT_EQ(CodeOf("null"), Code::kBadRequest);
}

TEST(Envelope, UnknownFieldIsBadRequest) {
  auto r = DecodeRequest(R"({"template":"sys","op":"ping","drop":"table"})", 1 << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kBadRequest);
  EXPECT_NE(r.error().message.find("'drop'"), std::string::npos);
}

TEST(Envelope, WrongTypesAreBadRequest) {
  EXPECT_EQ(CodeOf(R"({"template":1,"op":"ping"})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":["ping"]})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"fetch","limit":"10"})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"fetch","limit":-1})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"fetch","limit":1.5})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"fetch","data":[]})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"fetch","where":"id=1"})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"fetch","async":"yes"})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"fetch","id":true})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"fetch","deadline_ms":"soon"})"), Code::kBadRequest);
}

TEST(Envelope, MissingRequiredFieldsAreBadRequest) {
  EXPECT_EQ(CodeOf(R"({"op":"ping"})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys"})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"","op":"ping"})"), Code::kBadRequest);
}

TEST(Envelope, BadLineageIsBadRequest) {
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"ping","lineage":{"event_id":"x"}})"),
            Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"ping","lineage":{"depth":2}})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"ping","lineage":{"hops":2}})"), Code::kBadRequest);
  EXPECT_EQ(CodeOf(R"({"template":"sys","op":"ping","lineage":[]})"), Code::kBadRequest);
}

TEST(Envelope, OversizedBodyIsTooLarge) {
  const std::string body =
      R"({"template":"sys","op":"ping","data":{"pad":")" + std::string(2000, 'x') + "\"}}";
  EXPECT_EQ(CodeOf(body, 1024), Code::kTooLarge);
  EXPECT_TRUE(DecodeRequest(body, 4096));
}

TEST(Envelope, DeeplyNestedJsonIsRefusedNotCrashed) {
  const std::string body = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(CodeOf(body, 1 << 20), Code::kBadRequest);
}

TEST(Envelope, LineageOfARootAndOfAChild) {
  auto root = DecodeRequest(R"({"template":"sys","op":"ping"})", 1 << 20);
  ASSERT_TRUE(root);
  const Lineage l = RequestLineage(*root, "", "appserver", "dev");
  EXPECT_TRUE(IsEventId(l.event_id));
  EXPECT_EQ(l.parent_id, "");
  EXPECT_EQ(l.depth, 0);

  const std::string mid = "client.dev.0192f0c4e1b87a3c9d2e4f60718293a4";
  auto with_mid = RequestLineage(*root, mid, "appserver", "dev");
  EXPECT_EQ(with_mid.event_id, mid);
  auto not_an_id = RequestLineage(*root, "hello", "appserver", "dev");
  EXPECT_NE(not_an_id.event_id, "hello");

  auto child = DecodeRequest(
      R"({"template":"sys","op":"ping","lineage":{"parent_id":"appserver.dev.0192f0c4e1b87a3c9d2e4f60718293a4","depth":3}})",
      1 << 20);
  ASSERT_TRUE(child);
  auto cl = RequestLineage(*child, "", "appserver", "dev");
  EXPECT_EQ(cl.parent_id, "appserver.dev.0192f0c4e1b87a3c9d2e4f60718293a4");
  EXPECT_EQ(cl.depth, 3);
  EXPECT_TRUE(IsEventId(cl.event_id));
}

TEST(Envelope, RepliesRoundTrip) {
  const std::string ok =
      EncodeOk("n.dev.0192f0c4e1b87a3c9d2e4f60718293a4", json::array{json::object{{"id", 42}}}, 1);
  auto r = DecodeReply(ok);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->ok);
  EXPECT_EQ(r->body.at("count").as_int64(), 1);
  EXPECT_EQ(r->body.at("data").at(0).at("id").as_int64(), 42);

  const std::string err =
      EncodeError("n.dev.0192f0c4e1b87a3c9d2e4f60718293a4", Error{Code::kUnavailable, "down"});
  auto e = DecodeReply(err);
  ASSERT_TRUE(e);
  EXPECT_FALSE(e->ok);
  ASSERT_TRUE(e->error);
  EXPECT_EQ(e->error->code, Code::kUnavailable);
  EXPECT_EQ(e->body.at("error").at("retryable").as_bool(), true);
  EXPECT_EQ(e->body.at("error").at("code").as_string(), "UNAVAILABLE");
}

TEST(Envelope, EveryCodeNameRoundTrips) {
  for (Code c : {Code::kBadRequest, Code::kUnknownTemplate, Code::kUnknownOp, Code::kValidation,
                 Code::kNotFound, Code::kConflict, Code::kForbidden, Code::kTooLarge,
                 Code::kTimeout, Code::kUnavailable, Code::kInternal}) {
    EXPECT_EQ(CodeFromName(CodeName(c)), c);
  }
  EXPECT_FALSE(CodeFromName("NOPE"));
}

TEST(Envelope, ExcerptsCutOnACharacterBoundary) {
  EXPECT_EQ(Excerpt("short"), "short");
  // 63 ASCII bytes then a 3-byte character straddling byte 64: it is left out whole.
  const std::string text = std::string(63, 'a') + "\u20ac" + "tail";
  EXPECT_EQ(Excerpt(text), std::string(63, 'a') + "…");
  const std::string reply =
      EncodeError("n.dev.0192f0c4e1b87a3c9d2e4f60718293a4",
                  Error{Code::kBadRequest, "unknown field '" + Excerpt(text) + "'"});
  EXPECT_TRUE(DecodeReply(reply));  // valid UTF-8 all the way through
  auto r = DecodeRequest("{\"template\":\"sys\",\"op\":\"ping\",\"" + text + "\":1}", 1 << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.find("\xe2\x82'"), std::string::npos);
}

// A record's fields put at the top level are the commonest slip: the error says where they go.
TEST(Envelope, AnUnknownTopLevelFieldSaysWhereRecordFieldsGo) {
  auto r = DecodeRequest(R"({"template":"Books","op":"create","isbn":"1"})", 1 << 20);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::kBadRequest);
  EXPECT_NE(r.error().message.find("unknown field 'isbn'"), std::string::npos);
  EXPECT_NE(r.error().message.find("a record's fields go inside \"data\""), std::string::npos)
      << r.error().message;
}

}  // namespace
}  // namespace beds::protocol

namespace beds::protocol {
namespace {

TEST(Envelope, AnIdempotencyKeyBedsCannotRecordIsValidation) {
  auto code = [](const std::string& key_json) {
    auto r = DecodeRequest(
        R"({"template":"Items","op":"create","idempotency_key":)" + key_json + "}", 1 << 20);
    return r ? std::optional<Code>() : std::optional<Code>(r.error().code);
  };
  EXPECT_EQ(code('"' + std::string(200, 'k') + '"'), std::nullopt);
  EXPECT_EQ(code('"' + std::string(201, 'k') + '"'), Code::kValidation);
  EXPECT_EQ(code("17"), Code::kValidation);
  EXPECT_EQ(code("null"), Code::kValidation);
  EXPECT_EQ(code(R"("")"), Code::kValidation);
  // 200 bytes, not characters: 67 three-byte characters are 201 bytes.
  std::string wide;
  for (int i = 0; i < 67; ++i) wide += "\u20ac";
  EXPECT_EQ(code('"' + wide + '"'), Code::kValidation);
}

TEST(Envelope, AReplayedReplySaysSo) {
  auto replayed = DecodeReply(EncodeOk("n.dev.1", boost::json::array{}, 0, true));
  ASSERT_TRUE(replayed);
  EXPECT_EQ(replayed->body.at("replayed"), boost::json::value(true));
  auto fresh = DecodeReply(EncodeOk("n.dev.1", boost::json::array{}, 0));
  ASSERT_TRUE(fresh);
  EXPECT_FALSE(fresh->body.as_object().contains("replayed"));
}

}  // namespace
}  // namespace beds::protocol

namespace beds::protocol {
namespace {

Result<Batch> Decode(std::string_view body, int64_t max_batch = 100) {
  auto parsed = ParseBody(body, 1 << 20);
  EXPECT_TRUE(parsed) << body;
  if (!parsed) return std::unexpected(parsed.error());
  EXPECT_TRUE(IsBatch(*parsed));
  return DecodeBatch(std::move(*parsed), max_batch);
}

TEST(BatchEnvelope, DecodesEachEnvelopeOnItsOwn) {
  auto b = Decode(R"({"batch":[{"template":"sys","op":"ping"},7,{"template":"Users"},
    {"template":"Users","op":"create","async":true},{"template":"Users","op":"count",
    "lineage":{"event_id":"","parent_id":"","depth":0}},{"batch":[]}],"atomic":false,
    "deadline_ms":5,"idempotency_key":"b-1"})");
  ASSERT_TRUE(b) << b.error().message;
  ASSERT_EQ(b->requests.size(), 6u);
  EXPECT_FALSE(b->atomic);
  EXPECT_EQ(b->deadline_ms, 5);
  EXPECT_EQ(b->idempotency_key, "b-1");
  ASSERT_TRUE(b->requests[0]);
  EXPECT_EQ(b->requests[0]->op, "ping");
  ASSERT_FALSE(b->requests[1]);  // not an object
  EXPECT_EQ(b->requests[1].error().code, Code::kBadRequest);
  ASSERT_FALSE(b->requests[2]);  // no op
  EXPECT_NE(b->requests[2].error().message.find("'op'"), std::string::npos);
  ASSERT_FALSE(b->requests[3]);  // async is a job of its own
  EXPECT_EQ(b->requests[3].error().code, Code::kValidation);
  ASSERT_FALSE(b->requests[4]);  // an envelope is a child of the batch
  EXPECT_NE(b->requests[4].error().message.find("lineage"), std::string::npos);
  ASSERT_FALSE(b->requests[5]);
  EXPECT_NE(b->requests[5].error().message.find("cannot hold a batch"), std::string::npos);
}

TEST(BatchEnvelope, TheBatchItselfMustBeSound) {
  EXPECT_EQ(Decode(R"({"batch":{}})").error().code, Code::kBadRequest);
  EXPECT_EQ(Decode(R"({"batch":[]})").error().code, Code::kBadRequest);
  EXPECT_EQ(Decode(R"({"batch":[{}],"atomic":"yes"})").error().code, Code::kBadRequest);
  auto stray = Decode(R"({"batch":[{}],"template":"Users"})");
  ASSERT_FALSE(stray);
  EXPECT_NE(stray.error().message.find("'template'"), std::string::npos);
  EXPECT_EQ(Decode(R"({"batch":[{}],"idempotency_key":""})").error().code, Code::kValidation);
  auto big = Decode(R"({"batch":[{},{},{}]})", 2);
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().message.find("at most 2"), std::string::npos);
  auto atomic = Decode(R"({"batch":[{"template":"sys","op":"ping"}],"atomic":true})");
  ASSERT_TRUE(atomic);
  EXPECT_TRUE(atomic->atomic);
}

TEST(BatchEnvelope, TheReplyHoldsEachEnvelopesReplyInOrder) {
  const std::string reply = EncodeBatchReply(
      "n.e.0192f0c4e1b87a3c9d2e4f60718293a4",
      {EncodeOk("n.e.0192f0c4e1b87a3c9d2e4f60718293a5", json::array{1}, 1),
       EncodeError("n.e.0192f0c4e1b87a3c9d2e4f60718293a6", Error{Code::kNotFound, "gone"})});
  auto v = json::parse(reply);
  EXPECT_EQ(v.at("ok"), json::value(true));
  EXPECT_EQ(v.at("count"), json::value(2));
  ASSERT_EQ(v.at("data").as_array().size(), 2u);
  EXPECT_EQ(v.at("data").at(0).at("data"), json::parse("[1]"));
  EXPECT_EQ(v.at("data").at(1).at("error").at("code"), json::value("NOT_FOUND"));
  auto failed = json::parse(
      EncodeErrorAt("n.e.0192f0c4e1b87a3c9d2e4f60718293a4", Error{Code::kConflict, "taken"}, 3));
  EXPECT_EQ(failed.at("error").at("index"), json::value(3));
}

}  // namespace
}  // namespace beds::protocol
