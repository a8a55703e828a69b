#include "logs/store.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include "core/validate.hpp"

namespace beds::logs {
namespace {

namespace json = boost::json;

// At most `max` characters (the template's `max` counts characters), cut on a UTF-8 boundary.
std::string CutChars(const std::string& s, int64_t max) {
  if (max <= 0) return s;
  int64_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xc0) != 0x80 && chars++ == max) return s.substr(0, i);
  }
  return s;
}

Value Text(std::string s) { return Value{FieldType::kString, false, 0, 0, std::move(s)}; }

// Filters and order on the store's fields, built directly (not from client input).
Query ChildrenOf(const std::vector<std::string>& parents, int64_t limit, int64_t deadline_ms) {
  Query q;
  Filter f;
  f.field = "parent_id";
  f.op = Filter::Op::kIn;
  for (const auto& p : parents) f.values.push_back(Text(p));
  q.filters.push_back(std::move(f));
  q.order = {{"ts", false}};
  q.limit = limit;
  q.deadline_ms = deadline_ms;
  return q;
}

// The fields of the log store and the types this file fills them with.
struct StoreField {
  const char* name;
  FieldType type;
};
constexpr StoreField kStoreFields[] = {
    {"event_id", FieldType::kString}, {"parent_id", FieldType::kString},
    {"depth", FieldType::kInt},       {"kind", FieldType::kString},
    {"level", FieldType::kString},    {"node", FieldType::kString},
    {"env", FieldType::kString},      {"ts", FieldType::kDatetime},
    {"duration_us", FieldType::kInt}, {"template", FieldType::kString},
    {"op", FieldType::kString},       {"message", FieldType::kString},
    {"data", FieldType::kJson}};

// "2026-11-23T17:07:20.123Z": a datetime in client form (docstore.hpp), millisecond precision.
std::string ClientTs(int64_t unix_us) {
  std::string iso = IsoTimestamp(unix_us);  // 2026-11-23T17:07:20.123456Z
  if (iso.size() == 27) iso.erase(23, 3);
  return iso;
}

// The event as the store's document, for a store template whose fields have the types the
// shipped one declares: what validating a payload and converting it would give, without either
// (the admin node stores every event: the generic path costs several times as much). nullopt:
// the template differs, take the generic path.
std::optional<json::object> DirectDocument(const Template& store, const LogEvent& e) {
  json::object doc;
  doc.reserve(std::size(kStoreFields));
  for (const StoreField& sf : kStoreFields) {
    const FieldSpec* f = store.Field(sf.name);
    if (!f) continue;
    if (f->type != sf.type) return std::nullopt;
    const std::string_view name = sf.name;
    auto text = [&](const std::string& s) { doc.emplace(name, CutChars(s, f->max)); };
    if (name == "event_id") {
      text(e.lineage.event_id);
    } else if (name == "parent_id") {
      text(e.lineage.parent_id);
    } else if (name == "depth") {
      doc.emplace(name, e.lineage.depth);
    } else if (name == "kind") {
      text(e.kind);
    } else if (name == "level") {
      text(e.level);
    } else if (name == "node") {
      text(e.node);
    } else if (name == "env") {
      text(e.env);
    } else if (name == "ts") {
      doc.emplace(name, ClientTs(e.ts_us));
    } else if (name == "duration_us") {
      doc.emplace(name, e.duration_us);
    } else if (name == "template") {
      text(e.template_name);
    } else if (name == "op") {
      text(e.op);
    } else if (name == "message") {
      text(e.msg);
    } else {  // data
      if (e.fields.empty()) continue;
      if (f->max > 0 && static_cast<int64_t>(json::serialize(e.fields).size()) > f->max) {
        return std::nullopt;
      }
      doc.emplace(name, e.fields);
    }
  }
  // A customised template may require fields this event does not fill: the generic path says so.
  for (const auto& f : store.fields) {
    if (f.required && !doc.contains(f.name)) return std::nullopt;
  }
  return doc;
}

}  // namespace

Result<StoreItem> ToStoreItem(const Template& store, const LogEvent& e) {
  const OpSpec* create = store.Op("create");
  if (!create) {
    return std::unexpected(
        Error{Code::kUnavailable, "log store template '" + store.name + "' has no create op"});
  }
  if (auto direct = DirectDocument(store, e)) return StoreItem{std::move(*direct), std::nullopt};
  json::object doc;
  auto put = [&](const char* name, json::value v) {
    const FieldSpec* f = store.Field(name);
    if (!f) return;  // a store template may leave fields out
    if (v.is_string()) v = json::string(CutChars(std::string(v.get_string()), f->max));
    doc[name] = std::move(v);
  };
  put("event_id", json::string(e.lineage.event_id));
  put("parent_id", json::string(e.lineage.parent_id));
  put("depth", e.lineage.depth);
  put("kind", json::string(e.kind));
  put("level", json::string(e.level));
  put("node", json::string(e.node));
  put("env", json::string(e.env));
  put("ts", json::string(IsoTimestamp(e.ts_us)));
  put("duration_us", e.duration_us);
  put("template", json::string(e.template_name));
  put("op", json::string(e.op));
  put("message", json::string(e.msg));
  if (!e.fields.empty()) put("data", e.fields);
  auto payload = ValidatePayload(store, *create, "create", doc, "");
  if (!payload) return std::unexpected(payload.error());
  return StoreItem{{}, std::move(*payload)};
}

Result<int64_t> StoreEvents(NamasteCore& core, const Template& store,
                            std::vector<StoreItem> items) {
  const OpSpec* create = store.Op("create");
  if (!create) return Fail(Code::kUnavailable, "log store template has no create op");
  std::vector<json::object> documents;
  std::vector<Payload> payloads;
  documents.reserve(items.size());
  for (auto& item : items) {
    if (item.payload) {
      payloads.push_back(std::move(*item.payload));
    } else {
      documents.push_back(std::move(item.document));
    }
  }
  int64_t stored = 0;
  if (!documents.empty()) {
    auto r = core.CreateDocuments(store, *create, std::move(documents));
    if (!r) return std::unexpected(r.error());
    stored += r->count;
  }
  if (!payloads.empty()) {
    auto r = core.CreateMany(store, *create, payloads);
    if (!r) return std::unexpected(r.error());
    stored += r->count;
  }
  return stored;
}

Result<json::object> FetchTree(NamasteCore& core, const Template& store,
                               const std::string& event_id, const TreeLimits& limits,
                               int64_t deadline_ms) {
  const OpSpec* fetch = store.Op("fetch");
  if (!fetch) return Fail(Code::kUnavailable, "log store template has no fetch op");
  Query root_q;
  root_q.filters.push_back(Filter{"event_id", Filter::Op::kEq, {Text(event_id)}});
  root_q.limit = 1;
  root_q.deadline_ms = deadline_ms;
  auto root = core.Fetch(store, *fetch, root_q);
  if (!root) return std::unexpected(root.error());
  if (root->data.empty()) {
    return Fail(Code::kNotFound, "event '" + CutChars(event_id, 160) +
                                     "' is not in the log store (events arrive within a second "
                                     "or so of the work)");
  }
  // Level by level: the children of every event found so far, by parent_id (indexed).
  std::vector<json::object> events{std::move(root->data[0].as_object())};
  std::string truncated;
  std::vector<std::string> frontier{event_id};
  constexpr size_t kParentsPerQuery = 128;
  for (int depth = 1; !frontier.empty(); ++depth) {
    if (depth > limits.max_depth) {
      truncated = "deeper than " + std::to_string(limits.max_depth) + " levels";
      break;
    }
    std::vector<std::string> next;
    for (size_t i = 0; i < frontier.size() && truncated.empty(); i += kParentsPerQuery) {
      const std::vector<std::string> chunk(
          frontier.begin() + i, frontier.begin() + std::min(frontier.size(), i + kParentsPerQuery));
      const int64_t room = limits.max_events - static_cast<int64_t>(events.size());
      auto children = core.Fetch(store, *fetch, ChildrenOf(chunk, room + 1, deadline_ms));
      if (!children) return std::unexpected(children.error());
      for (auto& c : children->data) {
        if (static_cast<int64_t>(events.size()) >= limits.max_events) {
          truncated = "more than " + std::to_string(limits.max_events) + " events";
          break;
        }
        auto& o = c.as_object();
        if (const auto* id = o.if_contains("event_id"); id && id->is_string()) {
          next.emplace_back(id->get_string());
        }
        events.push_back(std::move(o));
      }
    }
    if (!truncated.empty()) break;
    frontier = std::move(next);
  }
  // Nest: children in the order found (by time within each level).
  std::map<std::string, std::vector<size_t>> children_of;
  for (size_t i = 1; i < events.size(); ++i) {
    const auto* p = events[i].if_contains("parent_id");
    if (p && p->is_string()) children_of[std::string(p->get_string())].push_back(i);
  }
  auto build = [&](auto&& self, size_t i) -> json::object {
    json::object node = std::move(events[i]);
    json::array kids;
    const auto* id = node.if_contains("event_id");
    if (id && id->is_string()) {
      if (auto it = children_of.find(std::string(id->get_string())); it != children_of.end()) {
        for (size_t k : it->second) kids.push_back(self(self, k));
      }
    }
    node["children"] = std::move(kids);
    return node;
  };
  json::object out;
  out["events"] = static_cast<int64_t>(events.size());
  out["root"] = build(build, 0);
  out["truncated"] = !truncated.empty();
  if (!truncated.empty()) out["truncated_reason"] = truncated;
  return out;
}

}  // namespace beds::logs
