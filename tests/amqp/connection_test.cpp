// amqp::Connection against the fixture's RabbitMQ: what Coalesce holds (publishes encoded by
// rabbitmq-c's encoders, acks) reaches the broker whole and in order once it is let go, bodies
// larger than one frame and every property included.
#include "amqp/connection.hpp"

#include <gtest/gtest.h>

#include "integration/node_fixture.hpp"

namespace beds::testing {
namespace {

using namespace std::chrono_literals;

class ConnectionTest : public NodeTest {
 protected:
  std::unique_ptr<amqp::Connection> Open() {
    auto c = amqp::Connection::Open(Amqp());
    EXPECT_TRUE(c) << (c ? "" : c.error().message);
    return c ? std::move(*c) : nullptr;
  }
};

amqp::Message Sample(std::string body) {
  amqp::Message m;
  m.body = std::move(body);
  m.correlation_id = "corr-1";
  m.reply_to = "somewhere";
  m.message_id = "m-1";
  m.delivery_mode = 2;
  m.expiration = "60000";
  m.headers["x-beds-retries"] = int64_t{3};
  m.headers["x-beds-error"] = std::string("why it failed");
  return m;
}

TEST_F(ConnectionTest, CoalescedPublishesAndAcksArriveWholeAndInOrder) {
  auto publisher = Open();
  auto consumer = Open();
  ASSERT_TRUE(publisher && consumer);
  amqp::QueueOptions temporary;
  temporary.durable = false;
  ASSERT_TRUE(consumer->DeclareQueue("coalesce-test", temporary));
  auto tag = consumer->Consume("coalesce-test", false);
  ASSERT_TRUE(tag) << tag.error().message;

  // Larger than a frame (131072 bytes by default), an empty body, and a plain one.
  const std::string big(300'000, 'x');
  const std::vector<amqp::Message> sent = {Sample("first"), Sample(big), Sample("")};
  ASSERT_TRUE(publisher->Coalesce(true));
  for (const amqp::Message& m : sent) ASSERT_TRUE(publisher->Publish("", "coalesce-test", m));
  // Held: nothing has left yet.
  auto early = consumer->Next(200ms);
  ASSERT_TRUE(early);
  EXPECT_FALSE(*early) << "a held publish was delivered before Coalesce(false)";
  ASSERT_TRUE(publisher->Coalesce(false));

  std::vector<amqp::Delivery> got;
  for (size_t i = 0; i < sent.size(); ++i) {
    auto d = consumer->Next(5s);
    ASSERT_TRUE(d) << d.error().message;
    ASSERT_TRUE(*d) << "delivery " << i << " never came";
    got.push_back(std::move(**d));
  }
  for (size_t i = 0; i < sent.size(); ++i) {
    const amqp::Message& m = got[i].message;
    EXPECT_EQ(m.body, sent[i].body) << i;
    EXPECT_EQ(m.correlation_id, "corr-1");
    EXPECT_EQ(m.reply_to, "somewhere");
    EXPECT_EQ(m.message_id, "m-1");
    EXPECT_EQ(m.delivery_mode, 2);
    EXPECT_EQ(m.expiration, "60000");
    EXPECT_EQ(m.headers.at("x-beds-retries"), amqp::HeaderValue(int64_t{3}));
    EXPECT_EQ(m.headers.at("x-beds-error"), amqp::HeaderValue(std::string("why it failed")));
  }

  // A coalesced multiple-ack settles them: closing the consumer's connection (which waits for
  // the broker's close-ok, after the ack sent before it) hands nothing back.
  ASSERT_TRUE(consumer->Coalesce(true));
  ASSERT_TRUE(consumer->Ack(got.back().delivery_tag, true));
  ASSERT_TRUE(consumer->Coalesce(false));
  consumer.reset();
  auto left = publisher->MessageCount("coalesce-test");
  ASSERT_TRUE(left) << left.error().message;
  EXPECT_EQ(*left, 0u) << "the acked deliveries came back when the consumer closed";
  EXPECT_TRUE(publisher->DeleteQueue("coalesce-test"));
}

}  // namespace
}  // namespace beds::testing
