// The request envelope and reply bodies of docs/protocol.md, version 1. Pure functions over bytes:
// no sockets, no databases, callable from any thread.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// A batch envelope (docs/protocol.md "Batches"): `{"batch": [envelope, …], "atomic": bool}` with
// the batch's own lineage, deadline and idempotency key.
struct Batch {
  // Each envelope decoded on its own (DecodeFields, then what a batch forbids inside: lineage,
  // async, a batch): one that fails is answered its own error in the batch's reply.
  std::vector<Result<Request>> requests;
  bool atomic = false;
  std::optional<Lineage> lineage;
  int64_t deadline_ms = 0;
  std::string idempotency_key;
};

// Whether a parsed body is a batch envelope (it has a "batch" field).
bool IsBatch(const boost::json::object& body);

// A batch envelope's fields. BAD_REQUEST for the batch as a whole: "batch" not an array of 1 to
// `max_batch` entries, an unknown or mistyped batch field; VALIDATION for a bad idempotency_key.
Result<Batch> DecodeBatch(boost::json::object body, int64_t max_batch);

// {"ok": true, "event_id": ..., "data": [reply, …], "count": n}: a batch's reply, from the
// envelopes' encoded replies, in order.
std::string EncodeBatchReply(std::string_view event_id, const std::vector<std::string>& replies);

// EncodeError with "index": the envelope of an atomic batch that failed it.
std::string EncodeErrorAt(std::string_view event_id, const Error& error, size_t index);

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
