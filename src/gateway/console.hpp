// The console page (docs/gateway.md "Console"): the static files the gateway serves at / so a
// developer can try any operation from a browser. They live in src/gateway/console/ and are built
// into the binary, so a node needs no files beside it to serve them.
#pragma once

#include <string_view>

namespace beds::gateway {

struct ConsoleFile {
  std::string_view content_type;
  std::string_view body;
};

// The console's file at `path` ("/", "/console.js", "/console.css"), or nullptr.
const ConsoleFile* ConsoleFileAt(std::string_view path);

// The headers every console file is served with: a Content-Security-Policy that lets the page run
// only its own script and talk only to this gateway, so a reply's content can never run as code.
inline constexpr std::string_view kConsoleSecurityPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

}  // namespace beds::gateway
