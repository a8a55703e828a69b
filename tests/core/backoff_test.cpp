#include "core/backoff.hpp"

#include <gtest/gtest.h>

namespace beds {
namespace {

using std::chrono::milliseconds;

TEST(Backoff, DoublesUpToItsMaximumAndStartsAgainAfterReset) {
  Backoff b(milliseconds(100), milliseconds(500));
  EXPECT_EQ(b.Peek(), milliseconds(100));
  EXPECT_EQ(b.Next(), milliseconds(100));
  EXPECT_EQ(b.Next(), milliseconds(200));
  EXPECT_EQ(b.Next(), milliseconds(400));
  EXPECT_EQ(b.Next(), milliseconds(500));
  EXPECT_EQ(b.Next(), milliseconds(500));
  b.Reset();
  EXPECT_EQ(b.Next(), milliseconds(100));
}

}  // namespace
}  // namespace beds
