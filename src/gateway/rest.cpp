#include "gateway/rest.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <vector>

#include "core/clock.hpp"
#include "gateway/console.hpp"
#include "protocol/envelope.hpp"

namespace beds::gateway {
namespace {

namespace json = boost::json;

constexpr int64_t kMaxDeadlineMs = 600000;
// The reply to a calgon/wait comes when the job ends or its timeout passes: it is waited for
// this much longer than the timeout it asks for.
constexpr int64_t kWaitSlackMs = 2000;

std::unexpected<Refusal> Refuse(int status, Code code, std::string message,
                                std::string allow = {}) {
  return std::unexpected(Refusal{status, Error{code, std::move(message)}, std::move(allow)});
}

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding; in a query, '+' is a space. A malformed escape is kept as it is, so the
// node sees (and refuses) the text the client sent.
std::string Decode(std::string_view text, bool query) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      const int hi = Hex(text[i + 1]);
      const int lo = Hex(text[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(query && c == '+' ? ' ' : c);
  }
  return out;
}

std::vector<std::string> PathSegments(std::string_view path) {
  std::vector<std::string> segments;
  size_t start = 1;  // after the leading '/'
  while (start <= path.size()) {
    const size_t end = std::min(path.find('/', start), path.size());
    if (end > start) segments.push_back(Decode(path.substr(start, end - start), false));
    start = end + 1;
  }
  return segments;
}

std::vector<std::pair<std::string, std::string>> QueryPairs(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t start = 0;
  while (start < query.size()) {
    const size_t end = std::min(query.find('&', start), query.size());
    const std::string_view part = query.substr(start, end - start);
    if (!part.empty()) {
      const size_t eq = part.find('=');
      pairs.emplace_back(Decode(part.substr(0, eq), true),
                         eq == std::string_view::npos ? "" : Decode(part.substr(eq + 1), true));
    }
    start = end + 1;
  }
  return pairs;
}

std::optional<int64_t> IntegerOf(std::string_view text) {
  int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// A query value as the JSON the field's type travels as (docs/templates.md "Field types"). What
// does not read as the type goes as text, for the node to refuse with the field's name.
json::value Typed(const FieldSpec* field, std::string_view text) {
  const FieldType type = field ? field->type : FieldType::kString;
  switch (type) {
    case FieldType::kInt:
      if (auto v = IntegerOf(text)) return *v;
      break;
    case FieldType::kFloat: {
      double d = 0;
      const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
      if (!text.empty() && ec == std::errc{} && end == text.data() + text.size()) return d;
      break;
    }
    case FieldType::kBool:
      if (text == "true") return true;
      if (text == "false") return false;
      break;
    default:
      break;
  }
  if (!field) {
    // A call parameter that is not a declared field is typed by its JSON value: a number
    // when it reads as one.
    if (auto v = IntegerOf(text)) return *v;
  }
  return json::string(text);
}

// fetch/count filters and fetch's order, limit and offset, from the query string.
Result<void> AddFilters(const Template& t,
                        const std::vector<std::pair<std::string, std::string>>& query,
                        json::object& envelope) {
  json::object where;
  for (const auto& [key, value] : query) {
    if (key == "order") {
      envelope["order"] = value;
      continue;
    }
    if (key == "limit" || key == "offset") {
      auto n = IntegerOf(value);
      if (!n) return Fail(Code::kBadRequest, "'" + key + "' must be an integer");
      envelope[key] = *n;
      continue;
    }
    const size_t dot = key.rfind('.');
    const std::string name = dot == std::string::npos ? key : key.substr(0, dot);
    const std::string op = dot == std::string::npos ? "" : key.substr(dot + 1);
    const FieldSpec* field = t.Field(name);
    if (op.empty()) {
      where[name] = Typed(field, value);
      continue;
    }
    json::value& slot = where[name];
    if (!slot.is_object()) slot = json::object();
    if (op == "in") {
      json::array values;
      size_t start = 0;
      while (start <= value.size()) {
        const size_t end = std::min(value.find(',', start), value.size());
        values.push_back(Typed(field, std::string_view(value).substr(start, end - start)));
        start = end + 1;
      }
      slot.as_object()["in"] = std::move(values);
    } else {
      // Any other operator goes as it is: the node names the ones it takes.
      slot.as_object()[op] = Typed(field, value);
    }
  }
  if (!where.empty()) envelope["where"] = std::move(where);
  return Ok();
}

Result<json::object> BodyObject(std::string_view body) {
  if (body.empty()) return json::object();
  std::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) return Fail(Code::kBadRequest, "the body is not JSON: " + ec.message());
  if (!v.is_object()) return Fail(Code::kBadRequest, "the body must be a JSON object");
  return std::move(v.as_object());
}

std::string Methods(std::initializer_list<std::string_view> methods) {
  std::string allow;
  for (std::string_view m : methods) {
    if (!allow.empty()) allow += ", ";
    allow += m;
  }
  return allow;
}

std::unexpected<Refusal> NotAllowed(std::string_view method, std::string allow) {
  return Refuse(405, Code::kBadRequest,
                "method " + std::string(method) + " is not allowed here; use " + allow, allow);
}

// The headers every envelope takes: deadline, parent, idempotency key, async.
std::expected<void, Refusal> AddHeaders(const HttpRequest& r, int64_t timeout_ms,
                                        json::object& envelope) {
  envelope["deadline_ms"] = NowUnixMs() + timeout_ms;
  if (!r.parent.empty()) {
    int64_t depth = 0;
    if (!r.parent_depth.empty()) {
      auto d = IntegerOf(r.parent_depth);
      if (!d || *d < 0 || *d >= 1000) {
        return Refuse(400, Code::kBadRequest,
                      "X-Beds-Parent-Depth must be the parent's depth, 0 to 999");
      }
      depth = *d;
    }
    envelope["lineage"] = json::object{{"parent_id", r.parent}, {"depth", depth + 1}};
  }
  if (!r.idempotency_key.empty()) envelope["idempotency_key"] = r.idempotency_key;
  return {};
}

std::string Key(const Template& t, bool read) { return t.route + (read ? ".read" : ".write"); }

}  // namespace

std::expected<Route, Refusal> RouteOf(const HttpRequest& r, const templates::Snapshot& templates,
                                      int64_t default_timeout_ms) {
  const std::string_view target = r.target;
  const size_t q = target.find('?');
  const std::string_view path = target.substr(0, q);
  const auto query =
      QueryPairs(q == std::string_view::npos ? std::string_view() : target.substr(q + 1));
  const std::vector<std::string> seg = PathSegments(path);
  const std::string_view m = r.method;

  if (ConsoleFileAt(path) != nullptr) {
    if (m != "GET" && m != "HEAD") return NotAllowed(m, "GET");
    return Route{true, Local::kConsole, {}};
  }
  if (seg.size() == 1 && (seg[0] == "healthz" || seg[0] == "readyz")) {
    if (m != "GET" && m != "HEAD") return NotAllowed(m, "GET");
    return Route{true, seg[0] == "healthz" ? Local::kHealth : Local::kReady, {}};
  }
  if (seg.size() < 2 || seg[0] != "v1") {
    return Refuse(
        404, Code::kNotFound,
        "no route for " + Excerpt(path, 120) + "; the API is under /v1/ (docs/gateway.md)");
  }

  int64_t timeout_ms = default_timeout_ms;
  if (!r.deadline_ms.empty()) {
    auto d = IntegerOf(r.deadline_ms);
    if (!d || *d < 1 || *d > kMaxDeadlineMs) {
      return Refuse(
          400, Code::kBadRequest,
          "X-Beds-Deadline-Ms must be milliseconds, 1 to " + std::to_string(kMaxDeadlineMs));
    }
    timeout_ms = *d;
  }

  json::object envelope;
  Route route;
  Routed& out = route.routed;

  if (seg.size() == 2 && seg[1] == "openapi.json") {
    if (m != "GET" && m != "HEAD") return NotAllowed(m, "GET");
    return Route{true, Local::kOpenApi, {}};
  }
  if (seg[1] == "tickets" || seg[1] == "lineage") {
    if (seg.size() != 3) return Refuse(404, Code::kNotFound, "use /v1/" + seg[1] + "/{id}");
    envelope["id"] = seg[2];
    out.routing_key = "sys.read";
    if (seg[1] == "lineage") {
      if (m != "GET") return NotAllowed(m, "GET");
      envelope["template"] = "lineage";
      envelope["op"] = "fetch";
    } else if (m == "GET") {
      envelope["template"] = "calgon";
      int64_t wait_ms = 0;
      for (const auto& [key, value] : query) {
        if (key != "wait_ms") continue;
        auto w = IntegerOf(value);
        if (!w || *w < 0) return Refuse(400, Code::kBadRequest, "wait_ms must be an integer ≥ 0");
        wait_ms = *w;
      }
      envelope["op"] = wait_ms > 0 ? "wait" : "poll";
      if (wait_ms > 0) {
        envelope["data"] = json::object{{"timeout_ms", wait_ms}};
        timeout_ms = std::max(timeout_ms, wait_ms + kWaitSlackMs);
      }
    } else if (m == "DELETE") {
      envelope["template"] = "calgon";
      envelope["op"] = "cancel";
    } else {
      return NotAllowed(m, Methods({"GET", "DELETE"}));
    }
  } else {
    const std::string& name = seg[1];
    const Template* t = templates::IsSystemTemplate(name) ? nullptr : templates.Find(name);
    if (!t) {
      return Refuse(404, Code::kUnknownTemplate,
                    "no template '" + Excerpt(name, 120) +
                        "' (`bedsctl describe` lists the templates this node serves)");
    }
    envelope["template"] = t->name;
    const OpSpec* spec = nullptr;
    if (seg.size() == 2) {
      if (m == "POST") {
        envelope["op"] = "create";
        spec = t->Op("create");
        out.ok_status = 201;
      } else if (m == "GET") {
        envelope["op"] = "fetch";
        spec = t->Op("fetch");
      } else {
        return NotAllowed(m, Methods({"GET", "POST"}));
      }
    } else if (seg.size() == 3 && seg[2] == "count") {
      if (m != "GET") return NotAllowed(m, "GET");
      envelope["op"] = "count";
      spec = t->Op("count") ? t->Op("count") : t->Op("fetch");
    } else if (seg.size() == 3) {
      envelope["id"] = seg[2];
      if (m == "GET") {
        envelope["op"] = "fetch";
        spec = t->Op("fetch");
      } else if (m == "PATCH") {
        envelope["op"] = "update";
        spec = t->Op("update");
      } else if (m == "DELETE") {
        envelope["op"] = "delete";
        spec = t->Op("delete");
      } else {
        return NotAllowed(m, Methods({"GET", "PATCH", "DELETE"}));
      }
    } else if (seg.size() == 4 && seg[2] == "calls") {
      spec = t->Call(seg[3]);
      if (!spec) {
        return Refuse(404, Code::kUnknownOp,
                      "template '" + t->name + "' has no call '" + Excerpt(seg[3], 120) + "'");
      }
      envelope["op"] = "call";
      envelope["call"] = seg[3];
      if (m == "GET") {
        if (!spec->read) {
          return NotAllowed(m, "POST");  // a write never rides a GET
        }
        json::object data;
        for (const auto& [key, value] : query) data[key] = Typed(t->Field(key), value);
        envelope["data"] = std::move(data);
      } else if (m != "POST") {
        return NotAllowed(m, spec->read ? Methods({"GET", "POST"}) : std::string("POST"));
      }
    } else {
      return Refuse(404, Code::kNotFound, "no route for " + Excerpt(path, 120));
    }
    if (!spec) {
      return Refuse(
          404, Code::kUnknownOp,
          "template '" + t->name + "' has no " + std::string(envelope["op"].as_string()) + " op");
    }
    const std::string_view op = envelope["op"].as_string();
    if (op == "fetch" || op == "count") {
      if (!envelope.contains("id")) {
        if (auto added = AddFilters(*t, query, envelope); !added) {
          return Refuse(400, added.error().code, added.error().message);
        }
      }
    } else if (m == "POST" || m == "PATCH" || m == "DELETE") {
      auto body = BodyObject(r.body);
      if (!body) return Refuse(400, body.error().code, body.error().message);
      if (m != "DELETE" || !body->empty()) envelope["data"] = std::move(*body);
    }
    if (r.prefer.find("respond-async") != std::string_view::npos) {
      envelope["async"] = true;
      out.ok_status = 202;
    }
    out.write = !spec->read;
    out.routing_key = Key(*t, spec->read);
  }
  if (auto added = AddHeaders(r, timeout_ms, envelope); !added) {
    return std::unexpected(added.error());
  }
  out.timeout_ms = timeout_ms;
  const std::string_view op = envelope["op"].as_string();
  out.permission =
      std::string(envelope["template"].as_string()) + "/" +
      (op == "call" ? "call:" + std::string(envelope["call"].as_string()) : std::string(op));
  out.envelope = json::serialize(envelope);
  return route;
}

std::expected<Routed, Refusal> RouteEnvelope(json::object envelope,
                                             const templates::Snapshot& templates,
                                             int64_t default_timeout_ms) {
  auto text = [&](std::string_view key) {
    const json::value* v = envelope.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  const std::string name = text("template");
  const std::string op = text("op");
  if (name.empty() || op.empty()) {
    return Refuse(400, Code::kBadRequest, "a request needs \"template\" and \"op\" (strings)");
  }
  Routed out;
  const std::string call = text("call");
  out.permission = name + "/" + (op == "call" ? "call:" + call : op);
  if (name == "sys" || name == "lineage" || name == "calgon") {
    out.routing_key = "sys.read";
  } else {
    const Template* t = templates::IsSystemTemplate(name) ? nullptr : templates.Find(name);
    if (!t) return Refuse(404, Code::kUnknownTemplate, "no template '" + Excerpt(name, 120) + "'");
    const OpSpec* spec = op == "call"                       ? t->Call(call)
                         : op == "count" && !t->Op("count") ? t->Op("fetch")
                                                            : t->Op(op);
    if (!spec) {
      return Refuse(404, Code::kUnknownOp,
                    "template '" + t->name + "' has no " +
                        (op == "call" ? "call '" + Excerpt(call, 120) + "'"
                                      : "op '" + Excerpt(op, 120) + "'"));
    }
    out.write = !spec->read;
    out.routing_key = Key(*t, spec->read);
  }
  const int64_t now = NowUnixMs();
  const json::value* deadline = envelope.if_contains("deadline_ms");
  if (deadline && deadline->is_int64() && deadline->get_int64() > now) {
    out.timeout_ms = deadline->get_int64() - now;
  } else if (!deadline) {
    out.timeout_ms = default_timeout_ms;
    envelope["deadline_ms"] = now + default_timeout_ms;
  } else {
    out.timeout_ms = 1;  // passed, or not a number: the node answers it at once
  }
  if (name == "calgon" && op == "wait") {
    // The answer comes when the job ends or its timeout passes.
    const json::value* data = envelope.if_contains("data");
    const json::value* wait =
        data && data->is_object() ? data->as_object().if_contains("timeout_ms") : nullptr;
    if (wait && wait->is_int64())
      out.timeout_ms = std::max(out.timeout_ms, wait->get_int64() + kWaitSlackMs);
  }
  out.envelope = json::serialize(envelope);
  return out;
}

int StatusOf(Code code) {
  switch (code) {
    case Code::kBadRequest:
      return 400;
    case Code::kUnknownTemplate:
    case Code::kUnknownOp:
    case Code::kNotFound:
      return 404;
    case Code::kValidation:
      return 422;
    case Code::kConflict:
      return 409;
    case Code::kForbidden:
      return 403;
    case Code::kUnauthenticated:
      return 401;
    case Code::kTooLarge:
      return 413;
    case Code::kTimeout:
      return 504;
    case Code::kUnavailable:
      return 503;
    case Code::kInternal:
      return 500;
  }
  return 500;
}

ReplyInfo InfoOf(std::string_view reply, int ok_status) {
  ReplyInfo info;
  std::error_code ec;
  const json::value v = json::parse(reply, ec);
  const json::object* o = ec ? nullptr : v.if_object();
  if (!o) {
    info.status = 500;
    return info;
  }
  if (const json::value* id = o->if_contains("event_id"); id && id->is_string()) {
    info.event_id = id->get_string();
  }
  if (const json::value* t = o->if_contains("ticket"); t && t->is_string()) {
    info.ticket = t->get_string();
  }
  const json::value* ok = o->if_contains("ok");
  if (ok && ok->is_bool() && ok->get_bool()) {
    // A submit is 202 only when it was queued; the same route answered synchronously (a write
    // replayed from its record) is the op's own success.
    info.status = ok_status == 202 && info.ticket.empty() ? 200 : ok_status;
    return info;
  }
  info.status = 500;
  const json::value* error = o->if_contains("error");
  const json::value* code =
      error && error->is_object() ? error->as_object().if_contains("code") : nullptr;
  if (code && code->is_string()) {
    if (auto c = protocol::CodeFromName(code->get_string())) info.status = StatusOf(*c);
  }
  return info;
}

namespace {

// Percent-encoding of everything but RFC 3986's unreserved characters (so '+' stays a plus).
std::string Encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

// A scalar as the text RouteOf reads back as the same value.
Result<std::string> TextOf(const json::value& v, std::string_view what) {
  switch (v.kind()) {
    case json::kind::string:
      return std::string(v.get_string());
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
    case json::kind::bool_:
      return json::serialize(v);
    default:
      return Fail(Code::kBadRequest,
                  std::string(what) + " must be a string, number or boolean in a query string");
  }
}

// fetch/count's where, order, limit and offset as a query string (AddFilters' inverse).
Result<std::string> QueryOf(const json::object& envelope) {
  std::string query;
  auto add = [&](std::string_view key, std::string_view value) {
    query += (query.empty() ? "?" : "&") + Encode(key) + "=" + Encode(value);
  };
  if (const json::value* where = envelope.if_contains("where")) {
    if (!where->is_object()) return Fail(Code::kBadRequest, "\"where\" must be an object");
    for (const auto& [name, condition] : where->get_object()) {
      if (!condition.is_object()) {
        auto text = TextOf(condition, "where." + std::string(name));
        if (!text) return std::unexpected(text.error());
        add(name, *text);
        continue;
      }
      for (const auto& [op, value] : condition.get_object()) {
        const std::string key = std::string(name) + "." + std::string(op);
        if (op != "in") {
          auto text = TextOf(value, "where." + key);
          if (!text) return std::unexpected(text.error());
          add(key, *text);
          continue;
        }
        if (!value.is_array()) return Fail(Code::kBadRequest, "where." + key + " must be a list");
        std::string list;
        for (const json::value& item : value.get_array()) {
          auto text = TextOf(item, "where." + key);
          if (!text) return std::unexpected(text.error());
          if (text->find(',') != std::string::npos) {
            return Fail(Code::kBadRequest, "where." + key + " holds a value with a comma, which " +
                                               key + "= cannot carry: send it over AMQP");
          }
          list += (list.empty() ? "" : ",") + *text;
        }
        add(key, list);
      }
    }
  }
  for (const char* key : {"order", "limit", "offset"}) {
    if (const json::value* v = envelope.if_contains(key)) {
      auto text = TextOf(*v, key);
      if (!text) return std::unexpected(text.error());
      add(key, *text);
    }
  }
  return query;
}

}  // namespace

Result<HttpForm> HttpOf(const json::object& envelope) {
  auto text = [&](std::string_view key) {
    const json::value* v = envelope.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  };
  static constexpr std::string_view kKnown[] = {
      "template", "op",   "id",    "data",    "where",           "order",       "limit",
      "offset",   "call", "async", "lineage", "idempotency_key", "deadline_ms", "batch"};
  for (const auto& [key, value] : envelope) {
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
      return Fail(Code::kBadRequest, "unknown envelope field \"" + std::string(key) + "\"");
    }
  }
  if (envelope.contains("batch")) {
    return Fail(Code::kBadRequest,
                "a batch has no REST form: send its envelopes one by one, or each as a "
                "WebSocket frame (docs/gateway.md \"WebSocket\")");
  }
  if (envelope.contains("deadline_ms")) {
    return Fail(Code::kBadRequest,
                "deadline_ms is a point in time; over HTTP send X-Beds-Deadline-Ms, a budget in "
                "milliseconds");
  }
  const std::string name = text("template");
  const std::string op = text("op");
  std::string id;
  if (const json::value* v = envelope.if_contains("id")) {
    auto t = TextOf(*v, "id");
    if (!t) return std::unexpected(t.error());
    id = std::move(*t);
  }
  if (name.empty() || op.empty()) {
    return Fail(Code::kBadRequest, "a request needs \"template\" and \"op\" (strings)");
  }
  HttpForm form;
  const json::value* data = envelope.if_contains("data");
  if (data && !data->is_object()) return Fail(Code::kBadRequest, "\"data\" must be an object");
  bool send_data = false;
  if (name == "lineage" && op == "fetch" && !id.empty()) {
    form = {"GET", "/v1/lineage/" + Encode(id), "", {}};
  } else if (name == "calgon" && !id.empty() && (op == "poll" || op == "wait")) {
    form = {"GET", "/v1/tickets/" + Encode(id), "", {}};
    if (op == "wait") {
      const json::value* t = data ? data->get_object().if_contains("timeout_ms") : nullptr;
      auto wait = t ? TextOf(*t, "data.timeout_ms") : Result<std::string>(std::string("30000"));
      if (!wait) return std::unexpected(wait.error());
      form.target += "?wait_ms=" + Encode(*wait);
    }
  } else if (name == "calgon" && !id.empty() && op == "cancel") {
    form = {"DELETE", "/v1/tickets/" + Encode(id), "", {}};
  } else if (templates::IsSystemTemplate(name) || name == "admin") {
    return Fail(
        Code::kBadRequest,
        name + "/" + op + " has no REST form (GET /readyz asks sys/ping); send it over AMQP");
  } else {
    const std::string base = "/v1/" + Encode(name);
    if (op == "create") {
      form = {"POST", base, "", {}};
      send_data = true;
    } else if ((op == "fetch" || op == "count") && id.empty()) {
      auto query = QueryOf(envelope);
      if (!query) return std::unexpected(query.error());
      form = {"GET", base + (op == "count" ? "/count" : "") + *query, "", {}};
    } else if (op == "fetch") {
      form = {"GET", base + "/" + Encode(id), "", {}};
    } else if (op == "update" || op == "delete") {
      if (id.empty()) {
        return Fail(Code::kBadRequest, "the REST form of " + op + " takes the key as \"id\"");
      }
      form = {op == "update" ? "PATCH" : "DELETE", base + "/" + Encode(id), "", {}};
      send_data = true;
    } else if (op == "call" && !text("call").empty()) {
      form = {"POST", base + "/calls/" + Encode(text("call")), "", {}};
      send_data = true;
    } else {
      return Fail(Code::kBadRequest, "no REST form for op \"" + op + "\"");
    }
  }
  if (send_data) {
    form.body = data ? json::serialize(*data) : "{}";
    form.headers.emplace_back("Content-Type", "application/json");
  } else if (data && !data->get_object().empty() && op != "wait") {
    return Fail(Code::kBadRequest, name + "/" + op + " over HTTP sends no data");
  }
  if (const std::string key = text("idempotency_key"); !key.empty()) {
    form.headers.emplace_back("Idempotency-Key", key);
  }
  if (const json::value* async = envelope.if_contains("async");
      async && async->is_bool() && async->get_bool()) {
    form.headers.emplace_back("Prefer", "respond-async");
  }
  if (const json::value* lineage = envelope.if_contains("lineage");
      lineage && lineage->is_object()) {
    const json::object& l = lineage->get_object();
    const json::value* parent = l.if_contains("parent_id");
    const json::value* depth = l.if_contains("depth");
    if (parent && parent->is_string()) {
      form.headers.emplace_back("X-Beds-Parent", std::string(parent->get_string()));
      if (depth && depth->is_int64() && depth->get_int64() > 1) {
        form.headers.emplace_back("X-Beds-Parent-Depth", std::to_string(depth->get_int64() - 1));
      }
    }
  }
  return form;
}

std::string ErrorBody(const Error& error) {
  return json::serialize(json::object{{"ok", false},
                                      {"error", json::object{{"code", CodeName(error.code)},
                                                             {"message", error.message},
                                                             {"retryable", error.retryable()}}}});
}

}  // namespace beds::gateway
