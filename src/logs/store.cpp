#include "logs/store.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include "core/validate.hpp"

namespace beds::logs {
namespace {

namespace json = boost::json;

// At most `max` characters (the template's `max` counts characters), cut on a UTF-8 boundary.
std::string_view CutChars(std::string_view s, int64_t max) {
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
  std::string iso = IsoTimeUs(unix_us);  // 2026-11-23T17:07:20.123456Z
  if (iso.size() == 27) iso.erase(23, 3);
  return iso;
}

// The event as a document of the store template: the fields the template declares, strings cut
// to its `max`, the time as `ts`.
json::object EventDocument(const Template& store, const LogEvent& e, std::string_view ts) {
  json::object doc;
  doc.reserve(std::size(kStoreFields));
  // A store template may leave fields out.
  auto put = [&](std::string_view name, json::value v) {
    if (store.Field(name)) doc[name] = std::move(v);
  };
  auto text = [&](std::string_view name, std::string_view value) {
    if (const FieldSpec* f = store.Field(name)) doc[name] = CutChars(value, f->max);
  };
  text("event_id", e.lineage.event_id);
  text("parent_id", e.lineage.parent_id);
  put("depth", e.lineage.depth);
  text("kind", e.kind);
  text("level", e.level);
  text("node", e.node);
  text("env", e.env);
  text("ts", ts);
  put("duration_us", e.duration_us);
  text("template", e.template_name);
  text("op", e.op);
  text("message", e.msg);
  if (!e.fields.empty()) put("data", e.fields);
  return doc;
}

// Whether the fields the template shares with the shipped one have the shipped types: then the
// event's document is already what validating it as a create would store.
bool HasShippedTypes(const Template& store) {
  return std::ranges::all_of(kStoreFields, [&](const StoreField& sf) {
    const FieldSpec* f = store.Field(sf.name);
    return !f || f->type == sf.type;
  });
}

// What validation would refuse in such a document: a `data` over its max, or a required field
// the event does not fill (a customised template). The generic path then says why.
bool FitsWithoutValidation(const Template& store, const json::object& doc) {
  const FieldSpec* data = store.Field("data");
  const json::value* v = doc.if_contains("data");
  if (data && v && data->max > 0 && static_cast<int64_t>(json::serialize(*v).size()) > data->max) {
    return false;
  }
  return std::ranges::all_of(
      store.fields, [&](const FieldSpec& f) { return !f.required || doc.contains(f.name); });
}

}  // namespace

Result<StoreItem> ToStoreItem(const Template& store, const LogEvent& e) {
  const OpSpec* create = store.Op("create");
  if (!create) {
    return std::unexpected(
        Error{Code::kUnavailable, "log store template '" + store.name + "' has no create op"});
  }
  // The admin node stores every event, so with the shipped field types the document is built
  // straight away, at the precision a datetime is stored with (the generic path costs several
  // times as much).
  if (HasShippedTypes(store)) {
    json::object doc = EventDocument(store, e, ClientTs(e.ts_us));
    if (FitsWithoutValidation(store, doc)) return StoreItem{std::move(doc), std::nullopt};
  }
  const json::object doc = EventDocument(store, e, IsoTimeUs(e.ts_us));
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
    return Fail(Code::kNotFound, "event '" + std::string(CutChars(event_id, 160)) +
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
