// Cross-origin requests from browsers (docs/gateway.md "CORS"): which origins may call, the
// headers an allowed origin's answers carry, and the answer to a preflight (OPTIONS).
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace beds::gateway {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

// Whether `origin` ("https://shop.example.org") is one of `allowed` ("*" allows any).
bool OriginAllowed(const std::vector<std::string>& allowed, std::string_view origin);

// The headers of an answer to an allowed origin: Access-Control-Allow-Origin (the origin
// itself), Vary: Origin, and the response headers a script may read.
HeaderList CorsHeaders(std::string_view origin);

// A preflight's answer headers: the above plus the methods and request headers the gateway
// takes, and how long the browser may cache them.
HeaderList PreflightHeaders(std::string_view origin);

}  // namespace beds::gateway
