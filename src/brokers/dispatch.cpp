#include "brokers/dispatch.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>

#include "amqp/topology.hpp"
#include "core/lineage.hpp"
#include "core/once.hpp"
#include "core/validate.hpp"
#include "logs/logs.hpp"
#include "logs/store.hpp"
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

bool IsWrite(const Template& t, const protocol::Request& r) {
  if (r.op == "create" || r.op == "update" || r.op == "delete") return true;
  if (r.op != "call") return false;
  const OpSpec* spec = t.Call(r.call);
  return spec && !spec->read;
}

// The sender's AMQP user: the broker checks user_id against the sender's login. A message our
// worker republished for a retry cannot carry the original user_id (the broker would refuse it),
// so it carries it in x-beds-user; that header is believed only on such a message.
std::string Sender(const amqp::Delivery& delivery) {
  if (!delivery.message.user_id.empty()) return delivery.message.user_id;
  if (delivery.exchange == amqp::kEventsExchange) return {};
  if (auto h = delivery.message.headers.find(kUserHeader); h != delivery.message.headers.end()) {
    if (const auto* s = std::get_if<std::string>(&h->second)) return *s;
  }
  return {};
}

// The exactly-once scope of a write; none for a message with neither key nor message id (it
// cannot be told from its redelivery, so it is applied at least once).
std::optional<OnceScope> ScopeOf(const Template& t, const protocol::Request& r,
                                 const amqp::Delivery& delivery, const NodeInfo& info) {
  if (!info.idempotency.enabled || !IsWrite(t, r)) return std::nullopt;
  const bool maybe_seen = delivery.redelivered || delivery.exchange != amqp::kEventsExchange;
  if (!r.idempotency_key.empty()) {
    return OnceScope{OnceIdentityOfKey(t.name, Sender(delivery), r.idempotency_key), true,
                     info.idempotency.ttl_s, maybe_seen};
  }
  if (delivery.message.message_id.empty()) return std::nullopt;
  return OnceScope{delivery.message.message_id, false, info.idempotency.ttl_s, maybe_seen};
}

// A request must come on its template's own routing keys: `{route}.write` for a write, and
// `{route}.read` or `{route}.write` for a read (a read sent as a write is served by the write pool,
// still against the read connections). Anything else would run on a pool the operator did not
// size for it, so it is refused with the key to use. Only requests published to beds.events are
// checked: a retried message comes back from the retry queue under the queue's own name.
std::optional<Error> CheckRoute(const Template& t, const protocol::Request& r,
                                const amqp::Delivery& delivery) {
  if (delivery.exchange != amqp::kEventsExchange) return std::nullopt;
  const std::string_view key = delivery.routing_key;
  const size_t dot = key.rfind('.');
  const std::string_view route = dot == std::string_view::npos ? key : key.substr(0, dot);
  const std::string_view kind = dot == std::string_view::npos ? "" : key.substr(dot + 1);
  const bool write = IsWrite(t, r);
  const bool right_route = route == t.route;
  const bool known_kind = kind == "read" || kind == "write";
  if (right_route && known_kind && (!write || kind == "write")) return std::nullopt;
  // Refused: the messages are built only now, off the path every request takes.
  const std::string right = t.route + (write ? ".write" : ".read");
  const std::string what = r.op == "call" ? "call '" + protocol::Excerpt(r.call) + "'" : r.op;
  if (!right_route) {
    return Error{Code::kBadRequest, "template '" + t.name + "' is served on " + t.route +
                                        ".read and " + t.route + ".write, not " +
                                        protocol::Excerpt(key) + ": send this " + what + " on " +
                                        right};
  }
  if (!known_kind) {
    return Error{Code::kBadRequest, "routing key " + protocol::Excerpt(key) +
                                        ": requests go on {route}.read or {route}.write; send "
                                        "this " +
                                        what + " on " + right};
  }
  return Error{Code::kBadRequest, what + " on '" + t.name + "' is a write: send it on " + right +
                                      ", not " + protocol::Excerpt(key) +
                                      " (reads and writes are served by separate pools)"};
}

// Wraps a worker's adapter so that every database call is an `adapter` event: a child of the
// request, with its duration and outcome (docs/protocol.md "Lineage": adapter calls are events).
class RecordedCore final : public NamasteCore {
 public:
  RecordedCore(NamasteCore& inner, const std::string& engine) : inner_(inner), engine_(engine) {}

  Result<OpResult> Create(const Template& t, const OpSpec& op, const Payload& p) override {
    return Timed(t, "create", [&] { return inner_.Create(t, op, p); });
  }
  Result<OpResult> Fetch(const Template& t, const OpSpec& op, const Query& q) override {
    return Timed(t, "fetch", [&] { return inner_.Fetch(t, op, q); });
  }
  Result<OpResult> Count(const Template& t, const OpSpec& op, const Query& q) override {
    return Timed(t, "count", [&] { return inner_.Count(t, op, q); });
  }
  Result<OpResult> Update(const Template& t, const OpSpec& op, const Payload& p) override {
    return Timed(t, "update", [&] { return inner_.Update(t, op, p); });
  }
  Result<OpResult> Delete(const Template& t, const OpSpec& op, const Payload& p) override {
    return Timed(t, "delete", [&] { return inner_.Delete(t, op, p); });
  }
  Result<OpResult> Call(const Template& t, const OpSpec& op, const Payload& p) override {
    return Timed(t, "call:" + op.name, [&] { return inner_.Call(t, op, p); });
  }
  Result<OpResult> CreateMany(const Template& t, const OpSpec& op,
                              const std::vector<Payload>& p) override {
    return Timed(t, "create_many", [&] { return inner_.CreateMany(t, op, p); });
  }
  Result<OpResult> CreateDocuments(const Template& t, const OpSpec& op,
                                   std::vector<boost::json::object> docs) override {
    return Timed(t, "create_many", [&] { return inner_.CreateDocuments(t, op, std::move(docs)); });
  }
  Result<void> Prepare(const Template& t) override { return inner_.Prepare(t); }

  std::optional<Error> last_error;  // of the last call, for the adapter error counter

 private:
  template <typename F>
  Result<OpResult> Timed(const Template& t, std::string op, F&& call) {
    const auto started = std::chrono::steady_clock::now();
    Result<OpResult> r = call();
    last_error = r ? std::nullopt : std::optional<Error>(r.error());
    if (!logs::HasSink() || !logs::Enabled("info")) return r;
    logs::LogEvent e;
    e.kind = "adapter";
    e.level = r || !IsRetryable(r.error().code) ? "info" : "warn";
    e.lineage = logs::ChildOfCurrent();
    e.template_name = t.name;
    e.op = std::move(op);
    e.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
    e.msg =
        engine_ + " " + t.database + (r ? ": ok" : ": " + std::string(CodeName(r.error().code)));
    e.fields["database"] = t.database;
    e.fields["engine"] = engine_;
    if (r) e.fields["rows"] = r->count;
    logs::Emit(std::move(e));
    return r;
  }

  NamasteCore& inner_;
  std::string engine_;
};

// The metric label of a request's template and op: the name when the node knows it, else this.
constexpr std::string_view kUnknownLabel = "(unknown)";

std::string_view KnownTemplateName(const Template* t, const protocol::Request& r) {
  if (t) return t->name;
  if (r.template_name == "sys" || r.template_name == "lineage") return r.template_name;
  return kUnknownLabel;
}

std::string_view KnownOpName(const Template* t, const protocol::Request& r) {
  static constexpr std::string_view kSysOps[] = {"ping", "describe", "call"};
  if (!t) {
    if (r.template_name == "lineage") return r.op == "fetch" ? "fetch" : kUnknownLabel;
    for (std::string_view op : kSysOps) {
      if (r.op == op) return op;
    }
    return kUnknownLabel;
  }
  if (r.op == "call") return "call";
  const OpSpec* op = t->Op(r.op);
  return op ? std::string_view(op->name) : kUnknownLabel;
}

// At most this much of a write's result goes into its audit record.
constexpr size_t kAuditAfterBytes = 16 * 1024;

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
                       NamasteCore& core, const OnceScope* once) {
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
  if (once && !spec.read) {
    std::string digest = OnceDigest(t, op == "call" ? "call:" + spec.name : op, *p);
    std::string identity =
        once->by_key ? once->identity : OnceIdentityOfMessage(once->identity, digest);
    p->once = WriteOnce{std::move(identity), std::move(digest), once->ttl_s, once->maybe_seen};
  }
  if (op == "create") return core.Create(t, spec, *p);
  if (op == "update") return core.Update(t, spec, *p);
  if (op == "delete") return core.Delete(t, spec, *p);
  return core.Call(t, spec, *p);
}

Result<OpResult> DispatchHandler::RunTemplate(const Template& t, const protocol::Request& r,
                                              const OnceScope* once) {
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
  RecordedCore recorded(*core, t.kind == "rel" ? "mariadb" : "docstore");
  auto result = RunOp(t, **spec, r, recorded, once);
  if (recorded.last_error && info_->metrics && IsRetryable(recorded.last_error->code)) {
    const std::string key = t.database + "/" + std::string(CodeName(recorded.last_error->code));
    auto it = adapter_errors_.find(key);
    if (it == adapter_errors_.end()) {
      it = adapter_errors_
               .emplace(key,
                        &info_->metrics->GetCounter(
                            "beds_adapter_errors_total",
                            "Database calls that failed on the server side, by database and code",
                            {{"database", t.database},
                             {"code", std::string(CodeName(recorded.last_error->code))}}))
               .first;
    }
    it->second->Inc();
  }
  return result;
}

void DispatchHandler::CountOnce(const Result<OpResult>& result) {
  if (!info_->metrics) return;
  if (!once_recorded_) {
    auto& m = *info_->metrics;
    const char* name = "beds_exactly_once_total";
    const char* help =
        "Writes with an exactly-once identity, by outcome: recorded (applied now), "
        "replayed (answered from the record), conflict (key reused)";
    once_recorded_ = &m.GetCounter(name, help, {{"outcome", "recorded"}});
    once_replayed_ = &m.GetCounter(name, help, {{"outcome", "replayed"}});
    once_conflicts_ = &m.GetCounter(name, help, {{"outcome", "conflict"}});
  }
  if (result) {
    (result->replayed ? once_replayed_ : once_recorded_)->Inc();
  } else if (IsKeyReused(result.error())) {
    once_conflicts_->Inc();
  }
}

Result<json::object> DispatchHandler::LineageTree(const protocol::Request& r) {
  if (r.op != "fetch") {
    return std::unexpected(
        Error{Code::kUnknownOp, "template 'lineage' has no op '" + protocol::Excerpt(r.op) + "'"});
  }
  if (r.id.empty()) {
    return std::unexpected(
        Error{Code::kValidation, "lineage/fetch needs \"id\": an event id ({node}.{env}.{guid})"});
  }
  if (!IsEventId(r.id)) {
    return std::unexpected(Error{
        Code::kValidation, "'" + protocol::Excerpt(r.id) +
                               "' is not an event id: an event id reads {node}.{env}.{guid}, with "
                               "32 lowercase hex digits, as in a reply's event_id"});
  }
  const Template* store = info_->templates ? info_->templates->Find(info_->log_store) : nullptr;
  NamasteCore* core = store && session_ ? session_->For(*store) : nullptr;
  if (!core || info_->templates->unavailable.contains(info_->log_store)) {
    return std::unexpected(Error{
        Code::kUnavailable, "this node has no log store (template '" + info_->log_store + "')"});
  }
  return logs::FetchTree(*core, *store, r.id, logs::TreeLimits{}, r.deadline_ms);
}

void DispatchHandler::Record(const protocol::Request& r, const amqp::Delivery& delivery,
                             const Template* t, const Result<OpResult>* result, const Error* error,
                             std::chrono::steady_clock::time_point started) {
  const auto elapsed = std::chrono::steady_clock::now() - started;
  const std::string_view outcome = error ? CodeName(error->code) : std::string_view("OK");
  if (info_->metrics) {
    // Label values come from the request, so only names the node knows become series: a client
    // inventing template or op names must not grow /metrics without bound.
    const std::string_view template_label = KnownTemplateName(t, r);
    const std::string_view op_label =
        template_label == kUnknownLabel ? kUnknownLabel : KnownOpName(t, r);
    std::string key(template_label);
    key.append("/").append(op_label).append("/").append(outcome);
    auto it = latency_.find(key);
    if (it == latency_.end()) {
      it = latency_
               .emplace(
                   key,
                   &info_->metrics->GetHistogram(
                       "beds_request_duration_seconds",
                       "Time from a request's decoding to its reply, by template, op and outcome",
                       {{"template", std::string(template_label)},
                        {"op", std::string(op_label)},
                        {"outcome", std::string(outcome)}}))
               .first;
    }
    it->second->Observe(std::chrono::duration<double>(elapsed).count());
  }
  if (!logs::HasSink()) return;
  const Lineage& lineage = logs::CurrentLineage();
  // A replayed write changed nothing this time: its audit record is the first apply's.
  if (t && result && *result && !(*result)->replayed && IsWrite(*t, r)) {
    // The audit record: who changed what, and what the write answered (the document or rows after).
    logs::LogEvent a;
    a.kind = "audit";
    a.lineage = logs::ChildOfCurrent();
    a.template_name = t->name;
    a.op = r.op == "call" ? "call:" + r.call : r.op;
    a.msg = a.op + " applied";
    // The AMQP user_id is checked by the broker against the sender's login: the actor. A retried
    // message carries it in a header instead (our worker republished it), which any sender could
    // also set, so that one is recorded as unverified.
    a.fields["actor"] = delivery.message.user_id;
    if (auto h = delivery.message.headers.find(kUserHeader);
        delivery.message.user_id.empty() && h != delivery.message.headers.end()) {
      if (const auto* s = std::get_if<std::string>(&h->second)) a.fields["actor_unverified"] = *s;
    }
    // The key: the request's id, or (a create) the one the write answered with.
    std::string key = r.id;
    const FieldSpec* key_field = t->Key();
    const json::array& rows = (*result)->data;
    if (key.empty() && key_field && !rows.empty() && rows[0].is_object()) {
      if (const auto* k = rows[0].get_object().if_contains(key_field->name)) {
        key = k->is_string() ? std::string(k->get_string()) : json::serialize(*k);
      }
    }
    a.fields["key"] = key;
    // Measured by serializing (the only size JSON has); the value itself is copied, not reparsed.
    if (json::serialize((*result)->data).size() <= kAuditAfterBytes) {
      a.fields["after"] = (*result)->data;
    } else {
      a.fields["after_truncated"] = true;
    }
    if (!r.idempotency_key.empty()) a.fields["idempotency_key"] = r.idempotency_key;
    logs::Emit(std::move(a));
  }
  const bool server_side =
      error && (error->code == Code::kUnavailable || error->code == Code::kInternal);
  const char* level = server_side ? "warn" : "info";
  if (!logs::Enabled(level)) return;
  logs::LogEvent e;
  e.kind = "request";
  e.level = level;
  e.lineage = lineage;
  e.template_name = protocol::Excerpt(r.template_name, 64);
  e.op = protocol::Excerpt(r.op == "call" ? "call:" + r.call : r.op, 32);
  e.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  e.msg = error ? std::string(outcome) + ": " + error->message : "ok";
  e.fields["routing_key"] = delivery.routing_key;
  if (delivery.redelivered) e.fields["redelivered"] = true;
  if (result && *result && (*result)->replayed) e.fields["replayed"] = true;
  if (!r.id.empty()) e.fields["id"] = protocol::Excerpt(r.id, 160);
  logs::Emit(std::move(e));
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
  logs::EventScope scope(lineage);
  const auto started = std::chrono::steady_clock::now();
  const protocol::Request& r = *request;

  // Every answer below goes through one of these, so the request is recorded exactly once.
  const Template* t = nullptr;
  auto refuse = [&](Error error) {
    Record(r, delivery, t, nullptr, &error, started);
    return Answer(protocol::EncodeError(event_id, error));
  };
  auto answer = [&](json::value data) {
    Record(r, delivery, t, nullptr, nullptr, started);
    return Answer(protocol::EncodeOk(event_id, std::move(data)));
  };

  if (r.deadline_ms != 0 && NowUnixMs() > r.deadline_ms) {
    return refuse(Error{Code::kTimeout, "the request's deadline passed before it could run"});
  }

  if (r.template_name == "sys") {
    if (r.op == "ping") return answer(PingData(info));
    if (r.op == "describe") return answer(DescribeData(info));
    if (r.op == "call" && r.call == "fault" && info.fault_injection) {
      return Fault(r, delivery, retries, event_id);
    }
    if (r.op == "call") {
      return refuse(Error{Code::kUnknownOp,
                          "template 'sys' has no call '" + protocol::Excerpt(r.call) + "'"});
    }
    return refuse(
        Error{Code::kUnknownOp, "template 'sys' has no op '" + protocol::Excerpt(r.op) + "'"});
  }
  if (r.template_name == "lineage") {
    auto tree = LineageTree(r);
    if (!tree) return refuse(tree.error());
    return answer(std::move(*tree));
  }
  t = info.templates ? info.templates->Find(r.template_name) : nullptr;
  if (!t) {
    return refuse(Error{Code::kUnknownTemplate,
                        "no template named '" + protocol::Excerpt(r.template_name) + "'"});
  }
  if (auto wrong = CheckRoute(*t, r, delivery)) return refuse(std::move(*wrong));
  if (t->name == info.log_store && IsWrite(*t, r)) {
    // The record of what happened is written only by the admin node's logs handler: a client
    // able to create or delete msLogs documents could forge or erase audit records.
    return refuse(Error{Code::kForbidden, "the log store ('" + t->name +
                                              "') is written only by the admin node; read it, "
                                              "or ask for a tree with lineage/fetch"});
  }
  const std::optional<OnceScope> once = ScopeOf(*t, r, delivery, info);
  auto result = RunTemplate(*t, r, once ? &*once : nullptr);
  if (once) CountOnce(result);
  if (!result) return refuse(result.error());
  Record(r, delivery, t, &result, nullptr, started);
  std::string reply =
      protocol::EncodeOk(event_id, std::move(result->data), result->count, result->replayed);
  if (static_cast<int64_t>(reply.size()) > info.max_reply_bytes) {
    // The broker would refuse it, leaving the message unacked and its write to be run again.
    const OpSpec* spec = r.op == "call" ? t->Call(r.call) : t->Op(r.op);
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
