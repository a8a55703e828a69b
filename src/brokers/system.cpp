#include "brokers/system.hpp"

#include <algorithm>
#include <thread>

#include "core/lineage.hpp"
#include "logs/store.hpp"
#include "protocol/envelope.hpp"

namespace beds::brokers {
namespace {

namespace json = boost::json;

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
  json::object out{{"name", t.name},         {"class", ClassName(t.template_class)},
                   {"route", t.route},       {"tla", t.tla},
                   {"database", t.database}, {"ops", ops},
                   {"fields", fields}};
  if (!calls.empty()) out["calls"] = std::move(calls);
  if (const OpSpec* fetch = t.Op("fetch")) {
    out["filter_fields"] = Names(fetch->where);
    out["order_fields"] = Names(fetch->order);
    out["max_limit"] = fetch->max_limit;
  } else {
    out["filter_fields"] = json::array{};
  }
  if (const FieldSpec* key = t.Key()) out["key"] = key->name;
  if (t.template_class == TemplateClass::kRec) out["collection"] = t.collection;
  if (auto it = snapshot.unavailable.find(t.name); it != snapshot.unavailable.end()) {
    out["status"] = "unavailable";
    out["reason"] = it->second;
  } else {
    out["status"] = "bound";
  }
  return out;
}

}  // namespace

Outcome Fault(const Request& request, const amqp::Delivery& delivery, int retries,
              const std::string& event_id) {
  const auto* mode = request.data.if_contains("mode");
  const std::string m = mode && mode->is_string() ? std::string(mode->get_string()) : "";
  if (m == "throw") {
    const auto* times = request.data.if_contains("times");
    const int64_t n = times && times->is_int64() ? times->get_int64() : INT64_MAX;
    if (retries < n) {
      return Outcome::Retry("injected fault (retry " + std::to_string(retries) + ")");
    }
  } else if (m == "die") {
    if (!delivery.redelivered) throw WorkerDeath("injected worker death");
  } else if (m == "sleep") {
    const auto* ms = request.data.if_contains("ms");
    const int64_t n = ms && ms->is_int64() ? std::clamp<int64_t>(ms->get_int64(), 0, 10000) : 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(n));
  } else {
    return Outcome::Ack(protocol::EncodeError(
        event_id, Error{Code::kValidation, "data.mode must be throw, die or sleep"}));
  }
  return Outcome::Ack(
      protocol::EncodeOk(event_id, json::object{{"mode", m}, {"retries", retries}}));
}

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

Result<json::object> LineageTree(const NodeInfo& info, CoreFactory::Session* session,
                                 const Request& r) {
  if (OpOf(r) != Op::kFetch) {
    return std::unexpected(
        Error{Code::kUnknownOp, "template 'lineage' has no op '" + Excerpt(r.op) + "'"});
  }
  if (r.id.empty()) {
    return std::unexpected(
        Error{Code::kValidation, "lineage/fetch needs \"id\": an event id ({node}.{env}.{guid})"});
  }
  if (!IsEventId(r.id)) {
    return std::unexpected(Error{
        Code::kValidation, "'" + Excerpt(r.id) +
                               "' is not an event id: an event id reads {node}.{env}.{guid}, with "
                               "32 lowercase hex digits, as in a reply's event_id"});
  }
  const Template* store = info.templates ? info.templates->Find(info.log_store) : nullptr;
  NamasteCore* core = store && session ? session->For(*store) : nullptr;
  if (!core || info.templates->unavailable.contains(info.log_store)) {
    return std::unexpected(Error{Code::kUnavailable,
                                 "this node has no log store (template '" + info.log_store + "')"});
  }
  return logs::FetchTree(*core, *store, r.id, logs::TreeLimits{}, r.deadline_ms);
}

}  // namespace beds::brokers
