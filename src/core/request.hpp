// A decoded request (docs/protocol.md "Request"): what the envelope asked for, before the
// template and op are looked up. protocol::DecodeFields makes one from the wire; the dispatcher
// routes it and core::RunOp runs it.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>

#include "core/lineage.hpp"

namespace beds {

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
