#include "gateway/auth.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <boost/json.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace beds::gateway {
namespace {

namespace json = boost::json;

constexpr int64_t kNow = 1'800'000'000;
const std::string kSecret = "0123456789abcdef0123456789abcdef-hs256";

config::GatewayAuthSettings Settings() {
  config::GatewayAuthSettings s;
  s.principals.push_back({"shop", "shop-token-0123456789", {"Users/*", "Orders/call:*"}});
  s.principals.push_back({"auditor", "auditor-token-0123456789", {"*/fetch", "lineage/fetch"}});
  s.principals.push_back({"root", "root-token-0123456789", {"*"}});
  return s;
}

std::unique_ptr<Auth> Make(const config::GatewayAuthSettings& s) {
  auto auth = Auth::Make(s);
  EXPECT_TRUE(auth) << (auth ? "" : auth.error().message);
  return auth ? std::move(*auth) : nullptr;
}

std::string B64Url(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(in.data()),
                                static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

std::string Hs256(const json::object& claims, const std::string& secret = kSecret,
                  std::string_view alg = "HS256") {
  const std::string signed_part =
      B64Url(json::serialize(json::object{{"alg", alg}, {"typ", "JWT"}})) + "." +
      B64Url(json::serialize(claims));
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(signed_part.data()), signed_part.size(), mac, &len);
  return signed_part + "." + B64Url(std::string_view(reinterpret_cast<char*>(mac), len));
}

json::object Claims(int64_t exp = kNow + 60) {
  return json::object{{"sub", "web-user"},
                      {"exp", exp},
                      {"iss", "idp"},
                      {"aud", "beds"},
                      {"beds_allow", json::array{"Users/fetch"}}};
}

config::GatewayAuthSettings JwtSettings() {
  config::GatewayAuthSettings s;
  s.jwt.secret = kSecret;
  s.jwt.issuer = "idp";
  s.jwt.audience = "beds";
  return s;
}

TEST(GatewayAuth, OffWithoutPrincipalsOrJwtUnlessRequired) {
  EXPECT_FALSE(Make(config::GatewayAuthSettings{})->enabled());
  EXPECT_TRUE(Make(Settings())->enabled());
  EXPECT_TRUE(Make(JwtSettings())->enabled());
  config::GatewayAuthSettings required;
  required.required = true;
  EXPECT_TRUE(Make(required)->enabled());
}

TEST(GatewayAuth, TokensComeAsBearerOrApiKey) {
  const auto auth = Make(Settings());
  auto bearer = auth->Authenticate("Bearer shop-token-0123456789", "", kNow);
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->name, "shop");
  auto key = auth->Authenticate("", "auditor-token-0123456789", kNow);
  ASSERT_TRUE(key);
  EXPECT_EQ(key->name, "auditor");
}

TEST(GatewayAuth, MissingOrUnknownCredentialsAre401) {
  const auto auth = Make(Settings());
  for (auto [authorization, api_key] : {std::pair<std::string_view, std::string_view>{"", ""},
                                        {"Basic c2hvcDpwYXNz", ""},
                                        {"Bearer nope", ""},
                                        {"Bearer ", ""},
                                        {"", "shop-token-012345678"}}) {
    auto r = auth->Authenticate(authorization, api_key, kNow);
    ASSERT_FALSE(r) << authorization << api_key;
    EXPECT_EQ(r.error().status, 401);
    EXPECT_EQ(r.error().error.code, Code::kUnauthenticated);
  }
}

TEST(GatewayAuth, PatternsCoverTemplateAndOp) {
  const auto s = Settings();
  const Caller shop{"shop", s.principals[0].allow};
  const Caller auditor{"auditor", s.principals[1].allow};
  const Caller root{"root", s.principals[2].allow};
  EXPECT_TRUE(Auth::Authorize(shop, "Users/create"));
  EXPECT_TRUE(Auth::Authorize(shop, "Orders/call:user_summary"));
  EXPECT_FALSE(Auth::Authorize(shop, "Orders/create"));
  EXPECT_FALSE(Auth::Authorize(shop, "UsersX/create"));
  EXPECT_TRUE(Auth::Authorize(auditor, "Orders/fetch"));
  EXPECT_TRUE(Auth::Authorize(auditor, "lineage/fetch"));
  EXPECT_FALSE(Auth::Authorize(auditor, "Users/delete"));
  EXPECT_FALSE(Auth::Authorize(auditor, "calgon/poll"));
  EXPECT_TRUE(Auth::Authorize(root, "calgon/cancel"));
  const auto refused = Auth::Authorize(auditor, "Users/delete");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().status, 403);
  EXPECT_EQ(refused.error().error.code, Code::kForbidden);
  EXPECT_NE(refused.error().error.message.find("auditor"), std::string::npos);
}

TEST(GatewayJwt, AValidHs256TokenNamesItsSubjectAndPatterns) {
  const auto auth = Make(JwtSettings());
  auto caller = auth->Authenticate("Bearer " + Hs256(Claims()), "", kNow);
  ASSERT_TRUE(caller) << caller.error().error.message;
  EXPECT_EQ(caller->name, "web-user");
  EXPECT_TRUE(Auth::Authorize(*caller, "Users/fetch"));
  EXPECT_FALSE(Auth::Authorize(*caller, "Users/delete"));
}

TEST(GatewayJwt, BadTokensAre401SayingWhy) {
  const auto auth = Make(JwtSettings());
  auto why = [&](const std::string& token) {
    auto r = auth->Authenticate("Bearer " + token, "", kNow);
    EXPECT_FALSE(r) << token;
    return r ? std::string() : r.error().error.message;
  };
  EXPECT_NE(why(Hs256(Claims(kNow - 3600))).find("expired"), std::string::npos);
  EXPECT_NE(why(Hs256(Claims(), "another-secret-another-secret-0000")).find("bad signature"),
            std::string::npos);
  json::object wrong_iss = Claims();
  wrong_iss["iss"] = "someone";
  EXPECT_NE(why(Hs256(wrong_iss)).find("issuer"), std::string::npos);
  json::object wrong_aud = Claims();
  wrong_aud["aud"] = json::array{"other"};
  EXPECT_NE(why(Hs256(wrong_aud)).find("audience"), std::string::npos);
  json::object no_exp = Claims();
  no_exp.erase("exp");
  EXPECT_NE(why(Hs256(no_exp)).find("exp"), std::string::npos);
  json::object early = Claims();
  early["nbf"] = kNow + 3600;
  EXPECT_NE(why(Hs256(early)).find("nbf"), std::string::npos);
  // The token cannot choose its algorithm: "none", or RS256 where only HS256 is configured.
  std::string none = Hs256(Claims(), kSecret, "none");
  none = none.substr(0, none.rfind('.') + 1);
  EXPECT_NE(why(none).find("not configured"), std::string::npos);
  EXPECT_NE(why(Hs256(Claims(), kSecret, "RS256")).find("not configured"), std::string::npos);
  EXPECT_NE(why("a.b.c").find("malformed"), std::string::npos);
}

TEST(GatewayJwt, Rs256IsVerifiedWithThePublicKey) {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  ASSERT_NE(key, nullptr);
  const auto dir =
      std::filesystem::temp_directory_path() / ("beds-jwt-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string pub = (dir / "pub.pem").string();
  FILE* f = std::fopen(pub.c_str(), "w");
  ASSERT_NE(f, nullptr);
  PEM_write_PUBKEY(f, key);
  std::fclose(f);
  config::GatewayAuthSettings s;
  s.jwt.rs256_public_key_file = pub;
  const auto auth = Make(s);

  const std::string signed_part =
      B64Url(R"({"alg":"RS256","typ":"JWT"})") + "." + B64Url(json::serialize(Claims()));
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  size_t len = 0;
  ASSERT_EQ(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key), 1);
  ASSERT_EQ(
      EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(signed_part.data()),
                     signed_part.size()),
      1);
  std::string sig(len, '\0');
  ASSERT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                           reinterpret_cast<const unsigned char*>(signed_part.data()),
                           signed_part.size()),
            1);
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);
  const std::string token = signed_part + "." + B64Url(sig);
  auto caller = auth->Authenticate("Bearer " + token, "", kNow);
  ASSERT_TRUE(caller) << caller.error().error.message;
  EXPECT_EQ(caller->name, "web-user");
  std::string tampered = token;
  tampered[tampered.size() - 5] = tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(auth->Authenticate("Bearer " + tampered, "", kNow));
  // HS256 "signed" with the public key's text is not accepted in its place.
  std::ifstream in(pub);
  const std::string pem((std::istreambuf_iterator<char>(in)), {});
  EXPECT_FALSE(auth->Authenticate("Bearer " + Hs256(Claims(), pem), "", kNow));
  std::filesystem::remove_all(dir);

  config::GatewayAuthSettings missing;
  missing.jwt.rs256_public_key_file = (dir / "nope.pem").string();
  auto refused = Auth::Make(missing);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("cannot read"), std::string::npos);
}

}  // namespace
}  // namespace beds::gateway
