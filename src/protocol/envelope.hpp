// The request envelope and reply bodies of docs/protocol.md, version 1. Pure functions over bytes:
// no sockets, no databases, callable from any thread.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "core/lineage.hpp"
#include "core/request.hpp"

namespace beds::protocol {

using Request = beds::Request;  // core/request.hpp

// Step 1: size (TOO_LARGE), then JSON that is an object (BAD_REQUEST). A body that fails here
// cannot be understood at all: the broker parks it in the DLQ.
// `storage` (e.g. a per-request monotonic arena) holds the parsed nodes; it must outlive them.
Result<boost::json::object> ParseBody(std::string_view body, int64_t max_body_bytes,
                                      boost::json::storage_ptr storage = {});

// Step 2: every field's type and unknown fields (BAD_REQUEST). Template- and op-level checks
// belong to the dispatcher.
Result<Request> DecodeFields(boost::json::object body);

// Both steps.
Result<Request> DecodeRequest(std::string_view body, int64_t max_body_bytes);

// The lineage this request runs under. A request without lineage is a root; an AMQP message_id
// of event-id form becomes the root's event_id. A request that names its parent (a child request)
// keeps parent_id and depth; its event_id is the one it sent, or a fresh one.
Lineage RequestLineage(const Request& request, std::string_view message_id, std::string_view node,
                       std::string_view env);

// The event id of a message: its AMQP message_id when that has the event-id form, else a fresh
// one. Also for messages that cannot be decoded at all.
std::string EventIdFor(std::string_view message_id, std::string_view node, std::string_view env);

// {"ok": true, "event_id": ..., "data": data, "count": n}; count omitted when not given;
// "replayed": true for a write answered from its exactly-once record.
std::string EncodeOk(std::string_view event_id, boost::json::value data,
                     std::optional<int64_t> count = std::nullopt, bool replayed = false);

// {"ok": true, "event_id": ..., <fields>}: replies that are not rows (tickets, status).
std::string EncodeOkFields(std::string_view event_id, const boost::json::object& fields);

// {"ok": false, "event_id": ..., "error": {"code", "message", "retryable"}}
std::string EncodeError(std::string_view event_id, const Error& error);

// The reply body the broker hands back, decoded: for clients and tests.
struct Reply {
  bool ok = false;
  std::string event_id;
  boost::json::value body;  // the whole reply object
  std::optional<Error> error;
};
Result<Reply> DecodeReply(std::string_view body);

using beds::Excerpt;  // core/error.hpp

// Maps a wire code name ("BAD_REQUEST") back to the enum; nullopt for an unknown name.
std::optional<Code> CodeFromName(std::string_view name);

}  // namespace beds::protocol
