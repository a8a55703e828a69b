#include "core/clock.hpp"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace beds
