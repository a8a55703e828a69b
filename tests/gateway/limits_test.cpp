#include "gateway/limits.hpp"

#include <gtest/gtest.h>

#include "gateway/cors.hpp"

namespace beds::gateway {
namespace {

using namespace std::chrono_literals;

config::GatewayAuthSettings Settings() {
  config::GatewayAuthSettings s;
  config::GatewayPrincipal limited{"limited", "limited-token-0123456789", {"*"}};
  limited.rate_per_s = 2;
  limited.burst = 3;
  s.principals.push_back(limited);
  s.principals.push_back({"free", "free-token-0123456789", {"*"}});
  return s;
}

TEST(GatewayRateLimit, ABucketEmptiesAndRefills) {
  RateLimiter limiter(Settings());
  const auto t0 = std::chrono::steady_clock::time_point{} + 100s;
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(limiter.Take("limited", t0)) << i;  // the burst
  const auto wait = limiter.Take("limited", t0);
  ASSERT_TRUE(wait);
  EXPECT_EQ(*wait, 1);  // half a second to the next token, said as 1 s
  EXPECT_TRUE(limiter.Take("limited", t0 + 100ms));
  EXPECT_FALSE(limiter.Take("limited", t0 + 600ms));  // 2/s: one token back after 0.5 s
  EXPECT_TRUE(limiter.Take("limited", t0 + 650ms));
  // After a long quiet spell the bucket is full again, never more than burst.
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(limiter.Take("limited", t0 + 60s)) << i;
  EXPECT_TRUE(limiter.Take("limited", t0 + 60s));
}

TEST(GatewayRateLimit, PrincipalsWithoutALimitAreNeverStopped) {
  RateLimiter limiter(Settings());
  const auto t0 = std::chrono::steady_clock::time_point{} + 1s;
  for (int i = 0; i < 1000; ++i) ASSERT_FALSE(limiter.Take("free", t0));
  EXPECT_FALSE(limiter.Take("unknown", t0));
}

TEST(GatewayCors, OnlyListedOriginsAreAllowed) {
  EXPECT_TRUE(OriginAllowed({"https://shop.example.org"}, "https://shop.example.org"));
  EXPECT_FALSE(OriginAllowed({"https://shop.example.org"}, "https://evil.example.org"));
  EXPECT_FALSE(OriginAllowed({}, "https://shop.example.org"));
  EXPECT_TRUE(OriginAllowed({"*"}, "http://localhost:3000"));
  EXPECT_FALSE(OriginAllowed({"*"}, ""));  // not a cross-origin request
  const HeaderList h = PreflightHeaders("https://shop.example.org");
  bool origin = false, methods = false;
  for (const auto& [name, value] : h) {
    origin |= name == "Access-Control-Allow-Origin" && value == "https://shop.example.org";
    methods |= name == "Access-Control-Allow-Methods" && value.find("PATCH") != std::string::npos;
  }
  EXPECT_TRUE(origin);
  EXPECT_TRUE(methods);
}

}  // namespace
}  // namespace beds::gateway
