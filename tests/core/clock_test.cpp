#include "core/clock.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace beds {
namespace {

TEST(Clock, IsoTimesInUtcWithTheirPrecision) {
  EXPECT_EQ(IsoTimeMs(1764006440123), "2025-11-24T17:47:20.123Z");
  EXPECT_EQ(IsoTimeUs(1764006440123456), "2025-11-24T17:47:20.123456Z");
  EXPECT_EQ(IsoTimeMs(0), "1970-01-01T00:00:00.000Z");
  // Before the epoch the fraction still counts forward from the whole second before.
  EXPECT_EQ(IsoTimeMs(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(IsoTimeUs(-1), "1969-12-31T23:59:59.999999Z");
  // The per-thread cache of the seconds' text is keyed by the second, not by the unit.
  EXPECT_EQ(IsoTimeMs(1764006441000), "2025-11-24T17:47:21.000Z");
  EXPECT_EQ(IsoTimeUs(1764006441000001), "2025-11-24T17:47:21.000001Z");
}

TEST(Clock, NowAgreesWithItself) {
  const int64_t ms = NowUnixMs();
  const int64_t us = NowUnixUs();
  EXPECT_GE(us / 1000, ms);
  EXPECT_LT(us / 1000 - ms, 1000);
}

TEST(Clock, SleepUnlessStoppedSleepsOutItsDelay) {
  std::stop_source source;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(SleepUnlessStopped(source.get_token(), std::chrono::milliseconds(20)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(20));
}

TEST(Clock, SleepUnlessStoppedEndsWhenStopped) {
  std::stop_source source;
  std::jthread stopper([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    source.request_stop();
  });
  const auto start = std::chrono::steady_clock::now();
  // An hour, cut short by the stop: a node must not wait out a backoff to shut down.
  EXPECT_FALSE(SleepUnlessStopped(source.get_token(), std::chrono::hours(1)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
  // Already stopped: no wait at all.
  EXPECT_FALSE(SleepUnlessStopped(source.get_token(), std::chrono::hours(1)));
}

}  // namespace
}  // namespace beds
