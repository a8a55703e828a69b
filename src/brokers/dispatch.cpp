#include "brokers/dispatch.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "core/lineage.hpp"
#include "core/validate.hpp"
#include "logs/logs.hpp"
#include "protocol/envelope.hpp"

namespace beds::brokers {
namespace {

namespace json = boost::json;
using Action = Outcome::Action;

Outcome Answer(std::string reply) { return Outcome{Action::kAck, std::move(reply), ""}; }

Outcome AnswerError(const std::string& event_id, Code code, std::string message) {
  return Answer(protocol::EncodeError(event_id, Error{code, std::move(message)}));
}

// sys/call "fault": test hooks, only on nodes with [node] fault_injection = true.
//   {"mode": "throw", "times": n}  throw while the message was retried fewer than n times
//   {"mode": "die"}                kill the worker unless this is a redelivery
//   {"mode": "sleep", "ms": n}     take n ms (at most 10 s), then answer
Outcome Fault(const protocol::Request& request, const amqp::Delivery& delivery, int retries,
              const std::string& event_id) {
  const auto* mode = request.data.if_contains("mode");
  const std::string m = mode && mode->is_string() ? std::string(mode->get_string()) : "";
  if (m == "throw") {
    const auto* times = request.data.if_contains("times");
    const int64_t n = times && times->is_int64() ? times->get_int64() : INT64_MAX;
    if (retries < n)
      throw std::runtime_error("injected fault (retry " + std::to_string(retries) + ")");
  } else if (m == "die") {
    if (!delivery.redelivered) throw WorkerDeath("injected worker death");
  } else if (m == "sleep") {
    const auto* ms = request.data.if_contains("ms");
    const int64_t n = ms && ms->is_int64() ? std::clamp<int64_t>(ms->get_int64(), 0, 10000) : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(n));
  } else {
    return AnswerError(event_id, Code::kValidation, "data.mode must be throw, die or sleep");
  }
  return Answer(protocol::EncodeOk(event_id, json::object{{"mode", m}, {"retries", retries}}));
}

json::array Names(const std::vector<std::string>& names) {
  json::array out;
  for (const auto& n : names) out.push_back(json::string(n));
  return out;
}

json::object DescribeTemplate(const Template& t, const templates::Snapshot& snapshot) {
  json::object fields;
  for (const auto& f : t.fields) {
    json::object field{{"type", FieldTypeName(f.type)}};
    if (f.key) field["key"] = true;
    if (f.required) field["required"] = true;
    if (f.max > 0) field["max"] = f.max;
    fields[f.name] = std::move(field);
  }
  json::array ops;
  for (const auto& [name, op] : t.ops) ops.push_back(json::string(name));
  json::object calls;
  for (const auto& [name, op] : t.calls) {
    calls[name] = json::object{
        {"kind", op.read ? "read" : "write"}, {"params", Names(op.params)}, {"out", Names(op.out)}};
  }
  if (!t.calls.empty()) ops.push_back("call");
  json::object out{{"name", t.name},         {"class", t.kind}, {"route", t.route}, {"tla", t.tla},
                   {"database", t.database}, {"ops", ops},      {"fields", fields}};
  if (!calls.empty()) out["calls"] = std::move(calls);
  if (const OpSpec* fetch = t.Op("fetch")) {
    out["filter_fields"] = Names(fetch->where);
    out["order_fields"] = Names(fetch->order);
    out["max_limit"] = fetch->max_limit;
  } else {
    out["filter_fields"] = json::array{};
  }
  if (const FieldSpec* key = t.Key()) out["key"] = key->name;
  if (t.kind == "rec") out["collection"] = t.collection;
  if (auto it = snapshot.unavailable.find(t.name); it != snapshot.unavailable.end()) {
    out["status"] = "unavailable";
    out["reason"] = it->second;
  } else {
    out["status"] = "bound";
  }
  return out;
}

bool IsDataOp(std::string_view op) {
  return op == "create" || op == "fetch" || op == "count" || op == "update" || op == "delete" ||
         op == "call";
}

}  // namespace

json::object DescribeData(const NodeInfo& info) {
  json::array ops = {"ping", "describe"};
  json::object sys{{"name", "sys"}, {"class", "sys"},           {"route", "sys"},
                   {"ops", ops},    {"fields", json::object{}}, {"filter_fields", json::array{}}};
  if (info.fault_injection) {
    sys["ops"].as_array().push_back("call");
    sys["calls"] = json::array{"fault"};
  }
  json::array list{sys};
  if (info.templates) {
    for (const auto& [name, t] : info.templates->by_name) {
      list.push_back(DescribeTemplate(t, *info.templates));
    }
  }
  return json::object{{"node", info.node}, {"templates", list}};
}

json::object PingData(const NodeInfo& info) {
  json::array pools;
  if (info.pools) {
    for (const PoolStats& p : info.pools()) {
      pools.push_back(json::object{{"broker", p.broker},
                                   {"handler", p.handler},
                                   {"instances", p.instances},
                                   {"alive", p.alive},
                                   {"connected", p.connected},
                                   {"respawns", p.respawns},
                                   {"consumed", p.consumed},
                                   {"acked", p.acked},
                                   {"retried", p.retried},
                                   {"parked", p.parked}});
    }
  }
  const auto uptime = std::chrono::steady_clock::now() - info.started;
  return json::object{{"node", info.node},
                      {"env", info.env},
                      {"version", info.version},
                      {"uptime_s", std::chrono::duration<double>(uptime).count()},
                      {"pools", pools}};
}

DispatchHandler::DispatchHandler(std::shared_ptr<const NodeInfo> info,
                                 std::shared_ptr<const CoreFactory> factory)
    : info_(std::move(info)) {
  if (factory) session_.emplace(std::move(factory));
}

Result<const OpSpec*> FindOp(const Template& t, const protocol::Request& r) {
  const std::string& op = r.op;
  const OpSpec* spec = nullptr;
  if (op == "call") {
    if (r.call.empty())
      return std::unexpected(
          Error{Code::kValidation, "op call needs \"call\": the operation's name"});
    spec = t.Call(r.call);
    if (!spec) {
      return std::unexpected(Error{Code::kUnknownOp, "template '" + t.name + "' has no call '" +
                                                         protocol::Excerpt(r.call) + "'"});
    }
  } else if (IsDataOp(op)) {
    spec = t.Op(op);
  }
  if (!spec) {
    return std::unexpected(Error{
        Code::kUnknownOp, "template '" + t.name + "' has no op '" + protocol::Excerpt(op) + "'"});
  }
  return spec;
}

Result<OpResult> RunOp(const Template& t, const OpSpec& spec, const protocol::Request& r,
                       NamasteCore& core) {
  const std::string& op = r.op;
  const bool query = op == "fetch" || op == "count";
  if (query && !r.data.empty()) {
    return std::unexpected(Error{Code::kValidation, op + " takes where, not data"});
  }
  if (!query && !r.where.empty()) {
    return std::unexpected(Error{Code::kValidation, op + " takes data, not where"});
  }
  if (query) {
    QueryInput in{&r.where, r.id, r.limit, r.offset, r.order};
    auto q = ValidateQuery(t, spec, in, op == "count");
    if (!q) return std::unexpected(q.error());
    q->deadline_ms = r.deadline_ms;
    if (op == "count") return core.Count(t, spec, *q);
    auto result = core.Fetch(t, spec, *q);
    if (result && !r.id.empty() && result->data.empty()) {
      return std::unexpected(
          Error{Code::kNotFound, t.name + " '" + protocol::Excerpt(r.id) + "' was not found"});
    }
    return result;
  }
  auto p = ValidatePayload(t, spec, op, r.data, r.id);
  if (!p) return std::unexpected(p.error());
  p->deadline_ms = r.deadline_ms;
  if (op == "create") return core.Create(t, spec, *p);
  if (op == "update") return core.Update(t, spec, *p);
  if (op == "delete") return core.Delete(t, spec, *p);
  return core.Call(t, spec, *p);
}

Result<OpResult> DispatchHandler::RunTemplate(const Template& t, const protocol::Request& r) {
  auto spec = FindOp(t, r);
  if (!spec) return std::unexpected(spec.error());
  if (auto it = info_->templates->unavailable.find(t.name);
      it != info_->templates->unavailable.end()) {
    return std::unexpected(Error{Code::kUnavailable, "template '" + t.name +
                                                         "' is not bound to its database objects; "
                                                         "an operator has been told why"});
  }
  NamasteCore* core = session_ ? session_->For(t) : nullptr;
  if (!core) {
    return std::unexpected(Error{
        Code::kUnavailable,
        "template '" + t.name + "': database '" + t.database + "' has no adapter on this node"});
  }
  return RunOp(t, **spec, r, *core);
}

std::string DispatchHandler::ParkedReply(const amqp::Delivery& delivery,
                                         const std::string& reason) {
  const std::string event_id =
      protocol::EventIdFor(delivery.message.message_id, info_->node, info_->env);
  (void)reason;  // the reason may hold internals; the client gets a safe summary
  return protocol::EncodeError(
      event_id,
      Error{Code::kInternal, "the request failed repeatedly and was set aside for an operator"});
}

Outcome DispatchHandler::Handle(const amqp::Delivery& delivery, int retries) {
  const amqp::Message& in = delivery.message;
  const NodeInfo& info = *info_;

  // Parsing allocates a node per key and value; a per-request arena on the stack turns that into
  // a pointer bump (larger bodies spill to the heap). Declared first, so it outlives the request.
  unsigned char arena[4096];
  boost::json::monotonic_resource parse_memory(arena, sizeof(arena));
  auto body = protocol::ParseBody(in.body, info.max_body_bytes, &parse_memory);
  if (!body) {
    // Nothing in it can be trusted, not even its lineage: answer, then park it for an operator.
    const std::string event_id = protocol::EventIdFor(in.message_id, info.node, info.env);
    logs::EventScope scope(event_id);
    spdlog::warn("rejected message on {}: {}", delivery.routing_key, body.error().message);
    return Outcome{Action::kPark, protocol::EncodeError(event_id, body.error()),
                   std::string(CodeName(body.error().code)) + ": " + body.error().message};
  }
  auto request = protocol::DecodeFields(std::move(*body));
  if (!request) {
    const std::string event_id = protocol::EventIdFor(in.message_id, info.node, info.env);
    return Answer(protocol::EncodeError(event_id, request.error()));
  }
  const Lineage lineage = protocol::RequestLineage(*request, in.message_id, info.node, info.env);
  const std::string& event_id = lineage.event_id;
  logs::EventScope scope(event_id);

  if (request->deadline_ms != 0 && NowUnixMs() > request->deadline_ms) {
    return AnswerError(event_id, Code::kTimeout,
                       "the request's deadline passed before it could run");
  }

  if (request->template_name == "sys") {
    if (request->op == "ping") return Answer(protocol::EncodeOk(event_id, PingData(info)));
    if (request->op == "describe") return Answer(protocol::EncodeOk(event_id, DescribeData(info)));
    if (request->op == "call" && request->call == "fault" && info.fault_injection) {
      return Fault(*request, delivery, retries, event_id);
    }
    if (request->op == "call") {
      return AnswerError(event_id, Code::kUnknownOp,
                         "template 'sys' has no call '" + protocol::Excerpt(request->call) + "'");
    }
    return AnswerError(event_id, Code::kUnknownOp,
                       "template 'sys' has no op '" + protocol::Excerpt(request->op) + "'");
  }
  const Template* t = info.templates ? info.templates->Find(request->template_name) : nullptr;
  if (!t) {
    return AnswerError(event_id, Code::kUnknownTemplate,
                       "no template named '" + protocol::Excerpt(request->template_name) + "'");
  }
  auto result = RunTemplate(*t, *request);
  if (!result) return Answer(protocol::EncodeError(event_id, result.error()));
  std::string reply = protocol::EncodeOk(event_id, std::move(result->data), result->count);
  if (static_cast<int64_t>(reply.size()) > info.max_reply_bytes) {
    // The broker would refuse it, leaving the message unacked and its write to be run again.
    const OpSpec* spec = request->op == "call" ? t->Call(request->call) : t->Op(request->op);
    const bool read = spec && spec->read;
    return AnswerError(event_id, Code::kTooLarge,
                       "the result is " + std::to_string(reply.size()) +
                           " bytes, over this node's max_reply_bytes (" +
                           std::to_string(info.max_reply_bytes) + "); " +
                           (read ? "narrow the filter or lower the limit"
                                 : "the write was applied, but its result cannot be sent"));
  }
  return Answer(std::move(reply));
}

}  // namespace beds::brokers
