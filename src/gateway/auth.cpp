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
    : enabled_(settings.required || !settings.principals.empty() || settings.jwt.enabled()) {
  for (const auto& p : settings.principals) by_digest_.emplace(Digest(p.token), p);
}

Auth::~Auth() = default;

Result<std::unique_ptr<Auth>> Auth::Make(const config::GatewayAuthSettings& settings) {
  std::unique_ptr<Auth> auth(new Auth(settings));
  if (settings.jwt.enabled()) {
    auto jwt = JwtVerifier::Make(settings.jwt);
    if (!jwt) return std::unexpected(jwt.error());
    auth->jwt_ = std::move(*jwt);
  }
  return auth;
}

std::expected<Caller, Refusal> Auth::Authenticate(std::string_view authorization,
                                                  std::string_view api_key, int64_t now_s) const {
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
  if (jwt_ && JwtVerifier::LooksLikeJwt(token)) {
    auto verified = jwt_->Verify(token, now_s);
    if (!verified) return Unauthenticated(verified.error().message);
    return Caller{std::move(verified->subject), std::move(verified->allow)};
  }
  auto it = by_digest_.find(Digest(token));
  if (it == by_digest_.end()) return Unauthenticated("unknown token");
  return Caller{it->second.name, it->second.allow};
}

std::expected<void, Refusal> Auth::Authorize(const Caller& caller, std::string_view permission) {
  if (Allows(caller.allow, permission)) return {};
  return std::unexpected(
      Refusal{403,
              Error{Code::kForbidden, "principal '" + caller.name + "' may not call " +
                                          std::string(permission) + " (its allow patterns)"},
              {}});
}

}  // namespace beds::gateway
