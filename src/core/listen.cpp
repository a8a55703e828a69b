#include "core/listen.hpp"

#include <arpa/inet.h>

#include <charconv>

namespace beds {

Result<ListenAddress> ParseListen(std::string_view listen, std::string_view what) {
  const std::string quoted = std::string(what) + " '" + Excerpt(listen, 120) + "'";
  const size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos)
    return std::unexpected(Error{Code::kValidation, quoted + " is not host:port"});
  std::string host(listen.substr(0, colon));
  const std::string_view port_text = listen.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() ||
      port > 65535) {
    return std::unexpected(Error{Code::kValidation, quoted + ": bad port"});
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") host = "127.0.0.1";
  ListenAddress address{host, static_cast<uint16_t>(port), false};
  in_addr v4{};
  in6_addr v6{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    address.loopback = (ntohl(v4.s_addr) >> 24) == 127;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    address.loopback = IN6_IS_ADDR_LOOPBACK(&v6);
  } else {
    return std::unexpected(Error{Code::kValidation, quoted + ": not an IP address"});
  }
  return address;
}

}  // namespace beds
