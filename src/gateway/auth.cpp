#include "gateway/auth.hpp"

#include <openssl/sha.h>

#include "core/permissions.hpp"

namespace beds::gateway {
namespace {

std::array<unsigned char, 32> Digest(std::string_view token) {
  std::array<unsigned char, 32> d{};
  SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), d.data());
  return d;
}

std::unexpected<Refusal> Unauthenticated(std::string message) {
  return std::unexpected(Refusal{401, Error{Code::kUnauthenticated, std::move(message)}, {}});
}

}  // namespace

Auth::Auth(const config::GatewayAuthSettings& settings)
    : enabled_(settings.required || !settings.principals.empty()) {
  for (const auto& p : settings.principals) by_digest_.emplace(Digest(p.token), p);
}

std::expected<const config::GatewayPrincipal*, Refusal> Auth::Authenticate(
    std::string_view authorization, std::string_view api_key) const {
  std::string_view token = api_key;
  if (token.empty() && !authorization.empty()) {
    constexpr std::string_view kBearer = "Bearer ";
    if (!authorization.starts_with(kBearer)) {
      return Unauthenticated("the Authorization header must be \"Bearer {token}\"");
    }
    token = authorization.substr(kBearer.size());
  }
  if (token.empty()) {
    return Unauthenticated(
        "credentials needed: send \"Authorization: Bearer {token}\" or \"X-Api-Key: {token}\"");
  }
  auto it = by_digest_.find(Digest(token));
  if (it == by_digest_.end()) return Unauthenticated("unknown token");
  return &it->second;
}

std::expected<void, Refusal> Auth::Authorize(const config::GatewayPrincipal& principal,
                                             std::string_view permission) {
  if (Allows(principal.allow, permission)) return {};
  return std::unexpected(
      Refusal{403,
              Error{Code::kForbidden, "principal '" + principal.name + "' may not call " +
                                          std::string(permission) + " ([gateway.auth.principals." +
                                          principal.name + "] allow)"},
              {}});
}

}  // namespace beds::gateway
