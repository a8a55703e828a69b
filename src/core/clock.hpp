// Wall-clock time as BEDS writes it everywhere: Unix time, and ISO 8601 in UTC. All functions
// are thread-safe.
#pragma once

#include <cstdint>
#include <string>

namespace beds {

// Unix time in milliseconds (system clock); the unit of deadline_ms.
int64_t NowUnixMs();
// Unix time in microseconds (system clock); the unit of log events' `ts`.
int64_t NowUnixUs();

// "2026-11-24T17:07:20.123Z": the client form of a datetime (REC documents, CALGON tickets).
std::string IsoTimeMs(int64_t unix_ms);
// "2026-11-24T17:07:20.123456Z": log events' `ts`.
std::string IsoTimeUs(int64_t unix_us);

}  // namespace beds
