#include "core/permissions.hpp"

namespace beds {
namespace {

bool Matches(std::string_view pattern, std::string_view value) {
  if (pattern == "*") return true;
  if (pattern.ends_with('*')) return value.starts_with(pattern.substr(0, pattern.size() - 1));
  return pattern == value;
}

}  // namespace

bool Allows(const std::vector<std::string>& patterns, std::string_view permission) {
  const size_t slash = permission.find('/');
  const std::string_view t = permission.substr(0, slash);
  const std::string_view op =
      slash == std::string_view::npos ? std::string_view() : permission.substr(slash + 1);
  for (const std::string& pattern : patterns) {
    const std::string_view p = pattern;
    const size_t ps = p.find('/');
    if (ps == std::string_view::npos) {
      if (p == "*") return true;
      continue;
    }
    if (Matches(p.substr(0, ps), t) && Matches(p.substr(ps + 1), op)) return true;
  }
  return false;
}

}  // namespace beds
