// Request → typed values, checked against the template before any database is touched:
// unknown fields, fields an op does not take, required fields (create), types, maximum lengths,
// filters on undeclared fields, unknown operators, order fields, limit and offset. Every failure
// is a VALIDATION error whose message names the field and is safe to show the client.
// Pure functions: callable from any thread.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/namaste.hpp"
#include "core/template.hpp"

namespace beds {

// A JSON value as a field of `type` (null → a NULL Value). `name` is for the message.
Result<Value> ToValue(std::string_view name, const FieldSpec& field, const boost::json::value& v);

// A call parameter that is not a declared field: typed by its JSON type (string, int, float,
// bool, null; arrays and objects as json).
Value InferValue(const boost::json::value& v);

// create, update, delete and calls. The key field, when the op takes it, comes from the envelope's
// `id` (or from `data` when `id` is empty). `op_name` is "create", "update", "delete" or "call".
Result<Payload> ValidatePayload(const Template& t, const OpSpec& op, std::string_view op_name,
                                const boost::json::object& data, std::string_view id);

struct QueryInput {
  const boost::json::object* where = nullptr;
  std::string_view id;
  std::optional<int64_t> limit;
  std::optional<int64_t> offset;
  std::string_view order;
};

// fetch and count. `id` becomes an equality filter on the key field. A fetch without `limit` gets
// the op's max_limit; a limit above it is an error, not silently cut.
Result<Query> ValidateQuery(const Template& t, const OpSpec& op, const QueryInput& in,
                            bool counting);

// ISO 8601 checks that also normalise: "2026-11-24" and "2026-11-24T17:07:20.5Z" →
// "2026-11-24 17:07:20.5" (UTC only: an offset other than Z / +00:00 is refused).
std::optional<std::string> NormalizeDate(std::string_view text);
std::optional<std::string> NormalizeDatetime(std::string_view text);

// Standard base64 with padding (RFC 4648), via OpenSSL.
std::string Base64Encode(std::string_view bytes);
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace beds
