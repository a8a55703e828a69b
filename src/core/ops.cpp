#include "core/ops.hpp"

#include "core/once.hpp"
#include "core/validate.hpp"

namespace beds {
namespace {

bool IsDataOp(std::string_view op) {
  return op == "create" || op == "fetch" || op == "count" || op == "update" || op == "delete" ||
         op == "call";
}

}  // namespace

bool IsWrite(const Template& t, const Request& r) {
  if (r.op == "create" || r.op == "update" || r.op == "delete") return true;
  if (r.op != "call") return false;
  const OpSpec* spec = t.Call(r.call);
  return spec && !spec->read;
}

Result<const OpSpec*> FindOp(const Template& t, const Request& r) {
  const std::string& op = r.op;
  const OpSpec* spec = nullptr;
  if (op == "call") {
    if (r.call.empty())
      return std::unexpected(
          Error{Code::kValidation, "op call needs \"call\": the operation's name"});
    spec = t.Call(r.call);
    if (!spec) {
      return std::unexpected(Error{
          Code::kUnknownOp, "template '" + t.name + "' has no call '" + Excerpt(r.call) + "'"});
    }
  } else if (IsDataOp(op)) {
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
  const bool query = op == "fetch" || op == "count";
  if (query && !r.data.empty()) {
    return std::unexpected(Error{Code::kValidation, op + " takes where, not data"});
  }
  if (!query && !r.where.empty()) {
    return std::unexpected(Error{Code::kValidation, op + " takes data, not where"});
  }
  Checked out;
  if (query) {
    QueryInput in{&r.where, r.id, r.limit, r.offset, r.order};
    auto q = ValidateQuery(t, spec, in, op == "count");
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
  const std::string& op = r.op;
  if (op == "fetch" || op == "count") {
    return std::unexpected(Error{Code::kInternal, op + " is not a write"});
  }
  auto checked = Check(t, spec, r);
  if (!checked) return std::unexpected(checked.error());
  Write w;
  w.t = &t;
  w.spec = &spec;
  w.kind = op == "create"   ? Write::Kind::kCreate
           : op == "update" ? Write::Kind::kUpdate
           : op == "delete" ? Write::Kind::kDelete
                            : Write::Kind::kCall;
  w.payload = std::move(*checked->payload);
  Payload& p = w.payload;
  if (once && !spec.read) {
    std::string digest = OnceDigest(t, op == "call" ? "call:" + spec.name : op, p);
    std::string identity =
        once->by_key ? once->identity : OnceIdentityOfMessage(once->identity, digest);
    p.once = WriteOnce{std::move(identity), std::move(digest), once->ttl_s, once->maybe_seen};
  }
  return w;
}

Result<OpResult> RunOp(const Template& t, const OpSpec& spec, const Request& r, NamasteCore& core,
                       const OnceScope* once) {
  const std::string& op = r.op;
  if (op == "fetch" || op == "count") {
    auto checked = Check(t, spec, r);
    if (!checked) return std::unexpected(checked.error());
    if (op == "count") return core.Count(t, spec, *checked->query);
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
