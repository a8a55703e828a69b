#include "gateway/rest.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

#include "templates/templates.hpp"

namespace beds::gateway {
namespace {

namespace json = boost::json;

// The repository's own templates: Users (REL, int key, a read call and a write call) and the rest.
const templates::Snapshot& Shipped() {
  static const templates::Snapshot snapshot = [] {
    templates::Snapshot s;
    auto loaded = templates::LoadDir(std::string(BEDS_SOURCE_DIR) + "/templates");
    EXPECT_TRUE(loaded) << (loaded ? "" : loaded.error().message);
    if (loaded) {
      for (auto& t : *loaded) s.by_name.emplace(t.name, std::move(t));
    }
    // The shipped calls are all reads: one with a write call too.
    if (const Template* users = s.Find("Users")) {
      Template writes = *users;
      writes.name = "Writes";
      OpSpec touch;
      touch.name = "touch";
      touch.read = false;
      writes.calls.emplace("touch", touch);
      s.by_name.emplace(writes.name, std::move(writes));
    }
    return s;
  }();
  return snapshot;
}

HttpRequest Req(std::string_view method, std::string_view target, std::string_view body = {}) {
  HttpRequest r;
  r.method = method;
  r.target = target;
  r.body = body;
  return r;
}

Routed Routes(const HttpRequest& r) {
  auto route = RouteOf(r, Shipped(), 30000);
  EXPECT_TRUE(route) << r.method << " " << r.target << ": "
                     << (route ? "" : route.error().error.message);
  if (!route) return {};
  EXPECT_FALSE(route->local);
  return route->routed;
}

json::object Envelope(const Routed& routed) {
  json::value v = json::parse(routed.envelope);
  return v.as_object();
}

Refusal Refused(const HttpRequest& r) {
  auto route = RouteOf(r, Shipped(), 30000);
  EXPECT_FALSE(route) << r.method << " " << r.target
                      << " was routed: " << (route ? route->routed.envelope : "");
  return route ? Refusal{} : route.error();
}

TEST(GatewayRoutes, CreateIsAPostOfTheDataOnTheWriteKey) {
  const Routed r = Routes(Req("POST", "/v1/Users", R"({"email":"a@example.org"})"));
  EXPECT_EQ(r.routing_key, "rel.write");
  EXPECT_TRUE(r.write);
  EXPECT_EQ(r.ok_status, 201);
  const json::object e = Envelope(r);
  EXPECT_EQ(e.at("template").as_string(), "Users");
  EXPECT_EQ(e.at("op").as_string(), "create");
  EXPECT_EQ(e.at("data").at("email").as_string(), "a@example.org");
  EXPECT_GT(e.at("deadline_ms").as_int64(), 0);
}

TEST(GatewayRoutes, FetchByIdUpdateAndDeleteTakeTheIdFromThePath) {
  const json::object get = Envelope(Routes(Req("GET", "/v1/Users/42")));
  EXPECT_EQ(get.at("op").as_string(), "fetch");
  EXPECT_EQ(get.at("id").as_string(), "42");
  const Routed patch = Routes(Req("PATCH", "/v1/Users/42", R"({"name":"B"})"));
  EXPECT_EQ(patch.routing_key, "rel.write");
  EXPECT_EQ(Envelope(patch).at("op").as_string(), "update");
  EXPECT_EQ(Envelope(patch).at("data").at("name").as_string(), "B");
  const json::object del = Envelope(Routes(Req("DELETE", "/v1/Users/42")));
  EXPECT_EQ(del.at("op").as_string(), "delete");
  EXPECT_FALSE(del.contains("data"));
}

TEST(GatewayRoutes, QueryFiltersAreTypedByTheTemplatesFields) {
  const Routed r = Routes(Req(
      "GET", "/v1/Users?email=a%40example.org&id.in=1,2,x&id.gte=3&order=-id&limit=5&offset=10"));
  EXPECT_EQ(r.routing_key, "rel.read");
  EXPECT_FALSE(r.write);
  const json::object e = Envelope(r);
  EXPECT_EQ(e.at("op").as_string(), "fetch");
  const json::object& where = e.at("where").as_object();
  EXPECT_EQ(where.at("email").as_string(), "a@example.org");
  const json::array& in = where.at("id").at("in").as_array();
  ASSERT_EQ(in.size(), 3u);
  EXPECT_EQ(in[0].as_int64(), 1);  // an int field's value is a JSON integer
  EXPECT_TRUE(in[2].is_string());  // what is not an integer goes as text, for the node to refuse
  EXPECT_EQ(where.at("id").at("gte").as_int64(), 3);
  EXPECT_EQ(e.at("order").as_string(), "-id");
  EXPECT_EQ(e.at("limit").as_int64(), 5);
  EXPECT_EQ(e.at("offset").as_int64(), 10);
}

TEST(GatewayRoutes, CountAndCallsRouteByTheirKind) {
  EXPECT_EQ(Envelope(Routes(Req("GET", "/v1/Users/count?name=A+B"))).at("where").at("name"), "A B");
  const Routed get = Routes(Req("GET", "/v1/Users/calls/get?id=7"));
  EXPECT_EQ(get.routing_key, "rel.read");  // get is kind = "read"
  EXPECT_EQ(Envelope(get).at("call").as_string(), "get");
  EXPECT_EQ(Envelope(get).at("data").at("id").as_int64(), 7);
  const Routed post = Routes(Req("POST", "/v1/Users/calls/get", R"({"id":7})"));
  EXPECT_EQ(post.routing_key, "rel.read");
}

TEST(GatewayRoutes, TicketsAndLineageGoToTheSystemTemplates) {
  const Routed poll = Routes(Req("GET", "/v1/tickets/t1"));
  EXPECT_EQ(poll.routing_key, "sys.read");
  EXPECT_EQ(Envelope(poll).at("op").as_string(), "poll");
  const Routed wait = Routes(Req("GET", "/v1/tickets/t1?wait_ms=5000"));
  EXPECT_EQ(Envelope(wait).at("op").as_string(), "wait");
  EXPECT_EQ(Envelope(wait).at("data").at("timeout_ms").as_int64(), 5000);
  EXPECT_GE(wait.timeout_ms, 5000);  // the reply is waited for longer than the wait itself
  EXPECT_EQ(Envelope(Routes(Req("DELETE", "/v1/tickets/t1"))).at("op").as_string(), "cancel");
  EXPECT_EQ(Envelope(Routes(Req("GET", "/v1/lineage/e1"))).at("template").as_string(), "lineage");
}

TEST(GatewayRoutes, HeadersBecomeEnvelopeFields) {
  HttpRequest r = Req("POST", "/v1/Users", R"({"email":"a@example.org"})");
  r.idempotency_key = "k-1";
  r.prefer = "respond-async";
  r.parent = "appserver.dev.0192f0c4e1b87a3c9d2e4f60718293a4";
  r.parent_depth = "2";
  r.deadline_ms = "1500";
  const Routed routed = Routes(r);
  EXPECT_EQ(routed.ok_status, 202);
  EXPECT_EQ(routed.timeout_ms, 1500);
  const json::object e = Envelope(routed);
  EXPECT_EQ(e.at("idempotency_key").as_string(), "k-1");
  EXPECT_TRUE(e.at("async").as_bool());
  EXPECT_EQ(e.at("lineage").at("parent_id").as_string(), r.parent);
  EXPECT_EQ(e.at("lineage").at("depth").as_int64(), 3);
}

TEST(GatewayRoutes, BadHeadersAreRefused) {
  for (std::string_view bad : {"0", "abc", "600001", "-5"}) {
    HttpRequest r = Req("GET", "/v1/Users/1");
    r.deadline_ms = bad;
    EXPECT_EQ(Refused(r).status, 400) << bad;
  }
  HttpRequest r = Req("GET", "/v1/Users/1");
  r.parent = "p";
  r.parent_depth = "deep";
  EXPECT_EQ(Refused(r).status, 400);
}

TEST(GatewayRoutes, UnknownThingsAre404AndWrongMethods405) {
  EXPECT_EQ(Refused(Req("GET", "/v1/Nope/1")).error.code, Code::kUnknownTemplate);
  EXPECT_EQ(Refused(Req("GET", "/v1/sys")).status, 404);  // system templates have no REST
  EXPECT_EQ(Refused(Req("POST", "/v1/Users/calls/nope", "{}")).error.code, Code::kUnknownOp);
  EXPECT_EQ(Refused(Req("GET", "/nowhere")).status, 404);
  EXPECT_EQ(Refused(Req("GET", "/v1/Users/1/2/3/4")).status, 404);
  const Refusal put = Refused(Req("PUT", "/v1/Users/1"));
  EXPECT_EQ(put.status, 405);
  EXPECT_EQ(put.allow, "GET, PATCH, DELETE");
  // A write call never rides a GET.
  EXPECT_EQ(Refused(Req("GET", "/v1/Writes/calls/touch")).status, 405);
  EXPECT_EQ(Routes(Req("POST", "/v1/Writes/calls/touch", "{}")).routing_key, "rel.write");
}

TEST(GatewayRoutes, BodiesMustBeJsonObjects) {
  EXPECT_EQ(Refused(Req("POST", "/v1/Users", "not json")).error.code, Code::kBadRequest);
  EXPECT_EQ(Refused(Req("POST", "/v1/Users", "[1,2]")).error.code, Code::kBadRequest);
  EXPECT_EQ(Refused(Req("PATCH", "/v1/Users/1", "\"x\"")).status, 400);
}

TEST(GatewayRoutes, LocalRoutes) {
  auto health = RouteOf(Req("GET", "/healthz"), Shipped(), 1000);
  ASSERT_TRUE(health);
  EXPECT_TRUE(health->local);
  EXPECT_EQ(health->what, Local::kHealth);
  auto ready = RouteOf(Req("GET", "/readyz"), Shipped(), 1000);
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->what, Local::kReady);
}

TEST(GatewayRoutes, TheConsolesFilesAreLocalAndReadOnly) {
  for (const char* path : {"/", "/console.js", "/console.css", "/?from=bookmark"}) {
    auto file = RouteOf(Req("GET", path), Shipped(), 1000);
    ASSERT_TRUE(file) << path;
    EXPECT_TRUE(file->local) << path;
    EXPECT_EQ(file->what, Local::kConsole) << path;
  }
  const Refusal post = Refused(Req("POST", "/", "{}"));
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.allow, "GET");
  EXPECT_EQ(Refused(Req("GET", "/console.html")).status, 404);
  EXPECT_EQ(Refused(Req("GET", "/console.js/x")).status, 404);
}

// RouteOf of HttpOf's request: the envelope it describes (without the deadline RouteOf adds).
json::object RoundTrip(const json::object& envelope) {
  auto form = HttpOf(envelope);
  EXPECT_TRUE(form) << json::serialize(envelope) << ": " << (form ? "" : form.error().message);
  if (!form) return {};
  HttpRequest r = Req(form->method, form->target, form->body);
  for (const auto& [name, value] : form->headers) {
    if (name == "Idempotency-Key") r.idempotency_key = value;
    if (name == "Prefer") r.prefer = value;
    if (name == "X-Beds-Parent") r.parent = value;
    if (name == "X-Beds-Parent-Depth") r.parent_depth = value;
  }
  auto route = RouteOf(r, Shipped(), 30000);
  EXPECT_TRUE(route) << form->method << " " << form->target << ": "
                     << (route ? "" : route.error().error.message);
  if (!route) return {};
  json::object back = json::parse(route->routed.envelope).as_object();
  back.erase("deadline_ms");
  return back;
}

TEST(GatewayHttpOf, EveryRestFormComesBackAsTheSameEnvelope) {
  const char* envelopes[] = {
      R"({"template":"Users","op":"create","data":{"email":"a+b@example.org","name":"Zoë & co"}})",
      R"({"template":"Users","op":"fetch","id":"7"})",
      R"({"template":"Users","op":"fetch","where":{"email":"a b@x.org","id":{"gte":3,"lt":9},)"
      R"("name":{"in":["Ann","Bo b"]}},"order":"-id","limit":10,"offset":5})",
      R"({"template":"Users","op":"count","where":{"name":"Ann"}})",
      R"({"template":"Users","op":"update","id":"7","data":{"name":"New"}})",
      R"({"template":"Users","op":"delete","id":"7"})",
      R"({"template":"Users","op":"call","call":"get","data":{"id":3}})",
      R"({"template":"Users","op":"create","data":{"email":"c@x.org"},"async":true,)"
      R"("idempotency_key":"k-1"})",
      R"({"template":"Users","op":"fetch","id":"7","lineage":{"parent_id":"p.dev.1","depth":1}})",
      R"({"template":"Users","op":"fetch","id":"7","lineage":{"parent_id":"p.dev.1","depth":4}})",
      R"({"template":"calgon","op":"poll","id":"t.dev.1"})",
      R"({"template":"calgon","op":"wait","id":"t.dev.1","data":{"timeout_ms":5000}})",
      R"({"template":"calgon","op":"cancel","id":"t.dev.1"})",
      R"({"template":"lineage","op":"fetch","id":"e.dev.1"})",
  };
  for (const char* text : envelopes) {
    const json::object envelope = json::parse(text).as_object();
    const json::object back = RoundTrip(envelope);
    EXPECT_TRUE(back == envelope) << text << " came back as " << json::serialize(back);
  }
  auto create = HttpOf(json::parse(envelopes[0]).as_object());
  ASSERT_TRUE(create);
  EXPECT_EQ(create->method, "POST");
  EXPECT_EQ(create->target, "/v1/Users");
  auto fetch = HttpOf(json::parse(envelopes[2]).as_object());
  ASSERT_TRUE(fetch);
  EXPECT_EQ(fetch->target,
            "/v1/Users?email=a%20b%40x.org&id.gte=3&id.lt=9&name.in=Ann%2CBo%20b&order=-id&"
            "limit=10&offset=5");
}

TEST(GatewayHttpOf, WhatHasNoRestFormIsRefusedSayingWhy) {
  auto refused = [](const char* text) {
    auto form = HttpOf(json::parse(text).as_object());
    EXPECT_FALSE(form) << text;
    return form ? std::string() : form.error().message;
  };
  EXPECT_NE(refused(R"({"batch":[{"template":"Users","op":"fetch","id":"1"}]})").find("WebSocket"),
            std::string::npos);
  EXPECT_NE(refused(R"({"template":"sys","op":"ping"})").find("/readyz"), std::string::npos);
  EXPECT_NE(refused(R"({"template":"Users","op":"fetch","deadline_ms":1})").find("X-Beds-Deadline"),
            std::string::npos);
  EXPECT_NE(
      refused(R"({"template":"Users","op":"fetch","where":{"name":{"in":["a,b"]}}})").find("comma"),
      std::string::npos);
  EXPECT_NE(refused(R"({"template":"Users","op":"update","data":{"id":1}})").find("\"id\""),
            std::string::npos);
  EXPECT_NE(refused(R"({"template":"Users","op":"fetch","frobnicate":1})").find("frobnicate"),
            std::string::npos);
  EXPECT_FALSE(HttpOf(json::parse(R"({"op":"fetch"})").as_object()));
}

TEST(GatewayReplies, StatusFollowsTheReplysCode) {
  EXPECT_EQ(InfoOf(R"({"ok":true,"event_id":"e1","data":[]})", 201).status, 201);
  EXPECT_EQ(InfoOf(R"({"ok":true,"event_id":"e1","data":[]})", 201).event_id, "e1");
  const ReplyInfo queued =
      InfoOf(R"({"ok":true,"event_id":"t","ticket":"t","status":"queued"})", 202);
  EXPECT_EQ(queued.status, 202);
  EXPECT_EQ(queued.ticket, "t");
  // An async route answered without a ticket (refused before queueing is an error; a replay is
  // not) is the op's plain success.
  EXPECT_EQ(InfoOf(R"({"ok":true,"event_id":"e","data":[]})", 202).status, 200);
  const std::pair<std::string_view, int> codes[] = {
      {"BAD_REQUEST", 400}, {"VALIDATION", 422}, {"NOT_FOUND", 404}, {"UNKNOWN_TEMPLATE", 404},
      {"CONFLICT", 409},    {"FORBIDDEN", 403},  {"TOO_LARGE", 413}, {"TIMEOUT", 504},
      {"UNAVAILABLE", 503}, {"INTERNAL", 500}};
  for (const auto& [code, status] : codes) {
    const std::string reply = R"({"ok":false,"event_id":"e","error":{"code":")" +
                              std::string(code) + R"(","message":"m","retryable":false}})";
    EXPECT_EQ(InfoOf(reply, 200).status, status) << code;
  }
  EXPECT_EQ(InfoOf("garbage", 200).status, 500);
}

TEST(GatewayReplies, ErrorBodyHasTheProtocolsShape) {
  const json::value v = json::parse(ErrorBody(Error{Code::kUnavailable, "away"}));
  EXPECT_FALSE(v.at("ok").as_bool());
  EXPECT_EQ(v.at("error").at("code").as_string(), "UNAVAILABLE");
  EXPECT_EQ(v.at("error").at("message").as_string(), "away");
  EXPECT_TRUE(v.at("error").at("retryable").as_bool());
  EXPECT_FALSE(v.as_object().contains("event_id"));
}

}  // namespace
}  // namespace beds::gateway
