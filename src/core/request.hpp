// A decoded request (docs/protocol.md "Request"): what the envelope asked for, before the
// template and op are looked up. protocol::DecodeFields makes one from the wire; the dispatcher
// routes it and core::RunOp runs it.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/lineage.hpp"

namespace beds {

// Every op the protocol names (docs/protocol.md): the data ops, and those of the system
// templates (sys: ping, describe, call; lineage: fetch; calgon: poll, wait, cancel). Which ops a
// template takes is its own business; a name outside this list is kUnknown.
enum class Op {
  kUnknown,
  kCreate,
  kFetch,
  kCount,
  kUpdate,
  kDelete,
  kCall,
  kPing,
  kDescribe,
  kPoll,
  kWait,
  kCancel
};

// The op a name stands for (the one place op names are compared).
Op OpNamed(std::string_view name);

struct Request;
// The request's op: OpNamed(request.op).
Op OpOf(const Request& request);

// How records and messages name a request's op: "call:{name}" for a call, else the op.
std::string OpLabel(const Request& request);

struct Request {
  std::string template_name;
  std::string op;
  std::string call;
  std::string id;  // a JSON integer id arrives as its decimal text
  boost::json::object data;
  boost::json::object where;
  std::optional<int64_t> limit;
  std::optional<int64_t> offset;
  std::string order;
  bool async = false;
  std::optional<Lineage> lineage;  // as sent; see protocol::RequestLineage()
  int64_t deadline_ms = 0;         // absolute Unix ms; 0 = none
  std::string idempotency_key;
};

}  // namespace beds
