// GET /v1/openapi.json: an OpenAPI 3.1 document of the gateway's routes over the loaded
// templates (fields and their types, required fields, string lengths, filter fields and their
// operators, order fields, calls, error answers, the credentials it takes), generated once at
// start from the immutable template snapshot.
#pragma once

#include <string>

#include "config/config.hpp"
#include "templates/templates.hpp"

namespace beds::gateway {

std::string OpenApiDocument(const templates::Snapshot& templates,
                            const config::GatewaySettings& settings);

}  // namespace beds::gateway
