// gzip for the gateway's answers (Accept-Encoding: gzip), through zlib.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace beds::gateway {

// Answers this long or longer are compressed when the client accepts gzip; shorter ones gain
// too little to pay for the CPU.
inline constexpr size_t kGzipMinBytes = 1024;

// Whether an Accept-Encoding header value accepts gzip ("gzip", "gzip, deflate", "*"; not
// "gzip;q=0").
bool AcceptsGzip(std::string_view accept_encoding);

// `body` in the gzip format; nullopt when zlib fails (the caller sends it uncompressed).
std::optional<std::string> Gzip(std::string_view body);

}  // namespace beds::gateway
