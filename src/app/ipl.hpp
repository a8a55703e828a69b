// IPL steps that are not a part's own Start(): pre-flight reachability and the topology check.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::app {

struct Endpoint {
  std::string what;  // "AMQP broker app_server", "database main (master)", …
  std::string host;
  int port = 0;
  std::string socket;  // unix socket path instead of host/port
};

// Every server the configuration names: the AMQP broker, each MariaDB master and secondary,
// each MongoDB host. SQLite has no server.
std::vector<Endpoint> ConfiguredEndpoints(const config::Config& config);

// IPL step 3: can a TCP (or unix socket) connection be opened within `timeout_ms`?
Result<void> Preflight(const Endpoint& endpoint, int timeout_ms);

// IPL step 4: log in and declare the exchanges and every broker's queues.
Result<void> DeclareTopology(const config::Config& config);

}  // namespace beds::app
