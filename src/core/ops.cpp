#include "core/ops.hpp"

#include <map>

#include "core/once.hpp"
#include "core/validate.hpp"

namespace beds {

Op OpNamed(std::string_view name) {
  static constexpr std::pair<std::string_view, Op> kNames[] = {
      {"create", Op::kCreate}, {"fetch", Op::kFetch},       {"count", Op::kCount},
      {"update", Op::kUpdate}, {"delete", Op::kDelete},     {"call", Op::kCall},
      {"ping", Op::kPing},     {"describe", Op::kDescribe}, {"poll", Op::kPoll},
      {"wait", Op::kWait},     {"cancel", Op::kCancel}};
  for (const auto& [n, op] : kNames) {
    if (n == name) return op;
  }
  return Op::kUnknown;
}

Op OpOf(const Request& r) { return OpNamed(r.op); }

std::string OpLabel(const Request& r) { return OpOf(r) == Op::kCall ? "call:" + r.call : r.op; }

namespace {

bool IsDataOp(Op op) {
  return op == Op::kCreate || op == Op::kFetch || op == Op::kCount || op == Op::kUpdate ||
         op == Op::kDelete || op == Op::kCall;
}

bool IsQuery(Op op) { return op == Op::kFetch || op == Op::kCount; }

}  // namespace

bool IsWrite(const Template& t, const Request& r) {
  const Op op = OpOf(r);
  if (op == Op::kCreate || op == Op::kUpdate || op == Op::kDelete) return true;
  if (op != Op::kCall) return false;
  const OpSpec* spec = t.Call(r.call);
  return spec && !spec->read;
}

Result<const OpSpec*> FindOp(const Template& t, const Request& r) {
  const std::string& op = r.op;
  const Op kind = OpOf(r);
  const OpSpec* spec = nullptr;
  if (kind == Op::kCall) {
    if (r.call.empty())
      return std::unexpected(
          Error{Code::kValidation, "op call needs \"call\": the operation's name"});
    spec = t.Call(r.call);
    if (!spec) {
      return std::unexpected(Error{
          Code::kUnknownOp, "template '" + t.name + "' has no call '" + Excerpt(r.call) + "'"});
    }
  } else if (IsDataOp(kind)) {
    spec = t.Op(op);
  }
  if (!spec) {
    return std::unexpected(
        Error{Code::kUnknownOp, "template '" + t.name + "' has no op '" + Excerpt(op) + "'"});
  }
  return spec;
}

namespace {

// A request validated against its op: a query for fetch and count, a payload for the rest.
struct Checked {
  std::optional<Query> query;
  std::optional<Payload> payload;
};

Result<Checked> Check(const Template& t, const OpSpec& spec, const Request& r) {
  const std::string& op = r.op;
  const bool query = IsQuery(OpOf(r));
  if (query && !r.data.empty()) {
    return std::unexpected(Error{Code::kValidation, op + " takes where, not data"});
  }
  if (!query && !r.where.empty()) {
    return std::unexpected(Error{Code::kValidation, op + " takes data, not where"});
  }
  Checked out;
  if (query) {
    QueryInput in{&r.where, r.id, r.limit, r.offset, r.order};
    auto q = ValidateQuery(t, spec, in, OpOf(r) == Op::kCount);
    if (!q) return std::unexpected(q.error());
    q->deadline_ms = r.deadline_ms;
    out.query = std::move(*q);
  } else {
    auto p = ValidatePayload(t, spec, op, r.data, r.id);
    if (!p) return std::unexpected(p.error());
    p->deadline_ms = r.deadline_ms;
    out.payload = std::move(*p);
  }
  return out;
}

}  // namespace

Result<void> CheckOp(const Template& t, const OpSpec& spec, const Request& r) {
  auto checked = Check(t, spec, r);
  if (!checked) return std::unexpected(checked.error());
  return Ok();
}

Result<Write> PrepareWrite(const Template& t, const OpSpec& spec, const Request& r,
                           const OnceScope* once) {
  const Op op = OpOf(r);
  if (IsQuery(op)) return std::unexpected(Error{Code::kInternal, r.op + " is not a write"});
  auto checked = Check(t, spec, r);
  if (!checked) return std::unexpected(checked.error());
  Write w;
  w.t = &t;
  w.spec = &spec;
  w.kind = op == Op::kCreate   ? Write::Kind::kCreate
           : op == Op::kUpdate ? Write::Kind::kUpdate
           : op == Op::kDelete ? Write::Kind::kDelete
                               : Write::Kind::kCall;
  w.payload = std::move(*checked->payload);
  Payload& p = w.payload;
  if (once && !spec.read) {
    std::string digest = OnceDigest(t, op == Op::kCall ? "call:" + spec.name : r.op, p);
    std::string identity =
        once->by_key ? once->identity : OnceIdentityOfMessage(once->identity, digest);
    p.once = WriteOnce{std::move(identity), std::move(digest), once->ttl_s, once->maybe_seen};
  }
  return w;
}

Result<OpResult> RunOp(const Template& t, const OpSpec& spec, const Request& r, NamasteCore& core,
                       const OnceScope* once) {
  const Op op = OpOf(r);
  if (IsQuery(op)) {
    auto checked = Check(t, spec, r);
    if (!checked) return std::unexpected(checked.error());
    if (op == Op::kCount) return core.Count(t, spec, *checked->query);
    auto result = core.Fetch(t, spec, *checked->query);
    if (result && !r.id.empty() && result->data.empty()) {
      return std::unexpected(
          Error{Code::kNotFound, t.name + " '" + Excerpt(r.id) + "' was not found"});
    }
    return result;
  }
  auto write = PrepareWrite(t, spec, r, once);
  if (!write) return std::unexpected(write.error());
  return ApplyWrite(core, *write);
}

bool IsFetchByKey(const Template& t, const Request& r) {
  if (OpOf(r) != Op::kFetch || r.id.empty() || !r.where.empty() || !r.data.empty() || r.limit ||
      r.offset || !r.order.empty()) {
    return false;
  }
  const FieldSpec* key = t.Key();
  return key && (key->type == FieldType::kInt || key->type == FieldType::kString);
}

namespace {

// A key as both sides spell it: the validated value, and the row's JSON value.
std::string KeyText(const Value& v) {
  return v.type == FieldType::kInt ? std::to_string(v.i) : v.text;
}

std::optional<std::string> KeyText(const boost::json::value& v) {
  if (v.is_int64()) return std::to_string(v.as_int64());
  if (v.is_uint64()) return std::to_string(v.as_uint64());
  if (v.is_string()) return std::string(v.as_string());
  return std::nullopt;
}

}  // namespace

std::vector<Result<OpResult>> RunFetchesByKey(const Template& t, const OpSpec& spec,
                                              const std::vector<const Request*>& requests,
                                              NamasteCore& core) {
  std::vector<Result<OpResult>> out;
  out.reserve(requests.size());
  auto alone = [&] {
    out.clear();
    for (const Request* r : requests) out.push_back(RunOp(t, spec, *r, core, nullptr));
    return out;
  };
  const FieldSpec* key = t.Key();
  if (!key || requests.size() < 2) return alone();
  // Each request validated as it would be alone; the valid ones share one query.
  std::vector<std::optional<Query>> queries;
  std::optional<Query> merged;
  bool deadlines_differ = false;
  for (const Request* r : requests) {
    auto checked = Check(t, spec, *r);
    if (!checked) {
      queries.emplace_back();
      out.push_back(std::unexpected(checked.error()));
      continue;
    }
    Query& q = *checked->query;
    // A fetch by key validates to exactly the key's equality filter; anything else runs alone.
    if (q.filters.size() != 1 || q.filters[0].field != key->name ||
        q.filters[0].op != Filter::Op::kEq || q.filters[0].values.size() != 1) {
      return alone();
    }
    if (!merged) {
      merged = q;
      merged->filters[0].op = Filter::Op::kIn;
      merged->limit = 0;
    } else {
      // One query has one deadline, the earliest (0 is none): if the query runs out of it, the
      // reads whose deadlines differ are asked again alone, each with its own.
      if (q.deadline_ms != merged->deadline_ms) {
        deadlines_differ = true;
        if (merged->deadline_ms == 0 || (q.deadline_ms != 0 && q.deadline_ms < merged->deadline_ms))
          merged->deadline_ms = q.deadline_ms;
      }
      merged->filters[0].values.push_back(q.filters[0].values[0]);
    }
    merged->limit += q.limit;
    queries.push_back(std::move(q));
    out.emplace_back(OpResult{});
  }
  if (!merged) return out;
  auto fetched = core.Fetch(t, spec, *merged);
  if (!fetched && fetched.error().code == Code::kTimeout && deadlines_differ) return alone();
  if (!fetched) {
    for (size_t i = 0; i < out.size(); ++i) {
      if (queries[i]) out[i] = std::unexpected(fetched.error());
    }
    return out;
  }
  // All the rows may not have fit the summed limit (a view with several rows per key): alone.
  if (static_cast<int64_t>(fetched->data.size()) >= merged->limit) return alone();
  // Each row to the requests whose key it carries, in the query's order, at most each one's limit.
  std::map<std::string, std::vector<size_t>> by_key;
  for (size_t i = 0; i < queries.size(); ++i) {
    if (queries[i]) {
      by_key[KeyText(queries[i]->filters[0].values[0])].push_back(i);
      out[i]->data.clear();
    }
  }
  for (boost::json::value& row : fetched->data) {
    const auto* object = row.if_object();
    const auto* field = object ? object->if_contains(key->name) : nullptr;
    const auto text = field ? KeyText(*field) : std::nullopt;
    // A view that does not show the key cannot be split: each runs alone.
    if (!text) return alone();
    auto it = by_key.find(*text);
    // The database matched it to a key spelled otherwise (a case-insensitive collation, a string
    // key on a number column): which request it answers is the database's call, so each runs
    // alone.
    if (it == by_key.end()) return alone();
    for (size_t i : it->second) {
      auto& rows = out[i]->data;
      if (static_cast<int64_t>(rows.size()) < queries[i]->limit) rows.push_back(row);
    }
  }
  for (size_t i = 0; i < queries.size(); ++i) {
    if (!queries[i]) continue;
    const auto n = out[i]->data.size();
    if (n == 0) {
      // Its row may have come back under another request's spelling of the key (`abc` and `ABC`
      // in one batch, under a case-insensitive collation): asked alone, the answer is its own.
      out[i] = RunOp(t, spec, *requests[i], core, nullptr);
      continue;
    }
    out[i]->count = static_cast<int64_t>(n);
  }
  return out;
}

}  // namespace beds
