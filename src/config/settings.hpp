// Private to config: reading the merged table into the typed settings of config.hpp.
#pragma once

#include <toml++/toml.h>

#include <map>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace beds::config {

// Dotted key → "file:line" or "environment NAME": where the value that won came from.
using Origins = std::map<std::string, std::string>;

// Fills `config` from `merged`; appends one line per problem to `errors`.
void ReadSettings(const toml::table& merged, const Origins& origins, Config& config,
                  std::vector<std::string>& errors);

}  // namespace beds::config
