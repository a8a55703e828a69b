// Per-principal rate limits of the gateway (docs/gateway.md "Rate limits"): a token bucket per
// principal with `rate_per_s` > 0, refilled continuously, holding at most `burst` tokens. A
// request takes one token; with none left it is answered 429 with Retry-After.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "config/config.hpp"

namespace beds::gateway {

class RateLimiter {
 public:
  explicit RateLimiter(const config::GatewayAuthSettings& settings);

  // Takes a token of `principal`'s bucket at `now`: nullopt when it had one (or the principal
  // has no limit), else the seconds until it will have one (at least 1), for Retry-After.
  // Thread-safe.
  std::optional<int64_t> Take(const std::string& principal,
                              std::chrono::steady_clock::time_point now);

 private:
  struct Bucket {
    double rate = 0;   // tokens per second
    double burst = 0;  // the most it holds
    double tokens = 0;
    std::chrono::steady_clock::time_point last{};
    bool started = false;
  };
  std::mutex mutex_;
  std::map<std::string, Bucket, std::less<>> buckets_;  // guarded by mutex_
};

}  // namespace beds::gateway
