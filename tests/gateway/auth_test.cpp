#include "gateway/auth.hpp"

#include <gtest/gtest.h>

namespace beds::gateway {
namespace {

config::GatewayAuthSettings Settings() {
  config::GatewayAuthSettings s;
  s.principals.push_back({"shop", "shop-token-0123456789", {"Users/*", "Orders/call:*"}});
  s.principals.push_back({"auditor", "auditor-token-0123456789", {"*/fetch", "lineage/fetch"}});
  s.principals.push_back({"root", "root-token-0123456789", {"*"}});
  return s;
}

TEST(GatewayAuth, OffWithoutPrincipalsUnlessRequired) {
  EXPECT_FALSE(Auth(config::GatewayAuthSettings{}).enabled());
  EXPECT_TRUE(Auth(Settings()).enabled());
  config::GatewayAuthSettings required;
  required.required = true;
  EXPECT_TRUE(Auth(required).enabled());
}

TEST(GatewayAuth, TokensComeAsBearerOrApiKey) {
  const Auth auth(Settings());
  auto bearer = auth.Authenticate("Bearer shop-token-0123456789", "");
  ASSERT_TRUE(bearer);
  EXPECT_EQ((*bearer)->name, "shop");
  auto key = auth.Authenticate("", "auditor-token-0123456789");
  ASSERT_TRUE(key);
  EXPECT_EQ((*key)->name, "auditor");
}

TEST(GatewayAuth, MissingOrUnknownCredentialsAre401) {
  const Auth auth(Settings());
  for (auto [authorization, api_key] : {std::pair<std::string_view, std::string_view>{"", ""},
                                        {"Basic c2hvcDpwYXNz", ""},
                                        {"Bearer nope", ""},
                                        {"Bearer ", ""},
                                        {"", "shop-token-012345678"}}) {
    auto r = auth.Authenticate(authorization, api_key);
    ASSERT_FALSE(r) << authorization << api_key;
    EXPECT_EQ(r.error().status, 401);
    EXPECT_EQ(r.error().error.code, Code::kUnauthenticated);
  }
}

TEST(GatewayAuth, PatternsCoverTemplateAndOp) {
  const auto s = Settings();
  const auto& shop = s.principals[0];
  const auto& auditor = s.principals[1];
  const auto& root = s.principals[2];
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

}  // namespace
}  // namespace beds::gateway
