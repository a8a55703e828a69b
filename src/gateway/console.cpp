#include "gateway/console.hpp"

#include <array>

#include "gateway_console_assets.hpp"

namespace beds::gateway {

const ConsoleFile* ConsoleFileAt(std::string_view path) {
  static const std::array<std::pair<std::string_view, ConsoleFile>, 3> kFiles{{
      {"/", {"text/html; charset=utf-8", console_files::kIndexHtml}},
      {"/console.js", {"text/javascript; charset=utf-8", console_files::kConsoleJs}},
      {"/console.css", {"text/css; charset=utf-8", console_files::kConsoleCss}},
  }};
  for (const auto& [at, file] : kFiles) {
    if (at == path) return &file;
  }
  return nullptr;
}

}  // namespace beds::gateway
