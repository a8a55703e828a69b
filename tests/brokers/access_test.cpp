#include "brokers/access.hpp"

#include <gtest/gtest.h>

#include "amqp/topology.hpp"
#include "brokers/pool.hpp"

namespace beds::brokers {
namespace {

config::AccessSettings Access() {
  config::AccessSettings a;
  a.node_users = {"node"};
  a.trusted_users = {"gateway"};
  a.clients["shop"] = {"Users/*", "Orders/call:*"};
  return a;
}

amqp::Delivery From(std::string user_id) {
  amqp::Delivery d;
  d.exchange = amqp::kEventsExchange;
  d.message.user_id = std::move(user_id);
  return d;
}

Request Req(std::string t, std::string op, std::string call = {}) {
  Request r;
  r.template_name = std::move(t);
  r.op = std::move(op);
  r.call = std::move(call);
  return r;
}

TEST(Access, WithoutClientsEveryoneMayCallEverything) {
  EXPECT_FALSE(Denied(config::AccessSettings{}, From("anyone"), Req("Users", "delete")));
  EXPECT_FALSE(Denied(config::AccessSettings{}, From(""), Req("Users", "delete")));
}

TEST(Access, ClientsCallWhatTheirPatternsCover) {
  const auto a = Access();
  EXPECT_FALSE(Denied(a, From("shop"), Req("Users", "create")));
  EXPECT_FALSE(Denied(a, From("shop"), Req("Orders", "call", "user_summary")));
  const auto denied = Denied(a, From("shop"), Req("Orders", "create"));
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->code, Code::kForbidden);
  EXPECT_NE(denied->message.find("Orders/create"), std::string::npos) << denied->message;
  EXPECT_TRUE(Denied(a, From("shop"), Req("lineage", "fetch")));
}

TEST(Access, StrangersAreForbiddenButMayPing) {
  const auto a = Access();
  const auto denied = Denied(a, From("mallory"), Req("Users", "fetch"));
  ASSERT_TRUE(denied);
  EXPECT_NE(denied->message.find("'mallory' is not a client"), std::string::npos);
  EXPECT_TRUE(Denied(a, From(""), Req("Users", "fetch")));
  EXPECT_FALSE(Denied(a, From("mallory"), Req("sys", "ping")));
  EXPECT_TRUE(Denied(a, From("mallory"), Req("sys", "describe")));
}

TEST(Access, NodesAndTrustedUsersAreNotLimited) {
  const auto a = Access();
  EXPECT_FALSE(Denied(a, From("node"), Req("Orders", "delete")));
  EXPECT_FALSE(Denied(a, From("gateway"), Req("Orders", "delete")));
  // A gateway's principal was checked by the gateway.
  amqp::Delivery d = From("gateway");
  d.message.headers[kActorHeader] = std::string("web-user");
  EXPECT_FALSE(Denied(a, d, Req("Orders", "delete")));
  // The same header from a client changes nothing.
  amqp::Delivery forged = From("shop");
  forged.message.headers[kActorHeader] = std::string("node");
  EXPECT_TRUE(Denied(a, forged, Req("Orders", "delete")));
}

}  // namespace
}  // namespace beds::brokers
