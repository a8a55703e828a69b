// The log store (ARCHITECTURE.md "logs"): events kept in the REC template named by
// [logging] store_template (templates/mst_logger_rec.toml, collection msLogs), one document per
// event keyed by its event id. The admin node's `logs` handler writes batches through it; the
// `lineage/fetch` system op reads an event's tree from it. Both go through NamasteCore, so the
// store runs on whichever REC engine the template's database uses. Pure functions over the core
// they are given (one worker's); callable from any thread with its own core.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/namaste.hpp"
#include "core/template.hpp"
#include "logs/logs.hpp"

namespace beds::logs {

// The event as a create payload of the store template, validated against it (a message longer
// than the template allows is cut, not refused). VALIDATION when the event cannot be stored.
Result<Payload> ToStorePayload(const Template& store, const LogEvent& event);

// Stores the payloads; an event already stored (a redelivery) is skipped. Returns how many were
// new.
Result<int64_t> StoreEvents(NamasteCore& core, const Template& store,
                            const std::vector<Payload>& payloads);

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
