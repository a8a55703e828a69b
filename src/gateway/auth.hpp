// Who calls the gateway, and what they may call (docs/gateway.md "Authentication"). A principal
// presents its token as `Authorization: Bearer {token}` or `X-Api-Key: {token}`; its `allow`
// patterns ("Users/*", "*/fetch", "Users/call:get", "calgon/*", "*") say which template/op pairs
// it may use. Checked before anything is published.
#pragma once

#include <array>
#include <expected>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "gateway/rest.hpp"

namespace beds::gateway {

class Auth {
 public:
  explicit Auth(const config::GatewayAuthSettings& settings);

  // Whether requests need a principal: auth.required, or any principal configured.
  bool enabled() const { return enabled_; }

  // The principal presenting these headers (values "" when absent), or 401 UNAUTHENTICATED: no
  // credentials, or a token no principal has.
  std::expected<const config::GatewayPrincipal*, Refusal> Authenticate(
      std::string_view authorization, std::string_view api_key) const;

  // 403 FORBIDDEN unless one of the principal's patterns covers `permission` ("Users/fetch").
  static std::expected<void, Refusal> Authorize(const config::GatewayPrincipal& principal,
                                                std::string_view permission);

 private:
  bool enabled_ = false;
  // By the SHA-256 of the token: a lookup that takes the same time whatever the token shares
  // with a real one.
  std::map<std::array<unsigned char, 32>, config::GatewayPrincipal> by_digest_;
};

}  // namespace beds::gateway
