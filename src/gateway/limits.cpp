#include "gateway/limits.hpp"

#include <cmath>

namespace beds::gateway {

RateLimiter::RateLimiter(const config::GatewayAuthSettings& settings) {
  for (const auto& p : settings.principals) {
    if (p.rate_per_s <= 0) continue;
    Bucket b;
    b.rate = static_cast<double>(p.rate_per_s);
    b.burst = static_cast<double>(p.burst > 0 ? p.burst : p.rate_per_s);
    b.tokens = b.burst;
    buckets_.emplace(p.name, b);
  }
}

std::optional<int64_t> RateLimiter::Take(const std::string& principal,
                                         std::chrono::steady_clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = buckets_.find(principal);
  if (it == buckets_.end()) return std::nullopt;
  Bucket& b = it->second;
  if (b.started) {
    const double elapsed = std::chrono::duration<double>(now - b.last).count();
    if (elapsed > 0) b.tokens = std::min(b.burst, b.tokens + elapsed * b.rate);
  }
  b.started = true;
  b.last = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return std::nullopt;
  }
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1 - b.tokens) / b.rate)));
}

}  // namespace beds::gateway
