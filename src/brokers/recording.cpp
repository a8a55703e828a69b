#include "brokers/recording.hpp"

#include "brokers/pool.hpp"
#include "core/once.hpp"
#include "core/ops.hpp"
#include "logs/logs.hpp"

namespace beds::brokers {
namespace {

namespace json = boost::json;

// The metric label of a request's template and op: the name when the node knows it, else this.
constexpr std::string_view kUnknownLabel = "(unknown)";

std::string_view KnownTemplateName(const Template* t, const Request& r) {
  if (t) return t->name;
  if (r.template_name == "sys" || r.template_name == "lineage" || r.template_name == "batch") {
    return r.template_name;
  }
  return kUnknownLabel;
}

std::string_view KnownOpName(const Template* t, const Request& r) {
  // A batch's own record: "run", or "atomic" (DispatchHandler::RunBatch).
  static constexpr std::string_view kSysOps[] = {"ping", "describe", "call", "run", "atomic"};
  if (!t) {
    if (r.template_name == "lineage") return OpOf(r) == Op::kFetch ? "fetch" : kUnknownLabel;
    for (std::string_view op : kSysOps) {
      if (r.op == op) return op;
    }
    return kUnknownLabel;
  }
  if (OpOf(r) == Op::kCall) return "call";
  const OpSpec* op = t->Op(r.op);
  return op ? std::string_view(op->name) : kUnknownLabel;
}

// At most this much of a write's result goes into its audit record.
constexpr size_t kAuditAfterBytes = 16 * 1024;

}  // namespace

template <typename F>
Result<OpResult> RecordedCore::Timed(const Template& t, std::string op, F&& call) {
  const auto started = std::chrono::steady_clock::now();
  Result<OpResult> r = call();
  ++calls;
  last_error = r ? std::nullopt : std::optional<Error>(r.error());
  if (!record_) return r;
  Record(t, std::move(op), r,
         std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                               started));
  return r;
}

void RecordedCore::Record(const Template& t, std::string op, const Result<OpResult>& r,
                          std::chrono::microseconds took) {
  if (!logs::HasSink() || !logs::Enabled("info")) return;
  logs::LogEvent e;
  e.kind = "adapter";
  e.level = r || !IsRetryable(r.error().code) ? "info" : "warn";
  e.lineage = logs::ChildOfCurrent();
  e.template_name = t.name;
  e.op = std::move(op);
  e.duration_us = took.count();
  e.msg = engine_ + " " + t.database + (r ? ": ok" : ": " + std::string(CodeName(r.error().code)));
  e.fields["database"] = t.database;
  e.fields["engine"] = engine_;
  if (r) e.fields["rows"] = r->count;
  logs::Emit(std::move(e));
}

Result<OpResult> RecordedCore::Create(const Template& t, const OpSpec& op, const Payload& p) {
  return Timed(t, "create", [&] { return inner_.Create(t, op, p); });
}
Result<OpResult> RecordedCore::Fetch(const Template& t, const OpSpec& op, const Query& q) {
  return Timed(t, "fetch", [&] { return inner_.Fetch(t, op, q); });
}
Result<OpResult> RecordedCore::Count(const Template& t, const OpSpec& op, const Query& q) {
  return Timed(t, "count", [&] { return inner_.Count(t, op, q); });
}
Result<OpResult> RecordedCore::Update(const Template& t, const OpSpec& op, const Payload& p) {
  return Timed(t, "update", [&] { return inner_.Update(t, op, p); });
}
Result<OpResult> RecordedCore::Delete(const Template& t, const OpSpec& op, const Payload& p) {
  return Timed(t, "delete", [&] { return inner_.Delete(t, op, p); });
}
Result<OpResult> RecordedCore::Call(const Template& t, const OpSpec& op, const Payload& p) {
  return Timed(t, "call:" + op.name, [&] { return inner_.Call(t, op, p); });
}
Result<OpResult> RecordedCore::CreateMany(const Template& t, const OpSpec& op,
                                          const std::vector<Payload>& p) {
  return Timed(t, "create_many", [&] { return inner_.CreateMany(t, op, p); });
}
Result<OpResult> RecordedCore::CreateDocuments(const Template& t, const OpSpec& op,
                                               std::vector<boost::json::object> docs) {
  return Timed(t, "create_many", [&] { return inner_.CreateDocuments(t, op, std::move(docs)); });
}

void RequestRecorder::Audit(const Request& r, const amqp::Delivery& delivery, const Template& t,
                            const OpResult& applied) {
  // A replayed write changed nothing this time: its audit record is the first apply's.
  if (!logs::HasSink() || applied.replayed || !IsWrite(t, r)) return;
  {
    // The audit record: who changed what, and what the write answered (the document or rows after).
    logs::LogEvent a;
    a.kind = "audit";
    a.lineage = logs::ChildOfCurrent();
    a.template_name = t.name;
    a.op = OpLabel(r);
    a.msg = a.op + " applied";
    // A sender the broker did not verify is recorded as such (see SenderOf).
    const Sender sender = SenderOf(delivery, trusted_users_);
    a.fields["actor"] = sender.verified ? sender.user : std::string();
    if (!sender.verified && !sender.user.empty()) a.fields["actor_unverified"] = sender.user;
    if (!sender.via.empty()) a.fields["via"] = sender.via;
    if (!sender.claimed.empty()) a.fields["actor_claimed"] = sender.claimed;
    // The key: the request's id, or (a create) the one the write answered with.
    std::string key = r.id;
    const FieldSpec* key_field = t.Key();
    const json::array& rows = applied.data;
    if (key.empty() && key_field && !rows.empty() && rows[0].is_object()) {
      if (const auto* k = rows[0].get_object().if_contains(key_field->name)) {
        key = k->is_string() ? std::string(k->get_string()) : json::serialize(*k);
      }
    }
    a.fields["key"] = key;
    // Measured by serializing (the only size JSON has); the value itself is copied, not reparsed.
    if (json::serialize(applied.data).size() <= kAuditAfterBytes) {
      a.fields["after"] = applied.data;
    } else {
      a.fields["after_truncated"] = true;
    }
    if (!r.idempotency_key.empty()) a.fields["idempotency_key"] = r.idempotency_key;
    logs::Emit(std::move(a));
  }
}

void RequestRecorder::Finish(const Request& r, const amqp::Delivery& delivery, const Template* t,
                             bool replayed, const Error* error,
                             std::chrono::steady_clock::time_point started) {
  const auto elapsed = std::chrono::steady_clock::now() - started;
  const std::string_view outcome = error ? CodeName(error->code) : std::string_view("OK");
  if (metrics_) {
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
                   &metrics_->GetHistogram(
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
  const bool server_side =
      error && (error->code == Code::kUnavailable || error->code == Code::kInternal);
  const char* level = server_side ? "warn" : "info";
  if (!logs::Enabled(level)) return;
  logs::LogEvent e;
  e.kind = "request";
  e.level = level;
  e.lineage = logs::CurrentLineage();
  e.template_name = Excerpt(r.template_name, 64);
  e.op = Excerpt(OpLabel(r), 32);
  e.duration_us = std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count();
  e.msg = error ? std::string(outcome) + ": " + error->message : "ok";
  e.fields["routing_key"] = delivery.routing_key;
  if (delivery.redelivered) e.fields["redelivered"] = true;
  if (replayed) e.fields["replayed"] = true;
  if (!r.id.empty()) e.fields["id"] = Excerpt(r.id, 160);
  logs::Emit(std::move(e));
}

void RequestRecorder::CountAdapterError(const Template& t, const Error& error) {
  if (!metrics_ || !IsRetryable(error.code)) return;
  const std::string key = t.database + "/" + std::string(CodeName(error.code));
  auto it = adapter_errors_.find(key);
  if (it == adapter_errors_.end()) {
    it = adapter_errors_
             .emplace(key,
                      &metrics_->GetCounter(
                          "beds_adapter_errors_total",
                          "Database calls that failed on the server side, by database and code",
                          {{"database", t.database}, {"code", std::string(CodeName(error.code))}}))
             .first;
  }
  it->second->Inc();
}

void RequestRecorder::CountOnce(const Result<OpResult>& result) {
  if (!metrics_) return;
  if (!once_recorded_) {
    auto& m = *metrics_;
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

void RequestRecorder::CountPointReads(const Template& t, size_t reads, int queries) {
  if (!metrics_) return;
  auto it = point_reads_.find(t.name);
  if (it == point_reads_.end()) {
    auto& m = *metrics_;
    const metrics::Labels labels{{"template", t.name}};
    it = point_reads_
             .emplace(t.name,
                      std::pair{&m.GetCounter("beds_point_reads_total",
                                              "REL point reads (fetch by key) run together with "
                                              "the others of a worker's cycle or a batch",
                                              labels),
                                &m.GetCounter("beds_point_read_queries_total",
                                              "Database queries those point reads took: fewer "
                                              "than the reads when they shared queries",
                                              labels)})
             .first;
  }
  it->second.first->Inc(reads);
  it->second.second->Inc(static_cast<uint64_t>(queries));
}

}  // namespace beds::brokers
