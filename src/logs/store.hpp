// The log store (docs/architecture.md, src/logs): events kept in the REC template named by
// [logging] store_template (templates/mst_logger_rec.toml, collection msLogs), one document per
// event keyed by its event id. The admin node's `logs` handler writes batches through it; the
// `lineage/fetch` system op reads an event's tree from it. Both go through NamasteCore, so the
// store runs on whichever REC engine the template's database uses. Pure functions over the core
// they are given (one worker's); callable from any thread with its own core.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/namaste.hpp"
#include "core/template.hpp"
#include "logs/logs.hpp"

namespace beds::logs {

// One event made ready for the store. When the template has the shipped one's field types (the
// admin node stores every event, so this is its common case) it is the document itself, in the
// store's client form, built straight from the event; otherwise a create payload validated
// against the template.
struct StoreItem {
  boost::json::object document;  // when there is no payload
  std::optional<Payload> payload;
};

// A message longer than the template allows is cut, not refused. VALIDATION when the event cannot
// be stored.
Result<StoreItem> ToStoreItem(const Template& store, const LogEvent& event);

// Stores the items; an event already stored (a redelivery) is skipped. Returns how many were new.
Result<int64_t> StoreEvents(NamasteCore& core, const Template& store, std::vector<StoreItem> items);

struct TreeLimits {
  int max_depth = 32;     // levels below the root
  int max_events = 5000;  // events in the whole tree, the root included
};

// The event and all its descendants: {"root": {...event, "children": [...]}, "events": n,
// "truncated": bool, "truncated_reason"?}. Children are ordered by time. NOT_FOUND when the event
// is not in the store (yet: events arrive asynchronously).
Result<boost::json::object> FetchTree(NamasteCore& core, const Template& store,
                                      const std::string& event_id, const TreeLimits& limits,
                                      int64_t deadline_ms);

}  // namespace beds::logs
