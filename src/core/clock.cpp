#include "core/clock.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>

namespace beds {
namespace {

// The seconds' "2026-11-24T17:07:20", then `fraction` (< 10^digits) with `digits` digits. Every
// log event and document date is stamped, so the date and time of day are formatted once a
// second per thread.
std::string Iso(int64_t secs, int64_t fraction, int digits) {
  thread_local int64_t cached_secs = INT64_MIN;
  thread_local char cached[24];
  thread_local size_t cached_len = 0;
  if (secs != cached_secs) {
    const auto t = static_cast<std::time_t>(secs);
    std::tm tm{};
    gmtime_r(&t, &tm);
    cached_len = std::strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
    cached_secs = secs;
  }
  char buf[48];
  std::memcpy(buf, cached, cached_len);
  std::snprintf(buf + cached_len, sizeof buf - cached_len, ".%0*lldZ", digits,
                static_cast<long long>(fraction));
  return buf;
}

// Whole units and the remainder, rounded towards the past (so -1 µs is 23:59:59.999999).
std::string Split(int64_t value, int64_t per_second, int digits) {
  int64_t secs = value / per_second;
  int64_t rest = value % per_second;
  if (rest < 0) {
    rest += per_second;
    --secs;
  }
  return Iso(secs, rest, digits);
}

}  // namespace

int64_t NowUnixMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

int64_t NowUnixUs() {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string IsoTimeMs(int64_t unix_ms) { return Split(unix_ms, 1000, 3); }

std::string IsoTimeUs(int64_t unix_us) { return Split(unix_us, 1000000, 6); }

bool SleepUnlessStopped(std::stop_token stop, std::chrono::milliseconds delay) {
  std::mutex m;
  std::condition_variable_any cv;
  std::unique_lock lock(m);
  cv.wait_for(lock, stop, delay, [] { return false; });
  return !stop.stop_requested();
}

Clock& SteadyClock() {
  class Steady final : public Clock {
   public:
    std::chrono::steady_clock::time_point Now() const override {
      return std::chrono::steady_clock::now();
    }
    bool Sleep(std::stop_token stop, std::chrono::milliseconds delay) override {
      return SleepUnlessStopped(stop, delay);
    }
  };
  static Steady clock;
  return clock;
}

}  // namespace beds
