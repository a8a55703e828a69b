// Event lineage (docs/protocol.md "Lineage"): every event is `{node}.{env}.{guid}` where guid is
// the 32 lowercase hex digits of a UUIDv7, and carries its parent's id and its depth below the
// root. All functions are thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/clock.hpp"  // NowUnixMs, which most users of lineage want too

namespace beds {

struct Lineage {
  std::string event_id;
  std::string parent_id;  // "" for a root event
  int depth = 0;          // 0 for a root event
};

// 32 lowercase hex digits of a fresh UUIDv7: 48 bits of Unix milliseconds, then version and
// variant bits, then a per-process counter and random bits, so ids sort by creation time and
// never repeat within a process even inside one millisecond.
std::string NewGuid();

// `{node}.{env}.{guid}` with a fresh guid.
std::string NewEventId(std::string_view node, std::string_view env);

// True when `id` has the event-id form: two non-empty dot-free labels of [a-z0-9_-] and a guid.
bool IsEventId(std::string_view id);

// The lineage of a new root event.
Lineage RootLineage(std::string_view node, std::string_view env);

// The lineage of an event caused by `parent`: a fresh id, parent_id = parent's id, depth + 1.
Lineage ChildLineage(const Lineage& parent, std::string_view node, std::string_view env);

}  // namespace beds
