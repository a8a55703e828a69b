#include "core/lineage.hpp"

#include <gtest/gtest.h>

#include <set>

namespace beds {
namespace {

TEST(Lineage, GuidIsUuidV7Hex) {
  const std::string g = NewGuid();
  ASSERT_EQ(g.size(), 32u);
  EXPECT_EQ(g.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(g[12], '7');                                          // version nibble
  EXPECT_NE(std::string("89ab").find(g[16]), std::string::npos);  // variant 10xx
}

TEST(Lineage, GuidsAreUniqueAndTimeOrdered) {
  std::set<std::string> seen;
  std::string previous;
  for (int i = 0; i < 20000; ++i) {
    std::string g = NewGuid();
    EXPECT_TRUE(seen.insert(g).second) << g;
    // The first 16 hex digits (time + counter) never go backwards within a process.
    EXPECT_LE(previous.substr(0, 16), g.substr(0, 16));
    previous = g;
  }
}

TEST(Lineage, GuidCarriesTheCurrentTime) {
  const int64_t now = NowUnixMs();
  const int64_t ms = std::stoll(NewGuid().substr(0, 12), nullptr, 16);
  EXPECT_LE(std::abs(ms - now), 1000);
}

TEST(Lineage, EventIdForm) {
  const std::string id = NewEventId("appserver", "dev");
  EXPECT_TRUE(id.starts_with("appserver.dev."));
  EXPECT_TRUE(IsEventId(id));
  EXPECT_FALSE(IsEventId(""));
  EXPECT_FALSE(IsEventId("appserver.dev"));
  EXPECT_FALSE(IsEventId("appserver.dev.0192f0c4e1b87a3c9d2e4f60718293a"));    // 31 digits
  EXPECT_FALSE(IsEventId("appserver.dev.0192F0C4E1B87A3C9D2E4F60718293A4"));   // upper case
  EXPECT_FALSE(IsEventId("app.server.dev.0192f0c4e1b87a3c9d2e4f60718293a4"));  // dot in a label
  EXPECT_FALSE(IsEventId(".dev.0192f0c4e1b87a3c9d2e4f60718293a4"));
  EXPECT_TRUE(IsEventId("ms.production.0192f0c4e1b87a3c9d2e4f60718293a4"));
}

TEST(Lineage, RootAndChild) {
  const Lineage root = RootLineage("appserver", "dev");
  EXPECT_EQ(root.parent_id, "");
  EXPECT_EQ(root.depth, 0);
  const Lineage child = ChildLineage(root, "admin", "dev");
  EXPECT_EQ(child.parent_id, root.event_id);
  EXPECT_EQ(child.depth, 1);
  EXPECT_TRUE(child.event_id.starts_with("admin.dev."));
  const Lineage grandchild = ChildLineage(child, "admin", "dev");
  EXPECT_EQ(grandchild.parent_id, child.event_id);
  EXPECT_EQ(grandchild.depth, 2);
}

}  // namespace
}  // namespace beds
