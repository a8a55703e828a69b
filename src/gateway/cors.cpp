#include "gateway/cors.hpp"

#include <algorithm>

namespace beds::gateway {

bool OriginAllowed(const std::vector<std::string>& allowed, std::string_view origin) {
  if (origin.empty()) return false;
  return std::any_of(allowed.begin(), allowed.end(),
                     [&](const std::string& a) { return a == "*" || a == origin; });
}

HeaderList CorsHeaders(std::string_view origin) {
  // The origin itself rather than "*": answers vary by credentials, and caches must keep
  // origins apart.
  return {{"Access-Control-Allow-Origin", std::string(origin)},
          {"Vary", "Origin"},
          {"Access-Control-Expose-Headers", "X-Beds-Event-Id, Location, Retry-After"}};
}

HeaderList PreflightHeaders(std::string_view origin) {
  HeaderList h = CorsHeaders(origin);
  h.emplace_back("Access-Control-Allow-Methods", "GET, POST, PATCH, DELETE");
  h.emplace_back("Access-Control-Allow-Headers",
                 "Authorization, Content-Type, Idempotency-Key, Prefer, X-Api-Key, "
                 "X-Beds-Parent, X-Beds-Parent-Depth, X-Beds-Deadline-Ms");
  h.emplace_back("Access-Control-Max-Age", "600");
  return h;
}

}  // namespace beds::gateway
