#include "protocol/envelope.hpp"

#include <array>

#include "core/once.hpp"

namespace beds::protocol {
namespace {

namespace json = boost::json;

std::unexpected<Error> BadRequest(std::string message) {
  return Fail(Code::kBadRequest, std::move(message));
}

std::string Quote(std::string_view s) { return "'" + Excerpt(s) + "'"; }

Result<std::string> StringField(const json::value& v, std::string_view name) {
  if (!v.is_string()) return BadRequest("field '" + std::string(name) + "' must be a string");
  return std::string(v.get_string());
}

Result<int64_t> IntField(const json::value& v, std::string_view name, int64_t min) {
  int64_t out;
  if (v.is_int64()) {
    out = v.get_int64();
  } else if (v.is_uint64() && v.get_uint64() <= static_cast<uint64_t>(INT64_MAX)) {
    out = static_cast<int64_t>(v.get_uint64());
  } else {
    return BadRequest("field '" + std::string(name) + "' must be an integer");
  }
  if (out < min) {
    return BadRequest("field '" + std::string(name) + "' must be at least " + std::to_string(min));
  }
  return out;
}

Result<Lineage> DecodeLineage(const json::value& v) {
  if (!v.is_object()) return BadRequest("field 'lineage' must be an object");
  Lineage lineage;
  for (const auto& [key, value] : v.get_object()) {
    if (key == "event_id") {
      auto s = StringField(value, "lineage.event_id");
      if (!s) return std::unexpected(s.error());
      lineage.event_id = *s;
    } else if (key == "parent_id") {
      auto s = StringField(value, "lineage.parent_id");
      if (!s) return std::unexpected(s.error());
      lineage.parent_id = *s;
    } else if (key == "depth") {
      auto d = IntField(value, "lineage.depth", 0);
      if (!d) return std::unexpected(d.error());
      if (*d > 1000) return BadRequest("field 'lineage.depth' must be at most 1000");
      lineage.depth = static_cast<int>(*d);
    } else {
      return BadRequest("unknown field 'lineage." + Excerpt(key) + "'");
    }
  }
  if (!lineage.event_id.empty() && !IsEventId(lineage.event_id)) {
    return BadRequest("field 'lineage.event_id' must have the form {node}.{env}.{32 hex digits}");
  }
  if (!lineage.parent_id.empty() && !IsEventId(lineage.parent_id)) {
    return BadRequest("field 'lineage.parent_id' must have the form {node}.{env}.{32 hex digits}");
  }
  if (lineage.parent_id.empty() != (lineage.depth == 0)) {
    return BadRequest(
        "fields 'lineage.parent_id' and 'lineage.depth' disagree: a root has "
        "parent_id \"\" and depth 0, a child both set");
  }
  return lineage;
}

}  // namespace

Result<json::object> ParseBody(std::string_view body, int64_t max_body_bytes,
                               json::storage_ptr storage) {
  if (static_cast<int64_t>(body.size()) > max_body_bytes) {
    return Fail(Code::kTooLarge, "request body is " + std::to_string(body.size()) +
                                     " bytes; the limit is " + std::to_string(max_body_bytes));
  }
  boost::system::error_code ec;
  json::parse_options options;
  options.max_depth = 64;
  json::value root = json::parse(body, ec, std::move(storage), options);
  if (ec) return BadRequest("body is not valid JSON: " + ec.message());
  if (!root.is_object()) return BadRequest("body must be a JSON object");
  return std::move(root.get_object());
}

Result<Request> DecodeRequest(std::string_view body, int64_t max_body_bytes) {
  auto object = ParseBody(body, max_body_bytes);
  if (!object) return std::unexpected(object.error());
  return DecodeFields(std::move(*object));
}

Result<Request> DecodeFields(json::object body) {
  Request r;
  bool has_template = false;
  bool has_op = false;
  for (auto& [key, value] : body) {
    Result<void> step = Ok();
    auto take_string = [&](std::string& out) {
      auto s = StringField(value, key);
      if (!s) return Result<void>(std::unexpected(s.error()));
      out = std::move(*s);
      return Ok();
    };
    if (key == "template") {
      step = take_string(r.template_name);
      has_template = true;
    } else if (key == "op") {
      step = take_string(r.op);
      has_op = true;
    } else if (key == "call") {
      step = take_string(r.call);
    } else if (key == "id") {
      if (value.is_int64()) {
        r.id = std::to_string(value.get_int64());
      } else if (value.is_uint64()) {
        r.id = std::to_string(value.get_uint64());
      } else if (value.is_string()) {
        r.id = std::string(value.get_string());
      } else {
        step = BadRequest("field 'id' must be a string or an integer");
      }
    } else if (key == "data" || key == "where") {
      if (!value.is_object()) {
        step = BadRequest("field '" + std::string(key) + "' must be an object");
      } else {
        (key == "data" ? r.data : r.where) = std::move(value.get_object());
      }
    } else if (key == "limit" || key == "offset") {
      auto n = IntField(value, key, 0);
      if (!n)
        step = std::unexpected(n.error());
      else
        (key == "limit" ? r.limit : r.offset) = *n;
    } else if (key == "order") {
      step = take_string(r.order);
    } else if (key == "async") {
      if (!value.is_bool())
        step = BadRequest("field 'async' must be a boolean");
      else
        r.async = value.get_bool();
    } else if (key == "lineage") {
      auto l = DecodeLineage(value);
      if (!l)
        step = std::unexpected(l.error());
      else
        r.lineage = std::move(*l);
    } else if (key == "deadline_ms") {
      auto n = IntField(value, key, 0);
      if (!n)
        step = std::unexpected(n.error());
      else
        r.deadline_ms = *n;
    } else if (key == "idempotency_key") {
      // VALIDATION, not BAD_REQUEST: the envelope is sound, the key is not one BEDS can record.
      if (!value.is_string() || value.get_string().empty() ||
          value.get_string().size() > kMaxIdempotencyKeyBytes) {
        step = Fail(Code::kValidation, "field 'idempotency_key' must be a string of 1 to " +
                                           std::to_string(kMaxIdempotencyKeyBytes) + " bytes");
      } else {
        r.idempotency_key = std::string(value.get_string());
      }
    } else {
      // Record fields at the top level are the commonest slip: say where they belong.
      step = BadRequest("unknown field " + Quote(key) +
                        " (the envelope's fields are template, op, call, id, data, where, limit, "
                        "offset, order, async, lineage, deadline_ms and idempotency_key; a "
                        "record's fields go inside \"data\", filters inside \"where\")");
    }
    if (!step) return std::unexpected(step.error());
  }
  if (!has_template) return BadRequest("field 'template' is required");
  if (!has_op) return BadRequest("field 'op' is required");
  if (r.template_name.empty()) return BadRequest("field 'template' must not be empty");
  if (r.op.empty()) return BadRequest("field 'op' must not be empty");
  return r;
}

bool IsBatch(const json::object& body) { return body.contains("batch"); }

Result<Batch> DecodeBatch(json::object body, int64_t max_batch) {
  Batch b;
  json::array* envelopes = nullptr;
  for (auto& [key, value] : body) {
    if (key == "batch") {
      if (!value.is_array()) return BadRequest("field 'batch' must be an array of envelopes");
      envelopes = &value.get_array();
    } else if (key == "atomic") {
      if (!value.is_bool()) return BadRequest("field 'atomic' must be a boolean");
      b.atomic = value.get_bool();
    } else if (key == "lineage") {
      auto l = DecodeLineage(value);
      if (!l) return std::unexpected(l.error());
      b.lineage = std::move(*l);
    } else if (key == "deadline_ms") {
      auto n = IntField(value, key, 0);
      if (!n) return std::unexpected(n.error());
      b.deadline_ms = *n;
    } else if (key == "idempotency_key") {
      if (!value.is_string() || value.get_string().empty() ||
          value.get_string().size() > kMaxIdempotencyKeyBytes) {
        return Fail(Code::kValidation, "field 'idempotency_key' must be a string of 1 to " +
                                           std::to_string(kMaxIdempotencyKeyBytes) + " bytes");
      }
      b.idempotency_key = std::string(value.get_string());
    } else {
      return BadRequest("unknown field " + Quote(key) +
                        " in a batch (its fields are batch, atomic, lineage, deadline_ms and "
                        "idempotency_key; each envelope's fields go inside its entry of "
                        "\"batch\")");
    }
  }
  if (!envelopes) return BadRequest("field 'batch' is required");
  if (envelopes->empty()) return BadRequest("field 'batch' must hold at least one envelope");
  if (static_cast<int64_t>(envelopes->size()) > max_batch) {
    return BadRequest("a batch holds at most " + std::to_string(max_batch) +
                      " envelopes ([protocol] max_batch), not " +
                      std::to_string(envelopes->size()) + ": split it");
  }
  b.requests.reserve(envelopes->size());
  for (json::value& e : *envelopes) {
    if (!e.is_object()) {
      b.requests.push_back(BadRequest("a batch's entries must be envelopes (objects)"));
      continue;
    }
    json::object& o = e.get_object();
    if (o.contains("batch")) {
      b.requests.push_back(BadRequest("a batch cannot hold a batch"));
      continue;
    }
    if (o.contains("lineage")) {
      b.requests.push_back(BadRequest(
          "an envelope in a batch has no lineage of its own: it is a child of the batch (give "
          "the batch its lineage)"));
      continue;
    }
    auto r = DecodeFields(std::move(o));
    if (r && r->async) {
      b.requests.push_back(
          Fail(Code::kValidation, "async is not taken inside a batch: submit the job on its own"));
      continue;
    }
    b.requests.push_back(std::move(r));
  }
  return b;
}

std::string EncodeBatchReply(std::string_view event_id, const std::vector<std::string>& replies) {
  // Each reply is a JSON object already: joined as they are, not parsed again.
  std::string out =
      R"({"ok":true,"event_id":)" + json::serialize(json::string(event_id)) + R"(,"data":[)";
  for (size_t i = 0; i < replies.size(); ++i) {
    if (i) out += ',';
    out += replies[i];
  }
  out += R"(],"count":)" + std::to_string(replies.size()) + "}";
  return out;
}

std::string EncodeErrorAt(std::string_view event_id, const Error& error, size_t index) {
  json::object reply;
  reply["ok"] = false;
  reply["event_id"] = event_id;
  reply["error"] = json::object{{"code", CodeName(error.code)},
                                {"message", error.message},
                                {"retryable", error.retryable()},
                                {"index", index}};
  return json::serialize(reply);
}

Lineage RequestLineage(const Request& request, std::string_view message_id, std::string_view node,
                       std::string_view env) {
  Lineage lineage = request.lineage.value_or(Lineage{});
  if (lineage.event_id.empty()) lineage.event_id = EventIdFor(message_id, node, env);
  return lineage;
}

std::string EventIdFor(std::string_view message_id, std::string_view node, std::string_view env) {
  return IsEventId(message_id) ? std::string(message_id) : NewEventId(node, env);
}

std::string EncodeOk(std::string_view event_id, json::value data, std::optional<int64_t> count,
                     bool replayed) {
  json::object reply;
  reply["ok"] = true;
  reply["event_id"] = event_id;
  reply["data"] = std::move(data);
  if (count) reply["count"] = *count;
  if (replayed) reply["replayed"] = true;
  return json::serialize(reply);
}

std::string EncodeOkFields(std::string_view event_id, const json::object& fields) {
  json::object reply;
  reply["ok"] = true;
  reply["event_id"] = event_id;
  for (const auto& [k, v] : fields) reply[k] = v;
  return json::serialize(reply);
}

std::string EncodeError(std::string_view event_id, const Error& error) {
  json::object reply;
  reply["ok"] = false;
  reply["event_id"] = event_id;
  reply["error"] = json::object{
      {"code", CodeName(error.code)}, {"message", error.message}, {"retryable", error.retryable()}};
  return json::serialize(reply);
}

std::optional<Code> CodeFromName(std::string_view name) {
  static constexpr std::array kAll = {
      Code::kBadRequest, Code::kUnknownTemplate, Code::kUnknownOp, Code::kValidation,
      Code::kNotFound,   Code::kConflict,        Code::kForbidden, Code::kTooLarge,
      Code::kTimeout,    Code::kUnavailable,     Code::kInternal,  Code::kUnauthenticated};
  for (Code c : kAll) {
    if (CodeName(c) == name) return c;
  }
  return std::nullopt;
}

Result<Reply> DecodeReply(std::string_view body) {
  boost::system::error_code ec;
  json::value root = json::parse(body, ec);
  if (ec || !root.is_object()) return BadRequest("reply is not a JSON object");
  const auto& obj = root.get_object();
  Reply reply;
  const auto* ok = obj.if_contains("ok");
  if (!ok || !ok->is_bool()) return BadRequest("reply has no boolean 'ok'");
  reply.ok = ok->get_bool();
  if (const auto* id = obj.if_contains("event_id"); id && id->is_string()) {
    reply.event_id = std::string(id->get_string());
  }
  if (!reply.ok) {
    const auto* err = obj.if_contains("error");
    if (!err || !err->is_object()) return BadRequest("error reply has no 'error' object");
    const auto* code = err->get_object().if_contains("code");
    const auto* message = err->get_object().if_contains("message");
    std::optional<Code> c;
    if (code && code->is_string()) c = CodeFromName(code->get_string());
    if (!c) return BadRequest("error reply has an unknown code");
    reply.error = Error{
        *c, message && message->is_string() ? std::string(message->get_string()) : std::string()};
    if (const auto* retryable = err->get_object().if_contains("retryable");
        retryable && retryable->is_bool()) {
      reply.error->retry = retryable->get_bool();
    }
  }
  reply.body = std::move(root);
  return reply;
}

}  // namespace beds::protocol
