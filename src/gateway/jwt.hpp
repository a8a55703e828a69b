// JWT bearer tokens for the gateway (docs/gateway.md "JWT"): HS256 with a shared secret or RS256
// with the issuer's public key, through OpenSSL. A valid token names its principal (`sub`) and
// carries the template/op patterns it may call in a claim ([gateway.auth.jwt] allow_claim).
#pragma once

#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/error.hpp"

namespace beds::gateway {

struct JwtPrincipal {
  std::string subject;
  std::vector<std::string> allow;
};

class JwtVerifier {
 public:
  // UNAVAILABLE when the public key file cannot be read or is not a PEM public key.
  static Result<std::unique_ptr<JwtVerifier>> Make(const config::GatewayJwtSettings& settings);
  ~JwtVerifier();

  // Whether `token` looks like a JWT (three dot-separated parts) rather than an API key.
  static bool LooksLikeJwt(std::string_view token);

  // The principal of a valid token at `now_s` (Unix seconds); UNAUTHENTICATED saying why not
  // (malformed, an algorithm other than the configured one, a bad signature, expired, not yet
  // valid, the wrong issuer or audience, no subject).
  Result<JwtPrincipal> Verify(std::string_view token, int64_t now_s) const;

 private:
  struct Impl;
  explicit JwtVerifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace beds::gateway
