// Who calls the gateway, and what they may call (docs/gateway.md "Authentication"). A principal
// presents its token as `Authorization: Bearer {token}` or `X-Api-Key: {token}`; its `allow`
// patterns ("Users/*", "*/fetch", "Users/call:get", "calgon/*", "*") say which template/op pairs
// it may use. Checked before anything is published.
#pragma once

#include <array>
#include <expected>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "gateway/jwt.hpp"
#include "gateway/rest.hpp"

namespace beds::gateway {

// Who is calling: an API-key principal or a JWT's subject, with what it may call.
struct Caller {
  std::string name;
  std::vector<std::string> allow;
};

class Auth {
 public:
  // UNAVAILABLE when the JWT public key cannot be read.
  static Result<std::unique_ptr<Auth>> Make(const config::GatewayAuthSettings& settings);
  ~Auth();

  // Whether requests need credentials: auth.required, a principal or JWT configured.
  bool enabled() const { return enabled_; }

  // The caller presenting these headers (values "" when absent) at `now_s` (Unix seconds), or
  // 401 UNAUTHENTICATED: no credentials, a token no principal has, or a JWT that fails.
  std::expected<Caller, Refusal> Authenticate(std::string_view authorization,
                                              std::string_view api_key, int64_t now_s) const;

  // 403 FORBIDDEN unless one of the caller's patterns covers `permission` ("Users/fetch").
  static std::expected<void, Refusal> Authorize(const Caller& caller, std::string_view permission);

 private:
  explicit Auth(const config::GatewayAuthSettings& settings);
  bool enabled_ = false;
  // By the SHA-256 of the token: a lookup that takes the same time whatever the token shares
  // with a real one.
  std::map<std::array<unsigned char, 32>, config::GatewayPrincipal> by_digest_;
  std::unique_ptr<JwtVerifier> jwt_;  // null: JWTs are not taken
};

}  // namespace beds::gateway
