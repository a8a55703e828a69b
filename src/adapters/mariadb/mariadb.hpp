// The REL adapter: NamasteCore over MariaDB Connector/C. It only ever calls the DBA's objects that
// a template names: `CALL proc(?, …)` for writes and calls, `SELECT * FROM view WHERE … ORDER BY …
// LIMIT ? OFFSET ?` for fetch and count, always server-side prepared (once per connection, then
// reused) with bound values. Identifiers come from validated templates, never from clients.
//
// One instance = one worker's connections: the master, and a secondary for reads when configured
// (falling back to the master while it is down). Not thread-safe; each worker makes its own.
// A lost connection is reopened; a request waits up to reconnect_wait_ms (or its deadline) for
// the server to return before it is answered UNAVAILABLE. A write whose connection broke while it
// ran is never resent: its outcome is unknown, and the client is told so.
#pragma once

#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/error.hpp"
#include "core/namaste.hpp"
#include "core/template.hpp"

namespace beds::adapters::mariadb {

std::unique_ptr<NamasteCore> MakeCore(const config::DatabaseSettings& settings);

// The procedures (with their parameters) and views (with their columns) of the configured
// database, from information_schema, over a connection of its own.
Result<Schema> ReadSchema(const config::DatabaseSettings& settings);

// The client library's version, for `beds version`.
std::string ClientVersion();

}  // namespace beds::adapters::mariadb
