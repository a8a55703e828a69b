// How an HTTP request becomes a protocol envelope (docs/gateway.md): the REST routes over the
// templates, the query string's filters typed by the template's fields, the headers a client may
// set, and the HTTP status each reply gets. Pure functions of the request and the templates, so
// the whole mapping is unit-tested without a socket (tests/gateway/rest_test.cpp).
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "templates/templates.hpp"

namespace beds::gateway {

// What the server read of an HTTP request. Header values are "" when the header is absent.
struct HttpRequest {
  std::string_view method;  // "GET", "POST", …
  std::string_view target;  // "/v1/Users?email=a%40example.org"
  std::string_view body;
  std::string_view idempotency_key;  // Idempotency-Key
  std::string_view prefer;           // Prefer ("respond-async" asks for a CALGON ticket)
  std::string_view parent;           // X-Beds-Parent: the parent event's id
  std::string_view parent_depth;     // X-Beds-Parent-Depth: the parent's depth (default 0)
  std::string_view deadline_ms;      // X-Beds-Deadline-Ms: this request's budget in ms
};

// Answered by the gateway itself, without a node. kConsole: a file of the console page
// (gateway/console.hpp) at the request's path.
enum class Local { kHealth, kReady, kOpenApi, kConsole };

// A request the gateway publishes: the envelope, its routing key, and how to answer it.
struct Routed {
  std::string routing_key;
  std::string envelope;
  bool write = false;      // published persistent
  int64_t timeout_ms = 0;  // how long the reply is waited for (and the envelope's deadline)
  int ok_status = 200;     // 201 for a create, 202 for an async submit
  std::string permission;  // "Users/fetch", "Users/call:get", "calgon/poll": what auth checks
  std::string actor;       // the authenticated principal, set by the gateway after RouteOf
};

// A request refused before anything is published.
struct Refusal {
  int status = 400;
  Error error;
  std::string allow;  // 405: the methods the path takes
};

// Either a local answer or an envelope to publish.
struct Route {
  bool local = false;
  Local what = Local::kHealth;
  Routed routed;
};

// The route of `request` over `templates`; `default_timeout_ms` when the client sets no
// deadline. Unknown templates and calls, paths that match nothing, bodies that are not a JSON
// object, bad header values: a Refusal with the status and error to answer.
std::expected<Route, Refusal> RouteOf(const HttpRequest& request,
                                      const templates::Snapshot& templates,
                                      int64_t default_timeout_ms);

// A protocol envelope sent as it is (a WebSocket frame's `request`): its routing key and permission
// from its template and op, like RouteOf's, and a deadline of `default_timeout_ms` from now when it
// has none. Unknown templates and ops are refused (404) before anything is published.
std::expected<Routed, Refusal> RouteEnvelope(boost::json::object envelope,
                                             const templates::Snapshot& templates,
                                             int64_t default_timeout_ms);

// An HTTP request as a client writes it: what HttpOf answers.
struct HttpForm {
  std::string method;  // "GET", "POST", …
  std::string target;  // "/v1/Users?email=a%40example.org"
  std::string body;    // "" when none
  std::vector<std::pair<std::string, std::string>> headers;
};

// The request a client sends through the gateway for `envelope`, RouteOf's inverse (what
// `bedsctl curl` prints): create → POST /v1/{template}, a fetch by `id` → GET /v1/{template}/{id},
// filters → the query string, `idempotency_key`, `async` and `lineage` → their headers. What has
// no REST form (sys and admin requests, batches, a filter value with a comma in an `in` list, a
// `deadline_ms`, which is absolute where the header is relative) is an error saying so.
Result<HttpForm> HttpOf(const boost::json::object& envelope);

// The HTTP status of an error code: BAD_REQUEST 400, VALIDATION 422, NOT_FOUND 404, …
int StatusOf(Code code);

// What a node's reply means for the HTTP answer.
struct ReplyInfo {
  int status = 200;
  std::string event_id;  // "" when the reply has none
  std::string ticket;    // an async submit's ticket
};
// `ok_status` is the route's success status; a reply that is not a JSON object is 502-like
// INTERNAL (500).
ReplyInfo InfoOf(std::string_view reply, int ok_status);

// The body of an error the gateway answers itself: the protocol's shape without an event id.
std::string ErrorBody(const Error& error);

}  // namespace beds::gateway
