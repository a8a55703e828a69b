// The listen addresses of the node's HTTP endpoints ([metrics] listen, [gateway] listen), read
// one way for both.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace beds {

struct ListenAddress {
  std::string ip;  // "127.0.0.1", "::1", "0.0.0.0"
  uint16_t port = 0;
  bool loopback = false;
};

// "127.0.0.1:9464", "[::1]:9464", "localhost:9464" (= 127.0.0.1) or "0.0.0.0:8080"; port 0 asks
// for any free port. VALIDATION naming `what` (e.g. "metrics listen") for anything else.
Result<ListenAddress> ParseListen(std::string_view listen, std::string_view what);

}  // namespace beds
