// IPL steps that are not a part's own Start(): pre-flight reachability and the topology check.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/namaste.hpp"
#include "templates/templates.hpp"

namespace beds::app {

struct Endpoint {
  std::string what;  // "AMQP broker app_server", "database main (master)", …
  std::string host;
  int port = 0;
  std::string socket;  // unix socket path instead of host/port
};

// Whether any pool of this node uses the databases (the dispatch, calgon and logs handlers). A node
// without one, such as the gateway role, never opens them: it checks only its AMQP broker, and
// reads the templates for routing (TemplateUse::kRouteOnly).
bool UsesDatabases(const config::Config& config);

// Every server the configuration names: the AMQP broker, each MariaDB master and secondary,
// each MongoDB host (SQLite has no server); only the broker when `with_databases` is false.
std::vector<Endpoint> ConfiguredEndpoints(const config::Config& config, bool with_databases = true);

// IPL step 3: can a TCP (or unix socket) connection be opened within `timeout_ms`?
Result<void> Preflight(const Endpoint& endpoint, int timeout_ms);

// IPL step 4: log in and declare the exchanges and every broker's queues.
Result<void> DeclareTopology(const config::Config& config);

// IPL step 5: every template of [templates] dir, bind-checked against the database it names.
// A template that does not parse is an error (returned); one that does not bind is listed in
// `problems` and marked unavailable in the snapshot. A database whose catalogue cannot be read
// leaves its templates unchecked (listed in `unchecked`, still available: the adapter answers
// UNAVAILABLE while the server is away). What binds but looks wrong is in `warnings`
// (templates::BindWarnings): the template serves. Each line starts "Name (file): ".
struct TemplateSet {
  std::shared_ptr<templates::Snapshot> snapshot;
  std::vector<std::string> problems;
  std::vector<std::string> unchecked;
  std::vector<std::string> warnings;
};
// With a `factory`, each REC template's collection and indexes are ensured (created when
// missing) through it, and a store that cannot do so (an unreachable server, a corrupt or
// read-only SQLite file) marks the template unavailable with the reason. Without one (the offline
// `beds template check`), REC templates are only parsed. kRouteOnly (a node whose pools use no
// database) only parses every template: no database is asked anything.
enum class TemplateUse { kServe, kRouteOnly };
Result<TemplateSet> LoadTemplates(const config::Config& config,
                                  std::shared_ptr<const CoreFactory> factory = nullptr,
                                  TemplateUse use = TemplateUse::kServe);

// The adapters of the configured databases (engines this build has), for the workers' sessions.
std::shared_ptr<CoreFactory> MakeCoreFactory(const config::Config& config);

}  // namespace beds::app
