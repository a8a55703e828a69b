#include "gateway/jwt.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <boost/json.hpp>
#include <fstream>
#include <sstream>

namespace beds::gateway {
namespace {

namespace json = boost::json;

// Clocks of issuer and gateway may disagree by this much.
constexpr int64_t kLeewayS = 30;

std::unexpected<Error> Refuse(std::string why) {
  return std::unexpected(Error{Code::kUnauthenticated, "bearer token refused: " + why});
}

// base64url without padding, as JWTs write it; nullopt for anything else.
std::optional<std::string> Base64UrlDecode(std::string_view in) {
  std::string b64(in);
  for (char& c : b64) {
    if (c == '-') {
      c = '+';
    } else if (c == '_') {
      c = '/';
    } else if (!std::isalnum(static_cast<unsigned char>(c))) {
      return std::nullopt;
    }
  }
  while (b64.size() % 4 != 0) b64 += '=';
  std::string out(b64.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(b64.data()),
                                static_cast<int>(b64.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding's zero bytes too.
  size_t pad = 0;
  for (size_t i = b64.size(); i > 0 && b64[i - 1] == '='; --i) ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::optional<json::object> JsonPart(std::string_view part) {
  auto text = Base64UrlDecode(part);
  if (!text) return std::nullopt;
  std::error_code ec;
  json::value v = json::parse(*text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::optional<int64_t> IntClaim(const json::object& claims, std::string_view name) {
  const json::value* v = claims.if_contains(name);
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->get_double());
  return std::nullopt;
}

}  // namespace

struct JwtVerifier::Impl {
  config::GatewayJwtSettings settings;
  EVP_PKEY* public_key = nullptr;  // RS256
  ~Impl() {
    if (public_key) EVP_PKEY_free(public_key);
  }
};

JwtVerifier::JwtVerifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JwtVerifier::~JwtVerifier() = default;

Result<std::unique_ptr<JwtVerifier>> JwtVerifier::Make(const config::GatewayJwtSettings& s) {
  auto impl = std::make_unique<Impl>();
  impl->settings = s;
  if (!s.rs256_public_key_file.empty()) {
    std::ifstream in(s.rs256_public_key_file);
    std::stringstream pem;
    pem << in.rdbuf();
    if (!in) {
      return Fail(Code::kUnavailable,
                  "gateway.auth.jwt.rs256_public_key_file: cannot read " + s.rs256_public_key_file);
    }
    const std::string text = pem.str();
    BIO* bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
    impl->public_key = bio ? PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr) : nullptr;
    if (bio) BIO_free(bio);
    if (!impl->public_key) {
      return Fail(Code::kUnavailable,
                  "gateway.auth.jwt.rs256_public_key_file: " + s.rs256_public_key_file +
                      " is not a PEM public key (BEGIN PUBLIC KEY)");
    }
  }
  return std::unique_ptr<JwtVerifier>(new JwtVerifier(std::move(impl)));
}

bool JwtVerifier::LooksLikeJwt(std::string_view token) {
  const size_t first = token.find('.');
  return first != std::string_view::npos && token.find('.', first + 1) != std::string_view::npos;
}

Result<JwtPrincipal> JwtVerifier::Verify(std::string_view token, int64_t now_s) const {
  const config::GatewayJwtSettings& s = impl_->settings;
  const size_t a = token.find('.');
  const size_t b = a == std::string_view::npos ? a : token.find('.', a + 1);
  if (b == std::string_view::npos || token.find('.', b + 1) != std::string_view::npos) {
    return Refuse("not a JWT (header.payload.signature)");
  }
  const std::string_view signed_part = token.substr(0, b);
  auto header = JsonPart(token.substr(0, a));
  auto claims = JsonPart(token.substr(a + 1, b - a - 1));
  auto signature = Base64UrlDecode(token.substr(b + 1));
  if (!header || !claims || !signature) return Refuse("malformed");
  const json::value* alg = header->if_contains("alg");
  const std::string_view algorithm =
      alg && alg->is_string() ? std::string_view(alg->get_string()) : std::string_view();

  // The algorithm is the configuration's, never the token's choice ("none", or HS256 signed
  // with the RS256 public key as its secret).
  if (algorithm == "HS256" && !s.secret.empty()) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    HMAC(EVP_sha256(), s.secret.data(), static_cast<int>(s.secret.size()),
         reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac,
         &mac_len);
    if (signature->size() != mac_len || CRYPTO_memcmp(signature->data(), mac, mac_len) != 0) {
      return Refuse("bad signature");
    }
  } else if (algorithm == "RS256" && impl_->public_key) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    const bool good =
        ctx && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, impl_->public_key) == 1 &&
        EVP_DigestVerify(
            ctx, reinterpret_cast<const unsigned char*>(signature->data()), signature->size(),
            reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size()) == 1;
    if (ctx) EVP_MD_CTX_free(ctx);
    if (!good) return Refuse("bad signature");
  } else {
    return Refuse("algorithm '" + std::string(algorithm) +
                  "' is not configured ([gateway.auth.jwt] secret for HS256, "
                  "rs256_public_key_file for RS256)");
  }

  auto exp = IntClaim(*claims, "exp");
  if (!exp) return Refuse("no exp claim");
  if (now_s > *exp + kLeewayS) return Refuse("expired");
  if (auto nbf = IntClaim(*claims, "nbf"); nbf && now_s + kLeewayS < *nbf) {
    return Refuse("not valid yet (nbf)");
  }
  if (!s.issuer.empty()) {
    const json::value* iss = claims->if_contains("iss");
    if (!iss || !iss->is_string() || iss->get_string() != s.issuer) return Refuse("wrong issuer");
  }
  if (!s.audience.empty()) {
    const json::value* aud = claims->if_contains("aud");
    bool match = aud && aud->is_string() && aud->get_string() == s.audience;
    if (aud && aud->is_array()) {
      for (const auto& v : aud->get_array()) match |= v.is_string() && v.get_string() == s.audience;
    }
    if (!match) return Refuse("wrong audience");
  }
  JwtPrincipal p;
  const json::value* sub = claims->if_contains("sub");
  if (!sub || !sub->is_string() || sub->get_string().empty()) return Refuse("no sub claim");
  p.subject = sub->get_string();
  if (const json::value* allow = claims->if_contains(s.allow_claim); allow && allow->is_array()) {
    for (const auto& v : allow->get_array()) {
      if (v.is_string()) p.allow.emplace_back(v.get_string());
    }
  }
  return p;
}

}  // namespace beds::gateway
