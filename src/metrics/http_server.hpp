// The loopback-only HTTP endpoint Prometheus scrapes: GET /metrics answers Registry::Render().
// Started once at IPL by the app and destroyed at shutdown; its one background thread serves one
// connection at a time (Connection: close) and only reads the Registry, which must outlive it.
#pragma once

#include <memory>
#include <string>

#include "core/error.hpp"
#include "metrics/metrics.hpp"

namespace beds::metrics {

class HttpServer {
 public:
  // GET /metrics -> 200 with Content-Type "text/plain; version=0.0.4; charset=utf-8"; any other
  // path -> 404; /metrics with another method -> 405; a malformed request -> 400. A request must
  // arrive within 2 s of connecting (and its answer be taken within 2 s) or the connection is
  // dropped, so an idle client cannot stall the endpoint for long.
  // listen is "127.0.0.1:9464", "[::1]:9464" or "localhost:9464"; port 0 picks a free port.
  // Errors: kValidation for a malformed or non-loopback address (metrics are loopback-only by
  // design), kUnavailable when the address cannot be bound (e.g. the port is taken).
  [[nodiscard]] static Result<std::unique_ptr<HttpServer>> Start(const std::string& listen,
                                                                 const Registry& registry);

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Stops at once: abandons any connection in progress, closes the socket, joins the thread.
  ~HttpServer();

  int port() const;  // the bound port

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);

  std::unique_ptr<Impl> impl_;
};

}  // namespace beds::metrics
