#include "gateway/openapi.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <set>

namespace beds::gateway {
namespace {

namespace json = boost::json;

json::object Document(const config::GatewaySettings& settings = {}) {
  static const templates::Snapshot snapshot = [] {
    templates::Snapshot s;
    auto loaded = templates::LoadDir(std::string(BEDS_SOURCE_DIR) + "/templates");
    EXPECT_TRUE(loaded);
    if (loaded) {
      for (auto& t : *loaded) s.by_name.emplace(t.name, std::move(t));
    }
    return s;
  }();
  return json::parse(OpenApiDocument(snapshot, settings)).as_object();
}

TEST(GatewayOpenApi, EveryRouteOfEveryTemplateIsThere) {
  const json::object doc = Document();
  EXPECT_EQ(doc.at("openapi").as_string(), "3.1.0");
  const json::object& paths = doc.at("paths").as_object();
  for (const char* p :
       {"/v1/Users", "/v1/Users/{id}", "/v1/Users/count", "/v1/Users/calls/get", "/v1/Orders",
        "/v1/tickets/{ticket}", "/v1/lineage/{event_id}", "/healthz", "/readyz"}) {
    EXPECT_TRUE(paths.contains(p)) << p;
  }
  const json::object& item = paths.at("/v1/Users/{id}").as_object();
  EXPECT_TRUE(item.contains("get") && item.contains("patch") && item.contains("delete"));
  // A read call may be a GET too.
  EXPECT_TRUE(paths.at("/v1/Users/calls/get").as_object().contains("get"));
}

TEST(GatewayOpenApi, CreateBodiesSayWhatIsRequiredAndHowLong) {
  const json::object doc = Document();
  const json::value& schema = doc.at("paths")
                                  .at("/v1/Users")
                                  .at("post")
                                  .at("requestBody")
                                  .at("content")
                                  .at("application/json")
                                  .at("schema");
  const json::array& required = schema.at("required").as_array();
  EXPECT_NE(std::find(required.begin(), required.end(), json::value("email")), required.end());
  EXPECT_EQ(schema.at("properties").at("email").at("maxLength").as_int64(), 128);
  // Filters: each where field with its operators; order and limit with the op's max_limit.
  std::set<std::string> names;
  for (const auto& p : doc.at("paths").at("/v1/Users").at("get").at("parameters").as_array()) {
    names.insert(std::string(p.at("name").as_string()));
  }
  for (const char* n : {"email", "id.gte", "id.in", "order", "limit", "offset"}) {
    EXPECT_TRUE(names.contains(n)) << n;
  }
}

TEST(GatewayOpenApi, OperationIdsAreUniqueAndErrorsDescribed) {
  const json::object doc = Document();
  std::set<std::string> ids;
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      const std::string id(op.at("operationId").as_string());
      EXPECT_TRUE(ids.insert(id).second) << "duplicate " << id;
    }
  }
  const json::object& responses =
      doc.at("paths").at("/v1/Users/{id}").at("get").at("responses").as_object();
  for (const char* s : {"200", "401", "403", "404", "422", "503"})
    EXPECT_TRUE(responses.contains(s));
  EXPECT_FALSE(doc.contains("security"));  // no credentials configured
  config::GatewaySettings with_keys;
  with_keys.auth.principals.push_back({"p", "p-token-0123456789abc", {"*"}});
  EXPECT_TRUE(Document(with_keys).contains("security"));
}

TEST(GatewayOpenApi, EveryOperationIsTaggedByItsTemplateOrRoute) {
  // The tags group operations for the console's picker and for any OpenAPI viewer.
  const json::object doc = Document();
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      const json::array* tags = op.as_object().at("tags").if_array();
      ASSERT_TRUE(tags != nullptr && tags->size() == 1) << method << " " << path;
      const std::string tag(tags->at(0).as_string());
      const std::string want = path.starts_with("/v1/tickets")   ? "tickets"
                               : path.starts_with("/v1/lineage") ? "lineage"
                               : path.starts_with("/v1/")
                                   ? std::string(path.substr(4, path.find('/', 4) - 4))
                                   : "health";
      EXPECT_EQ(tag, want) << method << " " << path;
    }
  }
}

}  // namespace
}  // namespace beds::gateway
