#include "brokers/pool.hpp"

#include <gtest/gtest.h>

#include "amqp/topology.hpp"

namespace beds::brokers {
namespace {

amqp::Delivery From(std::string user_id, std::string exchange = amqp::kEventsExchange) {
  amqp::Delivery d;
  d.exchange = std::move(exchange);
  d.message.user_id = std::move(user_id);
  return d;
}

const std::vector<std::string> kTrusted{"gateway"};

TEST(SenderOf, TheBrokersUserIdIsVerified) {
  const Sender s = SenderOf(From("alice"), kTrusted);
  EXPECT_EQ(s.user, "alice");
  EXPECT_TRUE(s.verified);
  EXPECT_TRUE(s.via.empty());
}

TEST(SenderOf, ATrustedUserActsForItsActor) {
  amqp::Delivery d = From("gateway");
  d.message.headers[kActorHeader] = std::string("shop");
  const Sender s = SenderOf(d, kTrusted);
  EXPECT_EQ(s.user, "shop");
  EXPECT_TRUE(s.verified);
  EXPECT_EQ(s.via, "gateway");
}

TEST(SenderOf, AnyoneElsesActorIsOnlyClaimed) {
  amqp::Delivery d = From("mallory");
  d.message.headers[kActorHeader] = std::string("dba-alice");
  const Sender s = SenderOf(d, kTrusted);
  EXPECT_EQ(s.user, "mallory");
  EXPECT_EQ(s.claimed, "dba-alice");
  EXPECT_TRUE(s.via.empty());
  // Nobody trusted at all: the same.
  EXPECT_EQ(SenderOf(d, {}).user, "mallory");
}

TEST(SenderOf, ARetriedCopyKeepsThePrincipalsScope) {
  // A worker's copy: no user_id, x-beds-user names the original sender, not from beds.events.
  amqp::Delivery d = From("", "");
  d.message.headers[kUserHeader] = std::string("gateway");
  d.message.headers[kActorHeader] = std::string("shop");
  const Sender s = SenderOf(d, kTrusted);
  EXPECT_EQ(s.user, "shop");
  EXPECT_FALSE(s.verified);
  // The same headers on beds.events are not believed: anyone could publish them there.
  amqp::Delivery forged = From("");
  forged.message.headers[kUserHeader] = std::string("gateway");
  forged.message.headers[kActorHeader] = std::string("shop");
  const Sender f = SenderOf(forged, kTrusted);
  EXPECT_TRUE(f.user.empty());
  EXPECT_EQ(f.claimed, "shop");
}

}  // namespace
}  // namespace beds::brokers
