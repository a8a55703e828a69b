// Exactly-once identities, digests and recorded replies (core/once.hpp).
#include "core/once.hpp"

#include <gtest/gtest.h>

namespace beds {
namespace {

Template Items() {
  Template t;
  t.name = "Items";
  return t;
}

Payload Of(std::initializer_list<std::pair<std::string, Value>> values) {
  Payload p;
  for (const auto& [name, v] : values) p.values[name] = v;
  return p;
}

Value Text(std::string s) { return Value{FieldType::kString, false, 0, 0, std::move(s)}; }
Value Int(int64_t i) { return Value{FieldType::kInt, false, i, 0, {}}; }

TEST(Once, AKeyIsScopedByTemplateAndSender) {
  const std::string a = OnceIdentityOfKey("Items", "alice", "k1");
  EXPECT_EQ(a.size(), 32u);
  EXPECT_EQ(a, OnceIdentityOfKey("Items", "alice", "k1"));
  EXPECT_NE(a, OnceIdentityOfKey("Items", "bob", "k1"));
  EXPECT_NE(a, OnceIdentityOfKey("Orders", "alice", "k1"));
  EXPECT_NE(a, OnceIdentityOfKey("Items", "alice", "k2"));
  // Parts are length-prefixed: moving a character from one part to the next is another write.
  EXPECT_NE(OnceIdentityOfKey("Items", "alice", "k1"), OnceIdentityOfKey("Items", "alic", "ek1"));
  // A message id never collides with a key of the same text.
  EXPECT_NE(OnceIdentityOfMessage("k1", ""), OnceIdentityOfKey("", "", "k1"));
}

TEST(Once, TheDigestIsTheRequestNotItsSpelling) {
  const Template t = Items();
  const Payload p = Of({{"name", Text("a")}, {"n", Int(1)}});
  const Payload same = Of({{"n", Int(1)}, {"name", Text("a")}});
  EXPECT_EQ(OnceDigest(t, "create", p), OnceDigest(t, "create", same));
  EXPECT_NE(OnceDigest(t, "create", p), OnceDigest(t, "update", p));
  EXPECT_NE(OnceDigest(t, "create", p), OnceDigest(t, "create", Of({{"name", Text("b")}})));
  EXPECT_NE(OnceDigest(t, "create", Of({{"n", Int(1)}})),
            OnceDigest(t, "create", Of({{"n", Value::Null(FieldType::kInt)}})));
  EXPECT_NE(OnceDigest(t, "create", Of({{"n", Int(1)}})),
            OnceDigest(t, "create", Of({{"n", Text("1")}})));
  // The digest takes part in a message id's identity: one id reused for another request is
  // another write.
  EXPECT_NE(OnceIdentityOfMessage("m1", OnceDigest(t, "create", p)),
            OnceIdentityOfMessage("m1", OnceDigest(t, "create", Of({{"name", Text("b")}}))));
}

TEST(Once, ARecordedReplyReadsBackAsReplayed) {
  OpResult r;
  r.data.push_back(boost::json::object{{"id", 7}, {"name", "a"}});
  r.count = 1;
  auto back = DecodeRecordedReply(EncodeRecordedReply(r));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_TRUE(back->replayed);
  EXPECT_EQ(back->count, 1);
  EXPECT_EQ(back->data, r.data);
  EXPECT_FALSE(DecodeRecordedReply("not json"));
  EXPECT_FALSE(DecodeRecordedReply(R"({"data":{}})"));
  EXPECT_TRUE(IsKeyReused(KeyReusedError()));
  EXPECT_EQ(KeyReusedError().code, Code::kConflict);
  EXPECT_FALSE(IsKeyReused(Error{Code::kConflict, "duplicate key"}));
  EXPECT_EQ(Hex("\x01\xab"), "01ab");
}

}  // namespace
}  // namespace beds
