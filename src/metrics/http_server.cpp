#include "metrics/http_server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <exception>
#include <string_view>
#include <thread>

#include "core/listen.hpp"

namespace beds::metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kIoTimeout = std::chrono::seconds(2);
constexpr size_t kMaxRequestBody = 64 * 1024;
constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

Result<tcp::endpoint> EndpointOf(const std::string& listen) {
  auto parsed = ParseListen(listen, "metrics listen");
  if (!parsed) return std::unexpected(parsed.error());
  if (!parsed->loopback) {
    return Fail(Code::kValidation, "metrics listen '" + listen +
                                       "' is not a loopback address (metrics are loopback-only)");
  }
  return tcp::endpoint(asio::ip::make_address(parsed->ip), parsed->port);
}

http::response<http::string_body> Respond(const Registry& registry,
                                          const http::request<http::string_body>& req) {
  http::response<http::string_body> res;
  res.version(req.version());
  res.keep_alive(false);
  res.set(http::field::content_type, kContentType);
  std::string_view path = req.target();
  path = path.substr(0, path.find('?'));
  if (path != "/metrics") {
    res.result(http::status::not_found);
    res.body() = "not found: only /metrics is served\n";
  } else if (req.method() != http::verb::get) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET");
    res.body() = "method not allowed: use GET\n";
  } else {
    try {
      res.body() = registry.Render();
      res.result(http::status::ok);
    } catch (const std::exception& e) {
      spdlog::error("metrics: rendering failed: {}", e.what());
      res.result(http::status::internal_server_error);
      res.body() = "rendering the metrics failed\n";
    }
  }
  res.prepare_payload();
  return res;
}

// One request, one response, then the connection is closed.
asio::awaitable<void> HandleConnection(const Registry& registry, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer;
  http::request_parser<http::string_body> parser;
  parser.body_limit(kMaxRequestBody);
  stream.expires_after(kIoTimeout);
  const auto [read_error, read_bytes] =
      co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
  http::response<http::string_body> res;
  if (!read_error) {
    res = Respond(registry, parser.get());
  } else if (read_error.category() == http::make_error_code(http::error::bad_method).category() &&
             read_error != http::error::end_of_stream) {
    res.version(11);
    res.result(http::status::bad_request);
    res.keep_alive(false);
    res.set(http::field::content_type, kContentType);
    res.body() = "bad request\n";
    res.prepare_payload();
  } else {
    co_return;  // the client went away or timed out
  }
  stream.expires_after(kIoTimeout);
  co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(const Registry& r) : registry(r) {}

  asio::awaitable<void> Serve() {
    for (;;) {
      auto [error, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
      if (error == asio::error::operation_aborted || !acceptor.is_open()) co_return;
      if (error) {
        // EMFILE and the like: keep serving, but do not spin.
        spdlog::warn("metrics: accept failed: {}", error.message());
        asio::steady_timer pause(acceptor.get_executor(), std::chrono::milliseconds(100));
        co_await pause.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      try {
        co_await HandleConnection(registry, std::move(socket));
      } catch (const std::exception& e) {
        spdlog::warn("metrics: request failed: {}", e.what());
      }
    }
  }

  const Registry& registry;
  // Declared before the acceptor so that the acceptor is destroyed first.
  asio::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  int port = 0;
  std::thread thread;
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const std::string& listen,
                                                      const Registry& registry) {
  auto endpoint = EndpointOf(listen);
  if (!endpoint) return std::unexpected(std::move(endpoint.error()));

  auto impl = std::make_unique<Impl>(registry);
  boost::system::error_code ec;
  tcp::acceptor& acceptor = impl->acceptor;
  acceptor.open(endpoint->protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(*endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec) impl->port = acceptor.local_endpoint(ec).port();
  if (ec) {
    std::string hint;
    if (ec == asio::error::address_in_use) {
      hint =
          " (another process, perhaps a second node on this machine, has it: give this node "
          "its own [metrics] listen, or \"127.0.0.1:0\" for any free port, e.g. with "
          "BEDS__METRICS__LISTEN)";
    }
    return Fail(Code::kUnavailable,
                "metrics: cannot listen on " + listen + ": " + ec.message() + hint);
  }

  asio::co_spawn(impl->ioc, impl->Serve(), asio::detached);
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] {
    try {
      raw->ioc.run();
    } catch (const std::exception& e) {
      spdlog::error("metrics: http server stopped: {}", e.what());
    }
  });
  spdlog::info("metrics: serving /metrics on port {}", impl->port);
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::~HttpServer() {
  // Abandons the pending accept or connection; the io_context destroys them (closing the
  // sockets) when impl_ is destroyed, after the thread has left run().
  impl_->ioc.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int HttpServer::port() const { return impl_->port; }

}  // namespace beds::metrics
