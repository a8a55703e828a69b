// Typed reads with one error line per problem: "<where>: key 'a.b': expected <type>, got <type>".
#include "config/settings.hpp"

#include <algorithm>
#include <set>

namespace beds::config {
namespace {

std::string_view TypeName(toml::node_type type) {
  switch (type) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    default:
      return "date/time";
  }
}

// Reads the keys of one table; whatever it was not asked for is reported as unknown on Finish().
class TableReader {
 public:
  TableReader(const toml::table* table, std::string path, const Origins& origins,
              std::vector<std::string>& errors)
      : table_(table), path_(std::move(path)), origins_(origins), errors_(errors) {}

  void String(std::string_view key, std::string& out,
              const std::vector<std::string>& allowed = {}) {
    const toml::node* node = Take(key);
    if (!node) return;
    if (!node->is_string()) return Mismatch(key, *node, "string");
    std::string value = node->as_string()->get();
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), value) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : " | ") + a;
      return Error(key, "expected one of " + list + ", got \"" + value + "\"");
    }
    out = std::move(value);
  }

  void Bool(std::string_view key, bool& out) {
    const toml::node* node = Take(key);
    if (!node) return;
    if (!node->is_boolean()) return Mismatch(key, *node, "boolean");
    out = node->as_boolean()->get();
  }

  template <typename Int>
  void Integer(std::string_view key, Int& out, int64_t min, int64_t max) {
    const toml::node* node = Take(key);
    if (!node) return;
    if (!node->is_integer()) return Mismatch(key, *node, "integer");
    const int64_t v = node->as_integer()->get();
    if (v < min || v > max) {
      return Error(key, "expected an integer in [" + std::to_string(min) + ", " +
                            std::to_string(max) + "], got " + std::to_string(v));
    }
    out = static_cast<Int>(v);
  }

  void StringList(std::string_view key, std::vector<std::string>& out) {
    const toml::node* node = Take(key);
    if (!node) return;
    const auto* array = node->as_array();
    if (!array) return Mismatch(key, *node, "array of strings");
    std::vector<std::string> values;
    for (const auto& item : *array) {
      if (!item.is_string()) return Mismatch(key, item, "array of strings");
      values.push_back(item.as_string()->get());
    }
    out = std::move(values);
  }

  void IntegerList(std::string_view key, std::vector<int64_t>& out, int64_t min, int64_t max) {
    const toml::node* node = Take(key);
    if (!node) return;
    const auto* array = node->as_array();
    if (!array) return Mismatch(key, *node, "array of integers");
    std::vector<int64_t> values;
    for (const auto& item : *array) {
      if (!item.is_integer() || item.as_integer()->get() < min || item.as_integer()->get() > max) {
        return Error(key, "expected an array of integers in [" + std::to_string(min) + ", " +
                              std::to_string(max) + "]");
      }
      values.push_back(item.as_integer()->get());
    }
    out = std::move(values);
  }

  // A sub-table (nullptr when absent); reports a non-table value.
  const toml::table* Table(std::string_view key) {
    const toml::node* node = Take(key);
    if (!node) return nullptr;
    if (!node->is_table()) {
      Mismatch(key, *node, "table");
      return nullptr;
    }
    return node->as_table();
  }

  const toml::node* Raw(std::string_view key) { return Take(key); }

  std::string PathOf(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

  void Error(std::string_view key, const std::string& what) {
    const std::string path = PathOf(key);
    auto it = origins_.find(path);
    const std::string where = it == origins_.end() ? "(merged config)" : it->second;
    errors_.push_back(where + ": key '" + path + "': " + what);
  }

  // A key that was taken away: an error saying what replaced it rather than "unknown key".
  void Removed(std::string_view key, const std::string& instead) {
    if (Take(key) != nullptr) Error(key, "no longer a setting: " + instead);
  }

  void Finish() {
    if (!table_) return;
    for (auto&& [key, node] : *table_) {
      if (!seen_.contains(std::string(key.str()))) Error(key.str(), "unknown key");
    }
  }

 private:
  const toml::node* Take(std::string_view key) {
    if (!table_) return nullptr;
    seen_.insert(std::string(key));
    return table_->get(key);
  }

  void Mismatch(std::string_view key, const toml::node& node, std::string_view expected) {
    Error(key, "expected " + std::string(expected) + ", got " + std::string(TypeName(node.type())));
  }

  const toml::table* table_;
  std::string path_;
  const Origins& origins_;
  std::vector<std::string>& errors_;
  std::set<std::string> seen_;
};

// 1-64 characters of [a-z0-9_-] (and A-Z when allowed): names that go into ids and queue names.
bool IsName(std::string_view s, bool allow_upper) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [&](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
           (allow_upper && ch >= 'A' && ch <= 'Z');
  });
}

void ReadNode(TableReader& root, Config& c, const Origins& o, std::vector<std::string>& errors) {
  TableReader r(root.Table("node"), "node", o, errors);
  r.String("name", c.node.name);
  c.node.production = c.env == "prod";
  r.Bool("production", c.node.production);
  r.String("broker_service", c.node.broker_service);
  r.Bool("fault_injection", c.node.fault_injection);
  r.Integer("shutdown_grace_ms", c.node.shutdown_grace_ms, 0, 3600000);
  r.Finish();
  if (!IsName(c.node.name, false)) {
    r.Error("name", "expected 1-64 characters of [a-z0-9_-], got \"" + c.node.name + "\"");
  }
  if (c.node.production && c.node.fault_injection) {
    r.Error("fault_injection", "must be false on a production node");
  }
}

void ReadAmqp(const toml::table* table, const std::string& path, const Origins& o,
              std::vector<std::string>& errors, AmqpSettings& s) {
  TableReader r(table, path, o, errors);
  r.String("host", s.host);
  r.Integer("port", s.port, 1, 65535);
  r.String("user", s.user);
  r.String("pass", s.pass);
  r.String("vhost", s.vhost);
  r.Bool("tls", s.tls);
  r.Bool("tls_verify", s.tls_verify);
  r.String("tls_ca_file", s.tls_ca_file);
  r.Integer("heartbeat_s", s.heartbeat_s, 0, 3600);
  r.Integer("connect_timeout_ms", s.connect_timeout_ms, 1, 600000);
  r.Finish();
}

void ReadDatabase(const toml::table* table, const std::string& path, const Origins& o,
                  std::vector<std::string>& errors, DatabaseSettings& s) {
  TableReader r(table, path, o, errors);
  std::string engine(EngineName(s.engine));
  r.String("engine", engine, {"mariadb", "sqlite", "mongodb"});
  if (const auto named = EngineNamed(engine)) s.engine = *named;
  r.String("host", s.host);
  r.Integer("port", s.port, 1, 65535);
  r.String("socket", s.socket);
  r.String("user", s.user);
  r.String("pass", s.pass);
  r.String("database", s.database);
  r.String("path", s.path);
  r.String("uri", s.uri);
  r.Integer("reconnect_wait_ms", s.reconnect_wait_ms, 0, 600000);
  r.Integer("query_timeout_ms", s.query_timeout_ms, 1000, 3600000);
  r.Integer("max_document_bytes", s.max_document_bytes, 1, 1024LL * 1024 * 1024);
  r.Integer("sweep_interval_s", s.sweep_interval_s, 0, 86400);
  r.String("synchronous", s.synchronous, {"off", "normal", "full"});
  r.String("write_concern", s.write_concern);
  if (s.write_concern != "majority" &&
      (s.write_concern.empty() || s.write_concern.size() > 2 ||
       !std::all_of(s.write_concern.begin(), s.write_concern.end(), ::isdigit) ||
       s.write_concern == "0" || s.write_concern == "00")) {
    r.Error("write_concern",
            "expected \"majority\" or a number of nodes (1-99), got \"" + s.write_concern + "\"");
  }
  if (s.engine == Engine::kSqlite && s.path.empty())
    r.Error("path", "is required for engine sqlite");
  if (s.engine == Engine::kMongodb && s.uri.empty())
    r.Error("uri", "is required for engine mongodb");
  if (const toml::node* node = r.Raw("secondaries")) {
    const auto* array = node->as_array();
    if (!array) {
      r.Error("secondaries", "expected array of { host, port } tables");
    } else {
      for (size_t i = 0; i < array->size(); ++i) {
        const auto* t = array->get(i)->as_table();
        const std::string sub = path + ".secondaries[" + std::to_string(i) + "]";
        if (!t) {
          r.Error("secondaries", "expected array of { host, port } tables");
          continue;
        }
        HostPort hp;
        TableReader hr(t, sub, o, errors);
        hr.String("host", hp.host);
        hr.Integer("port", hp.port, 1, 65535);
        hr.Finish();
        s.secondaries.push_back(hp);
      }
    }
  }
  r.Finish();
}

void ReadBroker(const toml::table* table, const std::string& path, const Origins& o,
                std::vector<std::string>& errors, BrokerSettings& s) {
  TableReader r(table, path, o, errors);
  r.Bool("enabled", s.enabled);
  std::string handler(HandlerName(s.handler));
  r.String("handler", handler, {"dispatch", "logs", "syslog", "metrics", "control", "calgon"});
  r.Integer("instances", s.instances, 1, 1024);
  r.Integer("prefetch", s.prefetch, 1, 65535);
  r.String("queue_type", s.queue_type, {"classic", "quorum"});
  r.StringList("bindings", s.bindings);
  r.Integer("max_retries", s.max_retries, 0, 1000);
  r.IntegerList("retry_backoff_ms", s.retry_backoff_ms, 1, 86400000);
  r.Integer("batch_ms", s.batch_ms, 1, 60000);
  r.String("level", s.level, {"trace", "debug", "info", "warn", "error", "critical"});
  r.String("syslog_socket", s.syslog_socket);
  r.Finish();
  if (s.retry_backoff_ms.empty()) r.Error("retry_backoff_ms", "expected at least one delay");
  if (const auto kind = HandlerNamed(handler)) {
    s.handler = *kind;
  } else if (handler == "control") {
    r.Error("handler", "handler \"" + handler + "\" is not available in this build yet");
  }
}

}  // namespace

void ReadSettings(const toml::table& merged, const Origins& o, Config& c,
                  std::vector<std::string>& errors) {
  TableReader root(&merged, "", o, errors);
  ReadNode(root, c, o, errors);

  if (const toml::table* services = root.Table("broker_services")) {
    for (auto&& [name, node] : *services) {
      const std::string path = "broker_services." + std::string(name.str());
      AmqpSettings s;
      if (!node.is_table()) {
        errors.push_back(o.count(path) ? o.at(path) + ": key '" + path + "': expected table"
                                       : "key '" + path + "': expected table");
        continue;
      }
      ReadAmqp(node.as_table(), path, o, errors, s);
      c.broker_services[std::string(name.str())] = s;
    }
  }
  if (auto it = c.broker_services.find(c.node.broker_service); it != c.broker_services.end()) {
    c.amqp = it->second;
  } else {
    root.Error("node.broker_service",
               "names [broker_services." + c.node.broker_service + "], which is not configured");
  }

  if (const toml::table* dbs = root.Table("databases")) {
    for (auto&& [name, node] : *dbs) {
      const std::string path = "databases." + std::string(name.str());
      DatabaseSettings s;
      s.name = std::string(name.str());
      ReadDatabase(node.as_table(), path, o, errors, s);
      if (!node.is_table()) root.Error(path, "expected table");
      c.databases[s.name] = s;
    }
  }

  if (const toml::table* brokers = root.Table("brokers")) {
    for (auto&& [name, node] : *brokers) {
      const std::string path = "brokers." + std::string(name.str());
      BrokerSettings s;
      s.name = std::string(name.str());
      if (!node.is_table()) {
        root.Error(path, "expected table");
        continue;
      }
      if (!IsName(s.name, true)) {
        root.Error(path, "broker names are 1-64 characters of [A-Za-z0-9_-]");
      }
      ReadBroker(node.as_table(), path, o, errors, s);
      if (s.enabled) c.brokers.push_back(s);
    }
  }

  {
    TableReader r(root.Table("protocol"), "protocol", o, errors);
    r.Integer("max_body_bytes", c.protocol.max_body_bytes, 64, int64_t{128} << 20);
    r.Integer("max_reply_bytes", c.protocol.max_reply_bytes, 1024, int64_t{128} << 20);
    r.Integer("max_batch", c.protocol.max_batch, 1, 10000);
    r.Finish();
  }
  {
    TableReader r(root.Table("access"), "access", o, errors);
    r.StringList("node_users", c.access.node_users);
    r.StringList("trusted_users", c.access.trusted_users);
    if (const toml::table* clients = r.Table("clients")) {
      for (auto&& [name, node] : *clients) {
        const std::string key = "clients." + std::string(name.str());
        if (!node.is_table()) {
          r.Error(key, "expected a table");
          continue;
        }
        TableReader client(node.as_table(), "access." + key, o, errors);
        client.StringList("allow", c.access.clients[std::string(name.str())]);
        client.Finish();
      }
    }
    r.Finish();
  }
  {
    TableReader r(root.Table("idempotency"), "idempotency", o, errors);
    r.Bool("enabled", c.idempotency.enabled);
    r.Integer("ttl_s", c.idempotency.ttl_s, 60, int64_t{3650} * 86400);
    r.Integer("sweep_every_s", c.idempotency.sweep_every_s, 0, 86400);
    r.Integer("sweep_batch", c.idempotency.sweep_batch, 1, 100000);
    r.Finish();
  }
  {
    TableReader r(root.Table("calgon"), "calgon", o, errors);
    r.String("broker", c.calgon.broker);
    r.String("ticket_template", c.calgon.ticket_template);
    r.Integer("result_ttl_s", c.calgon.result_ttl_s, 60, int64_t{3650} * 86400);
    r.Integer("max_wait_ms", c.calgon.max_wait_ms, 100, 600000);
    r.Finish();
  }
  {
    TableReader r(root.Table("templates"), "templates", o, errors);
    r.String("dir", c.templates.dir);
    r.Finish();
  }
  {
    TableReader r(root.Table("gateway"), "gateway", o, errors);
    r.Bool("enabled", c.gateway.enabled);
    r.String("listen", c.gateway.listen);
    r.Integer("threads", c.gateway.threads, 1, 64);
    r.Removed("amqp_connections",
              "each of the gateway's `threads` has its own broker connection; set threads "
              "instead and remove this key");
    r.Integer("timeout_ms", c.gateway.timeout_ms, 1, 600000);
    r.Integer("max_body_bytes", c.gateway.max_body_bytes, 1024, int64_t{1} << 30);
    r.Integer("max_header_bytes", c.gateway.max_header_bytes, 1024, 1 << 20);
    r.Integer("max_connections", c.gateway.max_connections, 1, 1000000);
    r.Integer("idle_timeout_ms", c.gateway.idle_timeout_ms, 100, 3600000);
    r.StringList("cors_origins", c.gateway.cors_origins);
    r.Integer("ws_max_in_flight", c.gateway.ws_max_in_flight, 1, 100000);
    r.String("cert_file", c.gateway.cert_file);
    r.String("key_file", c.gateway.key_file);
    r.Bool("console", c.gateway.console);
    if (c.gateway.cert_file.empty() != c.gateway.key_file.empty()) {
      r.Error(c.gateway.cert_file.empty() ? "key_file" : "cert_file",
              "HTTPS needs both cert_file and key_file");
    }
    if (const toml::table* auth = r.Table("auth")) {
      TableReader a(auth, "gateway.auth", o, errors);
      a.Bool("required", c.gateway.auth.required);
      if (const toml::table* principals = a.Table("principals")) {
        for (auto&& [name, node] : *principals) {
          const std::string key = "principals." + std::string(name.str());
          if (!node.is_table()) {
            a.Error(key, "expected a table");
            continue;
          }
          TableReader p(node.as_table(), "gateway.auth." + key, o, errors);
          GatewayPrincipal principal{std::string(name.str()), "", {}};
          p.String("token", principal.token);
          p.StringList("allow", principal.allow);
          p.Integer("rate_per_s", principal.rate_per_s, 0, 1000000);
          p.Integer("burst", principal.burst, 0, 1000000);
          p.Finish();
          if (principal.token.size() < 16) {
            a.Error(key + ".token",
                    "a token of at least 16 characters is required (e.g. from `openssl rand -hex "
                    "24`)");
          }
          for (const auto& other : c.gateway.auth.principals) {
            if (!principal.token.empty() && other.token == principal.token) {
              a.Error(key + ".token", "the same token as principal '" + other.name + "'");
            }
          }
          c.gateway.auth.principals.push_back(std::move(principal));
        }
      }
      if (const toml::table* jwt = a.Table("jwt")) {
        TableReader j(jwt, "gateway.auth.jwt", o, errors);
        GatewayJwtSettings& s = c.gateway.auth.jwt;
        j.String("secret", s.secret);
        j.String("rs256_public_key_file", s.rs256_public_key_file);
        j.String("issuer", s.issuer);
        j.String("audience", s.audience);
        j.String("allow_claim", s.allow_claim);
        j.Finish();
        if (!s.secret.empty() && s.secret.size() < 32) {
          j.Error("secret",
                  "an HS256 secret of at least 32 characters is required (e.g. from "
                  "`openssl rand -hex 32`)");
        }
      }
      a.Finish();
      if (c.gateway.auth.required && c.gateway.auth.principals.empty() &&
          !c.gateway.auth.jwt.enabled()) {
        a.Error("required",
                "true, but no [gateway.auth.principals.*] or [gateway.auth.jwt] is configured: "
                "nobody could call");
      }
    }
    r.Finish();
  }
  {
    TableReader r(root.Table("logging"), "logging", o, errors);
    r.String("level", c.logging.level,
             {"trace", "debug", "info", "warn", "error", "critical", "off"});
    r.Bool("console", c.logging.console);
    r.Bool("journald", c.logging.journald);
    r.Bool("amqp", c.logging.amqp);
    r.String("broker_service", c.logging.broker_service);
    r.Integer("buffer_events", c.logging.buffer_events, 1, 10000000);
    r.Integer("flush_ms", c.logging.flush_ms, 0, 10000);
    r.String("spill_path", c.logging.spill_path);
    r.Integer("spill_max_bytes", c.logging.spill_max_bytes, 0, int64_t{1} << 40);
    r.String("store_template", c.logging.store_template);
    r.Integer("metrics_interval_s", c.logging.metrics_interval_s, 0, 86400);
    r.Finish();
    c.log_amqp = c.amqp;
    if (!c.logging.broker_service.empty()) {
      if (auto it = c.broker_services.find(c.logging.broker_service);
          it != c.broker_services.end()) {
        c.log_amqp = it->second;
      } else {
        r.Error("broker_service", "names [broker_services." + c.logging.broker_service +
                                      "], which is not configured");
      }
    }
    if (c.logging.spill_path.empty()) c.logging.spill_path = "var/spill/" + c.node.name + ".events";
  }
  {
    TableReader r(root.Table("metrics"), "metrics", o, errors);
    r.String("listen", c.metrics.listen);
    r.Finish();
  }
  root.Finish();
}

}  // namespace beds::config
