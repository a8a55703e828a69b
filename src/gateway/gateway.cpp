#include "gateway/gateway.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <deque>
#include <optional>
#include <thread>
#include <vector>

#include "core/clock.hpp"
#include "core/listen.hpp"
#include "gateway/auth.hpp"
#include "gateway/bridge.hpp"
#include "gateway/console.hpp"
#include "gateway/cors.hpp"
#include "gateway/gzip.hpp"
#include "gateway/limits.hpp"
#include "gateway/openapi.hpp"
#include "gateway/rest.hpp"

namespace beds::gateway {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Response = http::response<http::string_body>;
using Request = http::request<http::string_body>;

constexpr std::string_view kJson = "application/json";
// /readyz asks a pool for sys/ping: this long, then the node is not ready.
constexpr auto kReadyTimeout = std::chrono::milliseconds(2000);

// Runs a bridge call and resumes the awaiting coroutine with the reply.
template <typename Token>
auto AsyncCall(Bridge& bridge, Routed routed, Token&& token) {
  return asio::async_initiate<Token, void(Result<std::string>)>(
      [&bridge](auto handler, Routed r) {
        auto executor = asio::get_associated_executor(handler);
        // The bridge answers on this thread, in a handler of its own: resumed there at once.
        bridge.Call(std::move(r.routing_key), std::move(r.envelope), r.write, std::move(r.actor),
                    std::chrono::milliseconds(r.timeout_ms),
                    [handler = std::move(handler), executor](Result<std::string> reply) mutable {
                      asio::dispatch(executor, [handler = std::move(handler),
                                                reply = std::move(reply)]() mutable {
                        std::move(handler)(std::move(reply));
                      });
                    });
      },
      token, std::move(routed));
}

Response Answer(int status, std::string body, unsigned version) {
  Response res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, kJson);
  if (status == 503) res.set(http::field::retry_after, "1");
  res.body() = std::move(body);
  return res;
}

// A refusal as HTTP: Allow on a 405, the Bearer challenge on a 401.
Response Refused(const Refusal& r, unsigned version) {
  Response res = Answer(r.status, ErrorBody(r.error), version);
  if (!r.allow.empty()) res.set(http::field::allow, r.allow);
  if (r.status == 401) res.set(http::field::www_authenticate, "Bearer");
  return res;
}

std::string_view Header(const Request& req, std::string_view name) {
  auto it = req.find(name);
  return it == req.end() ? std::string_view() : std::string_view(it->value());
}

}  // namespace

struct Gateway::Impl {
  Impl(const config::GatewaySettings& s, const config::AmqpSettings& amqp,
       std::shared_ptr<const templates::Snapshot> t, std::unique_ptr<const Auth> a)
      : settings(s),
        templates(std::move(t)),
        openapi(OpenApiDocument(*templates, s)),
        auth(std::move(a)),
        limiter(s.auth) {
    for (int64_t i = 0; i < s.threads; ++i) {
      loops.push_back(std::make_unique<Loop>(amqp, static_cast<int>(i)));
    }
    acceptor.emplace(loops.front()->ioc);
  }

  // One HTTP thread: its own io_context and its own AMQP connection (Bridge), so each of its
  // connections' requests is read, published, answered and written without leaving the thread.
  struct Loop {
    Loop(const config::AmqpSettings& amqp, int index) : bridge(ioc, amqp, index) {}
    asio::io_context ioc{1};
    asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(ioc);
    Bridge bridge;
    std::thread thread;
  };

  asio::awaitable<void> Serve();
  // One connection: TLS first when configured, then Exchange.
  asio::awaitable<void> Session(tcp::socket socket, Bridge& bridge);
  // Requests and answers on one connection until it closes.
  // Returns true when the connection became a WebSocket (the stream was moved into it).
  template <typename Stream>
  asio::awaitable<bool> Exchange(Stream& stream, Bridge& bridge);
  // /v1/ws: envelopes in, replies out in any order, ticket completions pushed.
  template <typename Stream>
  asio::awaitable<void> WebSocket(Stream stream, Request upgrade, std::optional<Caller> caller,
                                  Bridge& bridge);
  // CORS around Route.
  asio::awaitable<Response> Handle(const Request& req, Bridge& bridge);
  // Route, authenticate, publish, answer.
  asio::awaitable<Response> Route(const Request& req, Bridge& bridge);
  // A console file (no credentials: it is the same for everyone and holds no data).
  Response Console(const Request& req) const;

  const config::GatewaySettings settings;
  const std::shared_ptr<const templates::Snapshot> templates;
  const std::string openapi;  // GET /v1/openapi.json, made once: the templates do not change
  const std::unique_ptr<const Auth> auth;
  std::unique_ptr<asio::ssl::context> tls;  // HTTPS when cert_file and key_file are set
  RateLimiter limiter;
  std::atomic<int64_t> connections{0};
  std::vector<std::unique_ptr<Loop>> loops;
  size_t next_loop = 0;  // the loop the next accepted connection goes to (round robin)
  // After the loops: destroyed first. On the first loop's io_context.
  std::optional<tcp::acceptor> acceptor;
  int port = 0;
};

asio::awaitable<Response> Gateway::Impl::Handle(const Request& req, Bridge& bridge) {
  const std::string_view origin = Header(req, "Origin");
  const bool cross_origin = OriginAllowed(settings.cors_origins, origin);
  if (req.method() == http::verb::options &&
      !Header(req, "Access-Control-Request-Method").empty()) {
    // A browser's preflight: answered here, before routing and credentials (it carries none).
    if (!cross_origin) {
      co_return Answer(403,
                       ErrorBody(Error{Code::kForbidden,
                                       "origin '" + Excerpt(origin, 120) +
                                           "' may not call this gateway ([gateway] cors_origins)"}),
                       req.version());
    }
    Response res{http::status::no_content, req.version()};
    for (auto& [name, value] : PreflightHeaders(origin)) res.set(name, value);
    co_return res;
  }
  Response res = co_await Route(req, bridge);
  if (cross_origin) {
    for (auto& [name, value] : CorsHeaders(origin)) res.set(name, value);
  }
  co_return res;
}

Response Gateway::Impl::Console(const Request& req) const {
  const std::string_view path = std::string_view(req.target()).substr(0, req.target().find('?'));
  const ConsoleFile* file = settings.console ? ConsoleFileAt(path) : nullptr;
  if (file == nullptr) {
    return Answer(404,
                  ErrorBody(Error{Code::kNotFound,
                                  "the console is off here ([gateway] console = false); the API "
                                  "is under /v1/ (docs/gateway.md)"}),
                  req.version());
  }
  Response res{http::status::ok, req.version()};
  res.set(http::field::content_type, file->content_type);
  res.set("Content-Security-Policy", kConsoleSecurityPolicy);
  res.set("X-Content-Type-Options", "nosniff");
  res.set("Referrer-Policy", "no-referrer");
  res.set(http::field::cache_control, "no-cache");
  res.body() = std::string(file->body);
  return res;
}

asio::awaitable<Response> Gateway::Impl::Route(const Request& req, Bridge& bridge) {
  const HttpRequest r{req.method_string(),
                      req.target(),
                      req.body(),
                      Header(req, "Idempotency-Key"),
                      Header(req, "Prefer"),
                      Header(req, "X-Beds-Parent"),
                      Header(req, "X-Beds-Parent-Depth"),
                      Header(req, "X-Beds-Deadline-Ms")};
  auto route = RouteOf(r, *templates, settings.timeout_ms);
  if (!route) {
    co_return Refused(route.error(), req.version());
  }
  if (route->local && route->what == Local::kHealth) {
    co_return Answer(200, R"({"ok":true})", req.version());
  }
  if (route->local && route->what == Local::kOpenApi) {
    co_return Answer(200, openapi, req.version());
  }
  if (route->local && route->what == Local::kConsole) {
    co_return Console(req);
  }
  Routed routed;
  if (route->local) {
    routed.routing_key = "sys.read";
    routed.envelope = R"({"template":"sys","op":"ping"})";
    routed.timeout_ms = kReadyTimeout.count();
  } else {
    routed = std::move(route->routed);
    if (auth->enabled()) {
      auto principal = auth->Authenticate(Header(req, "Authorization"), Header(req, "X-Api-Key"),
                                          NowUnixMs() / 1000);
      std::expected<void, Refusal> allowed;
      if (principal) allowed = Auth::Authorize(*principal, routed.permission);
      const Refusal* refused = !principal ? &principal.error()
                               : !allowed ? &allowed.error()
                                          : nullptr;
      if (refused) {
        co_return Refused(*refused, req.version());
      }
      routed.actor = principal->name;
      if (auto wait_s = limiter.Take(routed.actor, std::chrono::steady_clock::now())) {
        Response res = Answer(
            429,
            ErrorBody(Error{Code::kUnavailable, "principal '" + routed.actor +
                                                    "' is over its rate limit (rate_per_s); retry "
                                                    "after " +
                                                    std::to_string(*wait_s) + " s"}),
            req.version());
        res.set(http::field::retry_after, std::to_string(*wait_s));
        co_return res;
      }
    }
  }
  const int ok_status = routed.ok_status;
  const bool readiness = route->local;
  Result<std::string> reply = co_await AsyncCall(bridge, std::move(routed), asio::use_awaitable);
  if (!reply) {
    // Not ready, whatever the reason (no pool answered in time, the broker is away): a load
    // balancer reads /readyz's 503 and nothing else.
    const int status = readiness ? 503 : StatusOf(reply.error().code);
    co_return Answer(status, ErrorBody(reply.error()), req.version());
  }
  const ReplyInfo info = InfoOf(*reply, ok_status);
  Response res = Answer(info.status, std::move(*reply), req.version());
  if (!info.event_id.empty()) res.set("X-Beds-Event-Id", info.event_id);
  if (info.status == 202) res.set(http::field::location, "/v1/tickets/" + info.ticket);
  co_return res;
}

asio::awaitable<void> Gateway::Impl::Session(tcp::socket socket, Bridge& bridge) {
  // An answer leaves at once, not when the client acknowledges the previous segment (Nagle).
  beast::error_code nodelay_error;
  socket.set_option(tcp::no_delay(true), nodelay_error);
  beast::tcp_stream stream(std::move(socket));
  if (!tls) {
    if (co_await Exchange(stream, bridge)) co_return;
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    co_return;
  }
  beast::ssl_stream<beast::tcp_stream> secure(std::move(stream), *tls);
  beast::get_lowest_layer(secure).expires_after(
      std::chrono::milliseconds(settings.idle_timeout_ms));
  auto [handshake_error] = co_await secure.async_handshake(asio::ssl::stream_base::server,
                                                           asio::as_tuple(asio::use_awaitable));
  if (handshake_error) co_return;  // not TLS, or a client that gave up: nothing to answer
  if (co_await Exchange(secure, bridge)) co_return;
  beast::get_lowest_layer(secure).expires_after(std::chrono::seconds(2));
  co_await secure.async_shutdown(asio::as_tuple(asio::use_awaitable));
}

template <typename Stream>
asio::awaitable<bool> Gateway::Impl::Exchange(Stream& stream, Bridge& bridge) {
  beast::flat_buffer buffer;
  const auto idle = std::chrono::milliseconds(settings.idle_timeout_ms);
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(static_cast<uint64_t>(settings.max_body_bytes));
    parser.header_limit(static_cast<uint32_t>(settings.max_header_bytes));
    beast::get_lowest_layer(stream).expires_after(idle);
    auto [read_error, read_bytes] =
        co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    Response res;
    if (read_error == http::error::body_limit) {
      res = Answer(
          413,
          ErrorBody(Error{Code::kTooLarge, "the body is over this gateway's max_body_bytes (" +
                                               std::to_string(settings.max_body_bytes) + ")"}),
          11);
      res.keep_alive(false);
    } else if (read_error == http::error::header_limit) {
      res = Answer(431,
                   ErrorBody(Error{Code::kTooLarge,
                                   "the request headers are over this gateway's "
                                   "max_header_bytes (" +
                                       std::to_string(settings.max_header_bytes) + ")"}),
                   11);
      res.keep_alive(false);
    } else if (read_error &&
               read_error.category() == http::make_error_code(http::error::bad_method).category() &&
               read_error != http::error::end_of_stream &&
               read_error != http::error::partial_message) {
      res = Answer(400,
                   ErrorBody(Error{Code::kBadRequest,
                                   "not a well-formed HTTP/1.x request: " + read_error.message()}),
                   11);
      res.keep_alive(false);
    } else if (read_error) {
      break;  // the client went away, or was idle too long
    } else if (websocket::is_upgrade(parser.get())) {
      const Request& req = parser.get();
      std::optional<Caller> caller;
      std::optional<Refusal> refused;
      if (std::string_view(req.target()).substr(0, req.target().find('?')) != "/v1/ws") {
        refused = Refusal{404, Error{Code::kNotFound, "WebSocket is served on /v1/ws only"}, {}};
      } else if (auth->enabled()) {
        auto who = auth->Authenticate(Header(req, "Authorization"), Header(req, "X-Api-Key"),
                                      NowUnixMs() / 1000);
        if (who) {
          caller = std::move(*who);
        } else {
          refused = who.error();
        }
      }
      if (!refused) {
        co_await WebSocket(std::move(stream), parser.release(), std::move(caller), bridge);
        co_return true;
      }
      res = Refused(*refused, req.version());
      res.keep_alive(false);
    } else {
      const Request& req = parser.get();
      res = co_await Handle(req, bridge);
      res.keep_alive(req.keep_alive());
      if (res.body().size() >= kGzipMinBytes) {
        // Caches must keep the two forms apart.
        const std::string vary(res[http::field::vary]);
        res.set(http::field::vary, vary.empty() ? "Accept-Encoding" : vary + ", Accept-Encoding");
        if (AcceptsGzip(Header(req, "Accept-Encoding"))) {
          if (auto zipped = Gzip(res.body())) {
            res.body() = std::move(*zipped);
            res.set(http::field::content_encoding, "gzip");
          }
        }
      }
    }
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(idle);
    auto [write_error, written] =
        co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    if (write_error || !res.keep_alive()) break;
  }
  co_return false;
}

namespace {

// What a WebSocket's requests share: the frames waiting to be written (one writer at a time) and
// how many requests are waiting for their reply. Touched only on the connection's loop thread.
template <typename Stream>
struct WsConnection {
  explicit WsConnection(Stream s) : ws(std::move(s)) {}
  websocket::stream<Stream> ws;
  std::deque<std::string> outbox;
  bool writing = false;
  bool closed = false;
  int64_t in_flight = 0;
};

template <typename Stream>
asio::awaitable<void> WriteAll(std::shared_ptr<WsConnection<Stream>> c) {
  while (!c->outbox.empty() && !c->closed) {
    const std::string frame = std::move(c->outbox.front());
    c->outbox.pop_front();
    c->ws.text(true);
    auto [error, written] =
        co_await c->ws.async_write(asio::buffer(frame), asio::as_tuple(asio::use_awaitable));
    if (error) c->closed = true;
  }
  c->outbox.clear();
  c->writing = false;
}

template <typename Stream>
void Send(const std::shared_ptr<WsConnection<Stream>>& c, const json::value& id,
          std::string_view key, std::string_view value_json) {
  if (c->closed) return;
  // The value is a reply as the node wrote it: spliced in, not parsed and written again.
  c->outbox.push_back("{\"id\":" + json::serialize(id) + ",\"" + std::string(key) +
                      "\":" + std::string(value_json) + "}");
  if (c->writing) return;
  c->writing = true;
  asio::co_spawn(c->ws.get_executor(), WriteAll(c), asio::detached);
}

bool Finished(const json::value& ticket) {
  const json::value* s = ticket.is_object() ? ticket.as_object().if_contains("status") : nullptr;
  if (!s || !s->is_string()) return false;
  const std::string_view status = s->get_string();
  return status == "done" || status == "failed" || status == "cancelled" || status == "expired";
}

}  // namespace

template <typename Stream>
asio::awaitable<void> Gateway::Impl::WebSocket(Stream stream, Request upgrade,
                                               std::optional<Caller> caller, Bridge& bridge) {
  auto c = std::make_shared<WsConnection<Stream>>(std::move(stream));
  beast::get_lowest_layer(c->ws).expires_never();
  // Pings the client when it is quiet and drops it when it stops answering.
  c->ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
  c->ws.read_message_max(static_cast<uint64_t>(settings.max_body_bytes));
  auto [accept_error] = co_await c->ws.async_accept(upgrade, asio::as_tuple(asio::use_awaitable));
  if (accept_error) co_return;
  const auto executor = co_await asio::this_coro::executor;
  for (;;) {
    beast::flat_buffer buffer;
    auto [read_error, n] = co_await c->ws.async_read(buffer, asio::as_tuple(asio::use_awaitable));
    if (read_error) break;
    std::error_code ec;
    json::value frame = json::parse(beast::buffers_to_string(buffer.data()), ec);
    json::object* f = ec ? nullptr : frame.if_object();
    const json::value id = f && f->contains("id") ? f->at("id") : json::value(nullptr);
    auto refuse = [&](const Refusal& r) { Send(c, id, "reply", ErrorBody(r.error)); };
    const json::value* request = f ? f->if_contains("request") : nullptr;
    const json::value* subscribe = f ? f->if_contains("subscribe") : nullptr;
    if (!f || (!(request && request->is_object()) && !(subscribe && subscribe->is_string()))) {
      refuse(Refusal{400,
                     Error{Code::kBadRequest,
                           "a frame is {\"id\": …, \"request\": {envelope}} or {\"id\": …, "
                           "\"subscribe\": \"TICKET\"}"},
                     {}});
      continue;
    }
    if (c->in_flight >= settings.ws_max_in_flight) {
      refuse(Refusal{429,
                     Error{Code::kUnavailable,
                           "too many requests in flight on this WebSocket (ws_max_in_flight = " +
                               std::to_string(settings.ws_max_in_flight) +
                               "): wait for replies before sending more"},
                     {}});
      continue;
    }
    json::object envelope = request ? request->as_object()
                                    : json::object{{"template", "calgon"},
                                                   {"op", "wait"},
                                                   {"id", subscribe->as_string()},
                                                   {"data", json::object{{"timeout_ms", 25000}}}};
    auto routed = RouteEnvelope(std::move(envelope), *templates, settings.timeout_ms);
    if (!routed) {
      refuse(routed.error());
      continue;
    }
    if (caller) {
      if (auto allowed = Auth::Authorize(*caller, routed->permission); !allowed) {
        refuse(allowed.error());
        continue;
      }
      routed->actor = caller->name;
    }
    ++c->in_flight;
    const std::string ticket = subscribe ? std::string(subscribe->as_string()) : std::string();
    asio::co_spawn(
        executor,
        [this, c, id, routed = std::move(*routed), ticket,
         &bridge]() mutable -> asio::awaitable<void> {
          const bool is_subscription = !ticket.empty();
          for (bool first = true;; first = false) {
            if (is_subscription && !first) {
              // Each wait is a request of its own, with a deadline of its own.
              auto again =
                  RouteEnvelope(json::object{{"template", "calgon"},
                                             {"op", "wait"},
                                             {"id", ticket},
                                             {"data", json::object{{"timeout_ms", 25000}}}},
                                *templates, settings.timeout_ms);
              if (!again) break;
              again->actor = routed.actor;
              routed = std::move(*again);
            }
            Result<std::string> reply = co_await AsyncCall(bridge, routed, asio::use_awaitable);
            if (!reply) {
              Send(c, id, "reply", ErrorBody(reply.error()));
              break;
            }
            if (!is_subscription) {
              Send(c, id, "reply", *reply);
              break;
            }
            // A subscription waits again until the job ends, then pushes the ticket.
            std::error_code ec;
            const json::value r = json::parse(*reply, ec);
            const json::value* data =
                !ec && r.is_object() ? r.as_object().if_contains("data") : nullptr;
            if (!data) {
              Send(c, id, "reply", *reply);
              break;
            }
            if (Finished(*data)) {
              Send(c, id, "ticket", json::serialize(*data));
              break;
            }
            if (c->closed) break;
          }
          --c->in_flight;
        },
        asio::detached);
  }
  c->closed = true;
}

asio::awaitable<void> Gateway::Impl::Serve() {
  for (;;) {
    // Each connection lives on one loop, taken in turn: its socket is made on that io_context.
    Loop& loop = *loops[next_loop++ % loops.size()];
    auto [error, socket] =
        co_await acceptor->async_accept(loop.ioc, asio::as_tuple(asio::use_awaitable));
    if (error == asio::error::operation_aborted || !acceptor->is_open()) co_return;
    if (error) {
      // EMFILE and the like: keep serving, but do not spin.
      spdlog::warn("gateway: accept failed: {}", error.message());
      asio::steady_timer pause(acceptor->get_executor(), std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
      continue;
    }
    if (connections.fetch_add(1) >= settings.max_connections) {
      // Shed load: a clear answer now rather than an unbounded queue of sockets.
      connections.fetch_sub(1);
      asio::co_spawn(
          loop.ioc,
          [s = std::move(socket), this]() mutable -> asio::awaitable<void> {
            beast::tcp_stream stream(std::move(s));
            stream.expires_after(std::chrono::seconds(2));
            Response res = Answer(
                503,
                ErrorBody(Error{Code::kUnavailable, "the gateway is at max_connections (" +
                                                        std::to_string(settings.max_connections) +
                                                        "); try again"}),
                11);
            res.keep_alive(false);
            res.prepare_payload();
            co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
          },
          asio::detached);
      continue;
    }
    // A loop has one thread, so a connection's coroutines (a WebSocket's requests and its
    // writer) never run at once.
    asio::co_spawn(
        loop.ioc,
        [s = std::move(socket), this, &loop]() mutable -> asio::awaitable<void> {
          try {
            co_await Session(std::move(s), loop.bridge);
          } catch (const std::exception& e) {
            spdlog::warn("gateway: connection failed: {}", e.what());
          }
          connections.fetch_sub(1);
        },
        asio::detached);
  }
}

Gateway::Gateway(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Gateway>> Gateway::Start(
    const config::GatewaySettings& settings, const config::AmqpSettings& amqp,
    std::shared_ptr<const templates::Snapshot> templates) {
  auto address = ParseListen(settings.listen, "gateway listen");
  if (!address) return std::unexpected(address.error());
  auto auth = Auth::Make(settings.auth);
  if (!auth) return std::unexpected(auth.error());
  auto impl = std::make_unique<Impl>(settings, amqp, std::move(templates), std::move(*auth));
  if (!settings.cert_file.empty()) {
    auto tls = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
    tls->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                     asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                     asio::ssl::context::no_tlsv1_1);
    boost::system::error_code tls_error;
    tls->use_certificate_chain_file(settings.cert_file, tls_error);
    if (tls_error) {
      return Fail(Code::kUnavailable,
                  "gateway: cert_file " + settings.cert_file + ": " + tls_error.message());
    }
    tls->use_private_key_file(settings.key_file, asio::ssl::context::pem, tls_error);
    if (tls_error) {
      return Fail(Code::kUnavailable,
                  "gateway: key_file " + settings.key_file + ": " + tls_error.message());
    }
    impl->tls = std::move(tls);
  }
  boost::system::error_code ec;
  const tcp::endpoint endpoint(asio::ip::make_address(address->ip), address->port);
  tcp::acceptor& acceptor = *impl->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) impl->port = acceptor.local_endpoint(ec).port();
  if (ec) {
    std::string hint;
    if (ec == asio::error::address_in_use) {
      hint =
          " (another process has it: give this node its own [gateway] listen, e.g. with "
          "BEDS__GATEWAY__LISTEN=127.0.0.1:8081, or port 0 for any free port)";
    }
    return Fail(Code::kUnavailable,
                "gateway: cannot listen on " + settings.listen + ": " + ec.message() + hint);
  }
  asio::co_spawn(impl->loops.front()->ioc, impl->Serve(), asio::detached);
  for (size_t i = 0; i < impl->loops.size(); ++i) {
    Impl::Loop* loop = impl->loops[i].get();
    loop->thread = std::thread([loop, i] {
      const std::string name = "http/" + std::to_string(i);
      pthread_setname_np(pthread_self(), name.c_str());
      try {
        loop->ioc.run();
      } catch (const std::exception& e) {
        spdlog::error("gateway: http thread stopped: {}", e.what());
      }
    });
  }
  spdlog::info("gateway: serving {} on {}:{}", impl->tls ? "HTTPS" : "HTTP", address->ip,
               impl->port);
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

Gateway::~Gateway() {
  // Stop every loop first; what still waits is then dropped with its handlers when the loops
  // (bridges, then io_contexts) are destroyed, after the acceptor.
  for (auto& loop : impl_->loops) loop->ioc.stop();
  for (auto& loop : impl_->loops) {
    if (loop->thread.joinable()) loop->thread.join();
  }
}

int Gateway::port() const { return impl_->port; }

}  // namespace beds::gateway
