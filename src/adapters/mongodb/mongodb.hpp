// The MongoDB REC engine (libmongoc + libbson).
//
// A document is stored with the template's key as `_id` and every other declared field under its
// own name, typed natively: datetimes as BSON dates (so TTL indexes work), decimals as Decimal128,
// bytes as binary, json as embedded documents. Replies convert back to client form: no ObjectId
// or BSON date ever reaches a client.
// Filters are built only from declared fields, each value under an explicit operator
// (`{"f": {"$eq": v}}`), so a value can never be read as an operator.
// Collections and indexes (TTL included) are ensured at IPL and never dropped. Writes use the
// configured write concern (default majority). Server selection and network failures are
// UNAVAILABLE; a write whose connection broke is reported as of unknown outcome.
#pragma once

#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/namaste.hpp"

namespace beds::adapters::mongodb {

class Store;

// The client pool of one configured database, sized to `pool_size` (the node's broker
// instances). A bad URI is reported by every operation (and at IPL by Prepare).
std::shared_ptr<Store> OpenStore(const config::DatabaseSettings& settings, int pool_size);

// A worker's adapter: it takes a client from the pool for each operation.
std::unique_ptr<NamasteCore> MakeCore(const std::shared_ptr<Store>& store);

// The driver's version, for `beds version`.
std::string DriverVersion();

}  // namespace beds::adapters::mongodb
