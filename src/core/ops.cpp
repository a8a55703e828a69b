#include "core/ops.hpp"

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

}  // namespace beds
