// Time: wall-clock time as BEDS writes it everywhere (Unix time, and ISO 8601 in UTC), the one
// stop-aware sleep, and the Clock the broker workers wait on. All functions are thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <stop_token>
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

// Waits `delay` unless a stop is requested first (then returns at once, false): every loop that
// pauses between attempts waits here, so a node stops without waiting out a backoff.
bool SleepUnlessStopped(std::stop_token stop, std::chrono::milliseconds delay);

// Monotonic time and waiting, as a broker worker sees them: the real clock, or in unit tests a
// fake that records each wait and returns at once.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual std::chrono::steady_clock::time_point Now() const = 0;
  // SleepUnlessStopped on this clock.
  virtual bool Sleep(std::stop_token stop, std::chrono::milliseconds delay) = 0;
};

// The process's real clock (steady_clock and SleepUnlessStopped).
Clock& SteadyClock();

}  // namespace beds
