// Loading and merging: files → one toml::table plus a map saying where every key came from, so
// that a validation error can name the file and line (or the environment variable) to fix.
#include "config/config.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>

#include "config/settings.hpp"

extern char** environ;

namespace beds::config {
namespace {

namespace fs = std::filesystem;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string Join(const std::string& prefix, std::string_view key) {
  return prefix.empty() ? std::string(key) : prefix + "." + std::string(key);
}

// Records where each leaf of `table` came from (tables themselves are not keys one sets).
void RecordOrigins(const toml::table& table, const std::string& prefix, const std::string& file,
                   Origins& origins) {
  for (auto&& [key, node] : table) {
    const std::string path = Join(prefix, key.str());
    origins[path] = file + ":" + std::to_string(node.source().begin.line);
    if (const auto* sub = node.as_table()) RecordOrigins(*sub, path, file, origins);
  }
}

// Deep merge: tables merge key by key, anything else (values, arrays) replaces.
void Merge(toml::table& dst, const toml::table& src, const std::string& prefix,
           const std::string& file, Origins& origins) {
  for (auto&& [key, node] : src) {
    const std::string path = Join(prefix, key.str());
    auto* existing = dst.get(key.str());
    if (existing && existing->is_table() && node.is_table()) {
      origins[path] = file + ":" + std::to_string(node.source().begin.line);
      Merge(*existing->as_table(), *node.as_table(), path, file, origins);
      continue;
    }
    dst.insert_or_assign(key.str(), node);
    origins[path] = file + ":" + std::to_string(node.source().begin.line);
    if (const auto* sub = node.as_table()) RecordOrigins(*sub, path, file, origins);
  }
}

bool ParseTomlValue(const std::string& text, toml::table& out) {
  try {
    out = toml::parse("v = " + text);
    return true;
  } catch (const toml::parse_error&) {
    return false;
  }
}

void ApplyEnvironment(toml::table& root, const std::string& name, const std::string& value,
                      Origins& origins, std::vector<std::string>& errors) {
  // BEDS__SECTION__SUB__KEY: segments match existing keys case-insensitively, else lowercase.
  std::vector<std::string> segments;
  std::string_view rest = std::string_view(name).substr(6);
  while (true) {
    const size_t pos = rest.find("__");
    segments.emplace_back(rest.substr(0, pos));
    if (pos == std::string_view::npos) break;
    rest.remove_prefix(pos + 2);
  }
  if (std::any_of(segments.begin(), segments.end(), [](const auto& s) { return s.empty(); })) {
    errors.push_back("environment " + name + ": empty key segment");
    return;
  }
  toml::table* table = &root;
  std::string path;
  for (size_t i = 0; i < segments.size(); ++i) {
    std::string key = segments[i];
    for (auto&& [k, v] : *table) {
      if (EqualsIgnoreCase(k.str(), key)) {
        key = std::string(k.str());
        break;
      }
    }
    if (!table->contains(key)) {
      std::transform(key.begin(), key.end(), key.begin(),
                     [](unsigned char c) { return std::tolower(c); });
    }
    path = Join(path, key);
    if (i + 1 < segments.size()) {
      auto* node = table->get(key);
      if (!node) {
        table->insert_or_assign(key, toml::table{});
        node = table->get(key);
      }
      if (!node->is_table()) {
        errors.push_back("environment " + name + ": key '" + path + "' is not a table");
        return;
      }
      table = node->as_table();
      continue;
    }
    // A value overriding a string key stays a string (BEDS__X__PASS=1234); any other value is
    // read as TOML when it parses, else kept as a string (for a typed key the read reports it).
    const toml::node* existing = table->get(key);
    toml::table parsed;
    if ((!existing || !existing->is_string()) && ParseTomlValue(value, parsed)) {
      table->insert_or_assign(key, *parsed.get("v"));
    } else {
      table->insert_or_assign(key, value);
    }
    origins[path] = "environment " + name;
  }
}

bool IsSecretKey(std::string_view key) {
  return key == "pass" || key == "password" || key == "secret" || key == "token";
}

// mongodb://user:pass@host → mongodb://user:****@host
std::string MaskUri(const std::string& uri) {
  const size_t scheme = uri.find("://");
  const size_t at = uri.find('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme) return uri;
  const size_t colon = uri.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at) return uri;
  return uri.substr(0, colon + 1) + "****" + uri.substr(at);
}

void MaskSecrets(toml::table& table) {
  for (auto&& [key, node] : table) {
    if (auto* sub = node.as_table()) {
      MaskSecrets(*sub);
    } else if (node.is_string() && IsSecretKey(key.str()) && !node.as_string()->get().empty()) {
      *node.as_string() = "****";
    } else if (node.is_string() && key.str() == "uri") {
      *node.as_string() = MaskUri(node.as_string()->get());
    }
  }
}

std::string Fnv1a64Hex(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 0; i < 16; ++i) out[i] = kHex[(hash >> (60 - 4 * i)) & 0xf];
  return out;
}

std::optional<toml::table> ParseFile(const fs::path& file, std::vector<std::string>& errors) {
  try {
    return toml::parse_file(file.string());
  } catch (const toml::parse_error& e) {
    errors.push_back(file.string() + ":" + std::to_string(e.source().begin.line) + ": " +
                     std::string(e.description()));
    return std::nullopt;
  }
}

}  // namespace

LoadOptions FromEnvironment(std::string config_dir, std::optional<std::string> env) {
  LoadOptions options;
  options.config_dir = std::move(config_dir);
  options.env_file_required = env.has_value();
  options.env = std::move(env);
  for (char** e = environ; e && *e; ++e) {
    const std::string_view entry(*e);
    const size_t eq = entry.find('=');
    if (eq == std::string_view::npos) continue;
    const std::string_view name = entry.substr(0, eq);
    if (name == "BEDS_ROLE" && eq + 1 < entry.size()) {
      options.role = std::string(entry.substr(eq + 1));
    } else if (name == "BEDS_ENV" || name.starts_with("BEDS__")) {
      options.environment.emplace_back(std::string(name), std::string(entry.substr(eq + 1)));
    }
  }
  return options;
}

namespace {

constexpr std::pair<HandlerKind, std::string_view> kHandlerNames[] = {
    {HandlerKind::kDispatch, "dispatch"}, {HandlerKind::kLogs, "logs"},
    {HandlerKind::kSyslog, "syslog"},     {HandlerKind::kMetrics, "metrics"},
    {HandlerKind::kCalgon, "calgon"},
};

}  // namespace

std::string_view EngineName(Engine engine) {
  switch (engine) {
    case Engine::kMariadb:
      return "mariadb";
    case Engine::kSqlite:
      return "sqlite";
    case Engine::kMongodb:
      return "mongodb";
  }
  return "unknown";
}

std::optional<Engine> EngineNamed(std::string_view name) {
  for (Engine e : {Engine::kMariadb, Engine::kSqlite, Engine::kMongodb}) {
    if (EngineName(e) == name) return e;
  }
  return std::nullopt;
}

std::string_view HandlerName(HandlerKind kind) {
  for (const auto& [k, name] : kHandlerNames) {
    if (k == kind) return name;
  }
  return "unknown";
}

std::optional<HandlerKind> HandlerNamed(std::string_view name) {
  for (const auto& [k, n] : kHandlerNames) {
    if (n == name) return k;
  }
  return std::nullopt;
}

bool ConsumesLogs(HandlerKind kind) {
  return kind == HandlerKind::kLogs || kind == HandlerKind::kSyslog ||
         kind == HandlerKind::kMetrics;
}

Result<Config> Load(const LoadOptions& options) {
  std::vector<std::string> errors;
  Config config;
  config.config_dir = options.config_dir;
  config.env = "dev";
  for (const auto& [name, value] : options.environment) {
    if (name == "BEDS_ENV" && !value.empty()) config.env = value;
  }
  if (options.env) config.env = *options.env;

  const fs::path dir(options.config_dir);
  const fs::path base = dir / "beds.toml";
  const fs::path overlay = dir / ("env_" + config.env + ".toml");
  if (!fs::exists(base)) {
    return Fail(Code::kValidation, base.string() + ": not found (is --config-dir right?)");
  }
  Origins origins;
  toml::table merged;
  if (auto t = ParseFile(base, errors)) {
    Merge(merged, *t, "", base.string(), origins);
    config.files.push_back(base.string());
  }
  // A node role (docs/configuration.md "Roles"): between the base and the env file.
  if (options.role && !options.role->empty()) {
    config.role = *options.role;
    const fs::path role = dir / "nodes" / (config.role + ".toml");
    if (!fs::exists(role)) {
      errors.push_back(role.string() + ": not found (role \"" + config.role + "\")");
    } else if (auto t = ParseFile(role, errors)) {
      Merge(merged, *t, "", role.string(), origins);
      config.files.push_back(role.string());
    }
  }
  if (!fs::exists(overlay) && options.env_file_required) {
    errors.push_back(overlay.string() + ": not found (--env " + config.env +
                     "): create it, or leave --env out to run on " + base.string() +
                     " and BEDS__* variables alone");
  }
  if (fs::exists(overlay)) {
    if (auto t = ParseFile(overlay, errors)) {
      Merge(merged, *t, "", overlay.string(), origins);
      config.files.push_back(overlay.string());
    }
  }
  for (const auto& [name, value] : options.environment) {
    if (name.starts_with("BEDS__")) ApplyEnvironment(merged, name, value, origins, errors);
  }
  if (errors.empty()) ReadSettings(merged, origins, config, errors);
  if (!errors.empty()) {
    std::string message;
    for (const auto& e : errors) message += (message.empty() ? "" : "\n") + e;
    return Fail(Code::kValidation, message);
  }

  std::ostringstream full;
  full << merged;
  config.digest = Fnv1a64Hex(full.str());
  MaskSecrets(merged);
  std::ostringstream masked;
  masked << merged;
  config.merged_toml = masked.str();
  return config;
}

}  // namespace beds::config
