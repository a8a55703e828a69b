#include "gateway/openapi.hpp"

#include <boost/json.hpp>

namespace beds::gateway {
namespace {

namespace json = boost::json;

// The JSON Schema of a field's value as it travels (docs/templates.md "Field types"); null is
// SQL NULL in every type.
json::object FieldSchema(const FieldSpec& f) {
  json::object s;
  switch (f.type) {
    case FieldType::kInt:
      s["type"] = json::array{"integer", "null"};
      break;
    case FieldType::kFloat:
      s["type"] = json::array{"number", "null"};
      break;
    case FieldType::kDecimal:
      s["type"] = json::array{"string", "integer", "null"};
      s["description"] = "an exact decimal as a string of digits, e.g. \"12.50\"";
      break;
    case FieldType::kBool:
      s["type"] = json::array{"boolean", "null"};
      break;
    case FieldType::kString:
      s["type"] = json::array{"string", "null"};
      if (f.max > 0) s["maxLength"] = f.max;
      break;
    case FieldType::kDate:
      s["type"] = json::array{"string", "null"};
      s["format"] = "date";
      break;
    case FieldType::kDatetime:
      s["type"] = json::array{"string", "null"};
      s["format"] = "date-time";
      break;
    case FieldType::kJson:
      s["description"] = "any JSON value";
      break;
    case FieldType::kBytes:
      s["type"] = json::array{"string", "null"};
      s["contentEncoding"] = "base64";
      break;
  }
  return s;
}

std::string Ref(std::string_view name) { return "#/components/schemas/" + std::string(name); }

json::object Json(json::object schema) {
  return json::object{{"application/json", json::object{{"schema", std::move(schema)}}}};
}

// The answers every operation may give: the reply on success, the protocol's error otherwise.
json::object Responses(std::string_view ok_status, std::string_view ok_what) {
  json::object r;
  r[ok_status] = json::object{{"description", ok_what},
                              {"content", Json(json::object{{"$ref", Ref("Reply")}})}};
  const std::pair<const char*, const char*> errors[] = {
      {"400", "BAD_REQUEST: malformed request"},
      {"401", "UNAUTHENTICATED: no or unknown credentials"},
      {"403", "FORBIDDEN: the caller may not call this"},
      {"404", "NOT_FOUND, UNKNOWN_TEMPLATE or UNKNOWN_OP"},
      {"409", "CONFLICT: a duplicate, or an idempotency key reused"},
      {"413", "TOO_LARGE"},
      {"422", "VALIDATION: the request breaks the template's rules"},
      {"429", "over the caller's rate limit"},
      {"500", "INTERNAL"},
      {"503", "UNAVAILABLE: retry later"},
      {"504", "TIMEOUT: no reply by the deadline"}};
  for (const auto& [status, what] : errors) {
    r[status] = json::object{{"description", what},
                             {"content", Json(json::object{{"$ref", Ref("Error")}})}};
  }
  return r;
}

json::object Param(std::string_view name, std::string_view in, json::object schema, bool required,
                   std::string_view description = {}) {
  json::object p{{"name", name}, {"in", in}, {"required", required}, {"schema", std::move(schema)}};
  if (!description.empty()) p["description"] = description;
  return p;
}

// What every request may send as headers.
json::array CommonHeaders(bool write) {
  json::array h{
      Param("X-Beds-Deadline-Ms", "header", json::object{{"type", "integer"}, {"minimum", 1}},
            false, "this request's budget in milliseconds"),
      Param("X-Beds-Parent", "header", json::object{{"type", "string"}}, false,
            "the parent event's id: the request is its child"),
      Param("X-Beds-Parent-Depth", "header", json::object{{"type", "integer"}, {"minimum", 0}},
            false, "the parent event's depth")};
  if (write) {
    h.push_back(Param("Idempotency-Key", "header",
                      json::object{{"type", "string"}, {"maxLength", 200}}, false,
                      "a write re-sent with the same key is answered from its first apply"));
    h.push_back(Param("Prefer", "header", json::object{{"type", "string"}}, false,
                      "respond-async: 202 with a CALGON ticket"));
  }
  return h;
}

// `tag` groups operations (the template's name; tickets, lineage, health): the console's picker.
json::object Operation(std::string_view tag, std::string summary, std::string id,
                       json::array parameters, json::object responses) {
  return json::object{{"tags", json::array{json::string(tag)}},
                      {"summary", std::move(summary)},
                      {"operationId", std::move(id)},
                      {"parameters", std::move(parameters)},
                      {"responses", std::move(responses)}};
}

json::object Body(json::object schema) {
  return json::object{{"required", true}, {"content", Json(std::move(schema))}};
}

// The data a write takes: REL ops their params, REC ops every declared field.
json::object DataSchema(const Template& t, const OpSpec& op, bool create) {
  json::object properties;
  json::array required;
  auto add = [&](const std::string& name) {
    const FieldSpec* f = t.Field(name);
    properties[name] = f ? FieldSchema(*f) : json::object{{"description", "a call parameter"}};
    if (create && f && f->required) required.push_back(json::string(name));
  };
  if (t.template_class == TemplateClass::kRel || !op.params.empty()) {
    for (const auto& p : op.params) add(p);
  } else {
    for (const auto& f : t.fields) add(f.name);
  }
  json::object s{{"type", "object"}, {"properties", std::move(properties)}};
  if (!required.empty()) s["required"] = std::move(required);
  return s;
}

json::array FilterParams(const Template& t, const OpSpec& op, bool fetch) {
  json::array params;
  for (const auto& name : op.where) {
    const FieldSpec* f = t.Field(name);
    json::object schema = f ? FieldSchema(*f) : json::object();
    params.push_back(Param(name, "query", schema, false, "equal to"));
    for (const char* o : {"gt", "gte", "lt", "lte"}) {
      params.push_back(Param(name + "." + o, "query", schema, false, o));
    }
    params.push_back(Param(name + ".in", "query", json::object{{"type", "string"}}, false,
                           "one of these, comma-separated"));
  }
  if (fetch) {
    std::string fields;
    for (const auto& o : op.order) fields += (fields.empty() ? "" : ", ") + o;
    params.push_back(Param("order", "query", json::object{{"type", "string"}}, false,
                           "comma-separated, - for descending, of: " + fields));
    params.push_back(
        Param("limit", "query",
              json::object{{"type", "integer"}, {"minimum", 0}, {"maximum", op.max_limit}}, false));
    params.push_back(
        Param("offset", "query", json::object{{"type", "integer"}, {"minimum", 0}}, false));
  }
  return params;
}

json::array With(json::array a, const json::array& more) {
  for (const auto& v : more) a.push_back(v);
  return a;
}

}  // namespace

std::string OpenApiDocument(const templates::Snapshot& templates,
                            const config::GatewaySettings& settings) {
  json::object paths;
  json::object schemas{
      {"Reply",
       json::object{{"type", "object"},
                    {"description", "the protocol's reply (docs/protocol.md \"Reply\")"},
                    {"required", json::array{"ok"}},
                    {"properties", json::object{{"ok", json::object{{"type", "boolean"}}},
                                                {"event_id", json::object{{"type", "string"}}},
                                                {"data", json::object()},
                                                {"count", json::object{{"type", "integer"}}},
                                                {"replayed", json::object{{"type", "boolean"}}},
                                                {"ticket", json::object{{"type", "string"}}},
                                                {"status", json::object{{"type", "string"}}}}}}},
      {"Error",
       json::object{
           {"type", "object"},
           {"required", json::array{"ok", "error"}},
           {"properties",
            json::object{
                {"ok", json::object{{"const", false}}},
                {"event_id", json::object{{"type", "string"}}},
                {"error",
                 json::object{{"type", "object"},
                              {"required", json::array{"code", "message", "retryable"}},
                              {"properties",
                               json::object{{"code", json::object{{"type", "string"}}},
                                            {"message", json::object{{"type", "string"}}},
                                            {"retryable", json::object{{"type", "boolean"}}},
                                            {"index", json::object{{"type", "integer"}}}}}}}}}}}};

  const json::object id_param = Param("id", "path", json::object{{"type", "string"}}, true);
  for (const auto& [name, t] : templates.by_name) {
    if (templates::IsSystemTemplate(name)) continue;
    json::object row;
    for (const auto& f : t.fields) row[f.name] = FieldSchema(f);
    schemas[name] = json::object{{"type", "object"}, {"properties", std::move(row)}};
    const std::string base = "/v1/" + name;
    json::object collection;
    if (const OpSpec* fetch = t.Op("fetch")) {
      collection["get"] = Operation(name, "fetch " + name + " by filters", name + "_fetch",
                                    With(CommonHeaders(false), FilterParams(t, *fetch, true)),
                                    Responses("200", "the rows"));
      const OpSpec* count = t.Op("count") ? t.Op("count") : fetch;
      paths[base + "/count"] =
          json::object{{"get", Operation(name, "count " + name + " by filters", name + "_count",
                                         With(CommonHeaders(false), FilterParams(t, *count, false)),
                                         Responses("200", "[{\"count\": n}]"))}};
    }
    if (const OpSpec* create = t.Op("create")) {
      json::object op = Operation(name, "create a " + name, name + "_create", CommonHeaders(true),
                                  Responses("201", "the created row"));
      op["requestBody"] = Body(DataSchema(t, *create, true));
      collection["post"] = std::move(op);
    }
    if (!collection.empty()) paths[base] = std::move(collection);
    json::object item;
    if (t.Op("fetch")) {
      item["get"] =
          Operation(name, "fetch a " + name + " by its key", name + "_get",
                    With(json::array{id_param}, CommonHeaders(false)), Responses("200", "the row"));
    }
    if (const OpSpec* update = t.Op("update")) {
      json::object op = Operation(name, "update a " + name, name + "_update",
                                  With(json::array{id_param}, CommonHeaders(true)),
                                  Responses("200", "the row after the change"));
      op["requestBody"] = Body(DataSchema(t, *update, false));
      item["patch"] = std::move(op);
    }
    if (t.Op("delete")) {
      item["delete"] = Operation(name, "delete a " + name, name + "_delete",
                                 With(json::array{id_param}, CommonHeaders(true)),
                                 Responses("200", "what the delete answered"));
    }
    if (!item.empty()) paths[base + "/{id}"] = std::move(item);
    for (const auto& [call, spec] : t.calls) {
      json::object methods;
      json::object post = Operation(name, "call " + call + " of " + name, name + "_call_" + call,
                                    CommonHeaders(!spec.read), Responses("200", "its result sets"));
      post["requestBody"] = Body(DataSchema(t, spec, false));
      methods["post"] = std::move(post);
      if (spec.read) {
        json::array query;
        for (const auto& p : spec.params) {
          const FieldSpec* f = t.Field(p);
          query.push_back(Param(p, "query", f ? FieldSchema(*f) : json::object(), false));
        }
        methods["get"] = Operation(
            name, "call " + call + " of " + name + " (a read)", name + "_call_" + call + "_get",
            With(CommonHeaders(false), query), Responses("200", "its result sets"));
      }
      paths[base + "/calls/" + call] = std::move(methods);
    }
  }
  const json::object ticket = Param("ticket", "path", json::object{{"type", "string"}}, true);
  paths["/v1/tickets/{ticket}"] = json::object{
      {"get", Operation("tickets", "a CALGON ticket (wait_ms: until its job ends)", "ticket_poll",
                        json::array{ticket, Param("wait_ms", "query",
                                                  json::object{{"type", "integer"}, {"minimum", 0}},
                                                  false)},
                        Responses("200", "the ticket"))},
      {"delete", Operation("tickets", "cancel a CALGON job", "ticket_cancel", json::array{ticket},
                           Responses("200", "the ticket, cancelled"))}};
  paths["/v1/lineage/{event_id}"] = json::object{
      {"get",
       Operation("lineage", "an event and everything it caused", "lineage",
                 json::array{Param("event_id", "path", json::object{{"type", "string"}}, true)},
                 Responses("200", "the tree"))}};
  paths["/healthz"] = json::object{
      {"get",
       json::object{{"summary", "the process is up"},
                    {"operationId", "healthz"},
                    {"tags", json::array{"health"}},
                    {"security", json::array()},
                    {"responses", json::object{{"200", json::object{{"description", "up"}}}}}}}};
  paths["/readyz"] = json::object{{"get", json::object{{"summary", "a broker pool answers"},
                                                       {"operationId", "readyz"},
                                                       {"tags", json::array{"health"}},
                                                       {"security", json::array()},
                                                       {"responses", Responses("200", "ready")}}}};

  json::object doc{
      {"openapi", "3.1.0"},
      {"info", json::object{{"title", "BEDS gateway"},
                            {"version", "1"},
                            {"description",
                             "REST over the templates this node serves; each request is a BEDS "
                             "envelope published on beds.events (docs/gateway.md)."}}},
      {"paths", std::move(paths)},
      {"components",
       json::object{{"schemas", std::move(schemas)},
                    {"securitySchemes",
                     json::object{{"bearer", json::object{{"type", "http"}, {"scheme", "bearer"}}},
                                  {"apiKey", json::object{{"type", "apiKey"},
                                                          {"in", "header"},
                                                          {"name", "X-Api-Key"}}}}}}}};
  const auto& auth = settings.auth;
  if (auth.required || !auth.principals.empty() || auth.jwt.enabled()) {
    doc["security"] = json::array{json::object{{"bearer", json::array()}},
                                  json::object{{"apiKey", json::array()}}};
  }
  return json::serialize(doc);
}

}  // namespace beds::gateway
