// The embedded REC engine: documents in a SQLite file (libsqlite3), no server to run.
//
// One table per collection, `(id PRIMARY KEY, doc TEXT)`, the document held as JSON in client
// form; declared indexes become expression indexes on json_extract(doc, '$.field'), and filters
// and order use the very same expressions with bound values, so the indexes serve them.
// The file is in WAL mode and shared safely by every worker of every `beds` process on the
// machine: each worker has its own connection; writes take the write lock up front
// (BEGIN IMMEDIATE) and wait for it up to the request's deadline or query_timeout_ms, so a
// client never sees "database is locked" — at worst UNAVAILABLE, retryable. One process's
// concurrent writes share a transaction and its commit (group commit, each write in a savepoint
// of its own), so a durable commit's fsync is paid once per group, not once per write.
// TTL indexes are honoured by a sweep every sweep_interval_s (a document may outlive its expiry
// by up to that long, as with MongoDB's own TTL monitor).
#pragma once

#include <memory>

#include "config/config.hpp"
#include "core/namaste.hpp"

namespace beds::adapters::sqlite {

class Store;

// One configured database: what its workers share (the file's settings, the TTL sweeper).
// Opening never fails; a file that cannot be used is reported, naming it, by each operation and
// by Prepare at IPL.
std::shared_ptr<Store> OpenStore(const config::DatabaseSettings& settings);

// A worker's adapter over the store (its own connection, opened on first use).
std::unique_ptr<NamasteCore> MakeCore(const std::shared_ptr<Store>& store);

// The library's version, for `beds version`.
std::string LibraryVersion();

}  // namespace beds::adapters::sqlite
