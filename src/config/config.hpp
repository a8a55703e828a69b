// Configuration (docs/configuration.md): config/beds.toml deep-merged with
// config/env_{BEDS_ENV}.toml, then BEDS__SECTION__KEY=value environment variables, read into one
// typed struct per part. This part is the only code that reads environment variables. Load() is
// called once at IPL (and by `beds config check`); the returned Config is immutable and shared
// read-only.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"

namespace beds::config {

struct NodeSettings {
  std::string name = "appserver";             // [a-z0-9_-]; goes into every event id
  bool production = false;                    // default: true when env = prod
  std::string broker_service = "app_server";  // which [broker_services.*] this node uses
  bool fault_injection = false;       // enables sys/call "fault" for tests; refused in production
  int64_t shutdown_grace_ms = 30000;  // how long in-flight work may take to finish at shutdown
};

struct AmqpSettings {
  std::string host = "localhost";
  int port = 5672;
  std::string user = "guest";
  std::string pass;
  std::string vhost = "/";
  bool tls = false;
  bool tls_verify = true;   // verify the broker's certificate and host name
  std::string tls_ca_file;  // "" = the system store
  int heartbeat_s = 30;
  int connect_timeout_ms = 5000;
};

struct HostPort {
  std::string host;
  int port = 3306;
};

// A database's engine ([databases.*] engine).
enum class Engine { kMariadb, kSqlite, kMongodb };
// Its name in the configuration: "mariadb", "sqlite", "mongodb"; and back (nullopt otherwise).
std::string_view EngineName(Engine engine);
std::optional<Engine> EngineNamed(std::string_view name);

struct DatabaseSettings {
  std::string name;  // the table name under [databases]
  Engine engine = Engine::kMariadb;
  std::string host = "127.0.0.1";
  int port = 3306;
  std::string socket;
  std::string user = "beds";
  std::string pass;
  std::string database = "beds";
  std::vector<HostPort> secondaries;
  std::string path;  // sqlite
  std::string uri;   // mongodb
  // How long a request waits for a lost database connection to come back before it is answered
  // UNAVAILABLE (bounded by the request's deadline). Keep well below 2 × heartbeat_s.
  int64_t reconnect_wait_ms = 5000;
  int64_t query_timeout_ms = 30000;  // a statement running longer is abandoned (UNAVAILABLE)
  // REC engines (sqlite, mongodb).
  int64_t max_document_bytes = 16 * 1024 * 1024;  // a larger document is TOO_LARGE
  int64_t sweep_interval_s = 60;                  // sqlite: how often TTL indexes are swept
  std::string synchronous = "full";               // sqlite: PRAGMA synchronous (off|normal|full)
  std::string write_concern = "majority";         // mongodb: "majority" or a number of nodes
};

// What a broker pool's workers do with its messages ([brokers.*] handler).
enum class HandlerKind { kDispatch, kLogs, kSyslog, kMetrics, kCalgon };
// Its name in the configuration: "dispatch", "logs", "syslog", "metrics", "calgon".
std::string_view HandlerName(HandlerKind kind);
// The kind a configuration name stands for; nullopt for any other name.
std::optional<HandlerKind> HandlerNamed(std::string_view name);
// The admin handlers consume beds.logs (log, audit and metric events); the others beds.events.
bool ConsumesLogs(HandlerKind kind);

struct BrokerSettings {
  std::string name;     // the table name under [brokers]; the queue is beds.{name}
  bool enabled = true;  // false: this node does not run it (a role file turns off the base's)
  HandlerKind handler = HandlerKind::kDispatch;
  int instances = 8;
  int prefetch = 16;
  std::string queue_type = "classic";  // classic | quorum
  std::vector<std::string> bindings;
  int max_retries = 5;
  std::vector<int64_t> retry_backoff_ms = {100, 1000, 10000};
  // handler = "logs": a batch is stored when it has `prefetch` events or is this old.
  int64_t batch_ms = 200;
  // handler = "syslog": events at or above this level are forwarded, to this datagram socket.
  std::string level = "warn";
  std::string syslog_socket = "/dev/log";
};

struct ProtocolSettings {
  int64_t max_body_bytes = 1 << 20;    // larger requests are answered TOO_LARGE and parked
  int64_t max_reply_bytes = 16 << 20;  // larger results are answered TOO_LARGE instead
  int64_t max_batch = 100;             // envelopes in one batch envelope
};

// Who may use the brokers (docs/operations.md "Access"), by the AMQP user RabbitMQ verified.
struct AccessSettings {
  // Users of BEDS nodes: the only senders whose log events the admin node stores ([] = anyone,
  // for development). Nodes may call every template.
  std::vector<std::string> node_users;
  // Users (a gateway's) whose messages may name the principal they act for (x-beds-actor).
  std::vector<std::string> trusted_users;
  // Client users and the template/op patterns each may call. Empty: every sender may call
  // everything (development); otherwise a sender that is none of these is FORBIDDEN.
  std::map<std::string, std::vector<std::string>> clients;
};

// Exactly-once writes (docs/protocol.md "Exactly once"): each write's identity and reply are
// recorded with its effect, and a repeat is answered from the record instead of applied again.
struct IdempotencySettings {
  bool enabled = true;
  int64_t ttl_s = 86400;       // how long a record is kept (at least)
  int64_t sweep_every_s = 60;  // how often a node deletes expired records; 0 = never
  int64_t sweep_batch = 1000;  // records deleted per statement (a sweep runs until none is left)
};

// CALGON async jobs (docs/protocol.md "CALGON"): where jobs go and how long tickets live.
struct CalgonSettings {
  std::string broker = "cBroker";           // the [brokers.*] with handler = "calgon"
  std::string ticket_template = "Tickets";  // the REC template of the ticket store
  int64_t result_ttl_s = 86400;             // a finished ticket (and its result) is kept this long
  int64_t max_wait_ms = 30000;              // calgon/wait's longest timeout_ms
};

struct TemplatesSettings {
  std::string dir = "templates";
};

// A caller of the gateway: who it is, the token it presents, what it may call.
struct GatewayPrincipal {
  std::string name;   // the [gateway.auth.principals.*] table's name: the actor
  std::string token;  // Authorization: Bearer {token} or X-Api-Key: {token}
  // "Users/*", "*/fetch", "Users/call:get", "calgon/*", "*"
  std::vector<std::string> allow;
  int64_t rate_per_s = 0;  // requests per second at most (a token bucket); 0 = no limit
  int64_t burst = 0;       // the bucket's size; 0 = rate_per_s
};

// JWT bearer tokens: HS256 with `secret`, RS256 with the issuer's public key.
struct GatewayJwtSettings {
  std::string secret;                      // HS256 shared secret; "" = HS256 off
  std::string rs256_public_key_file;       // PEM; "" = RS256 off
  std::string issuer;                      // required `iss` when set
  std::string audience;                    // required in `aud` when set
  std::string allow_claim = "beds_allow";  // the claim holding the template/op patterns
  bool enabled() const { return !secret.empty() || !rs256_public_key_file.empty(); }
};

struct GatewayAuthSettings {
  bool required = false;  // true: every /v1 request needs a principal's token
  std::vector<GatewayPrincipal> principals;
  GatewayJwtSettings jwt;
};

struct GatewaySettings {
  bool enabled = false;
  std::string listen = "127.0.0.1:8080";
  int64_t threads = 1;                    // HTTP threads, each with its own broker connection
  int64_t timeout_ms = 30000;             // a request's deadline when the client sets none
  int64_t max_body_bytes = 1 << 20;       // a larger request body is answered 413
  int64_t max_header_bytes = 16384;       // larger request headers are answered 431
  int64_t max_connections = 1024;         // past this, a new connection is answered 503
  int64_t ws_max_in_flight = 64;          // a WebSocket's requests waiting for replies, at most
  int64_t idle_timeout_ms = 60000;        // a connection idle (or a request arriving) this long
  std::vector<std::string> cors_origins;  // origins browsers may call from ("*" = any)
  std::string cert_file;                  // PEM certificate chain: HTTPS ("" = plain HTTP)
  std::string key_file;                   // its PEM private key
  bool console = true;                    // serve the console page at /
  GatewayAuthSettings auth;
};

struct LoggingSettings {
  std::string level = "info";  // trace | debug | info | warn | error | critical | off
  bool console = true;
  bool journald = false;
  bool amqp = true;               // publish log, audit and metric events on beds.logs
  std::string broker_service;     // [broker_services.*] the log sink uses; "" = the node's
  int64_t buffer_events = 10000;  // events waiting in memory for the publisher
  int64_t flush_ms = 50;          // how long an event may wait for others to share its publish
  std::string spill_path;         // overflow file; "" = var/spill/{node}.events
  int64_t spill_max_bytes = int64_t{256} << 20;  // past this, events are dropped (and counted)
  std::string store_template = "Logs";           // the REC template of the log store (msLogs)
  int64_t metrics_interval_s =
      10;  // how often a node publishes its counters (metric.{node}); 0 = never
};

struct MetricsSettings {
  std::string listen;  // "127.0.0.1:9464" serves GET /metrics (Prometheus text); "" = off
};

struct Config {
  std::string env = "dev";
  std::string config_dir = "config";
  std::vector<std::string> files;  // the files that were merged, in order
  std::string role;                // "" or the nodes/{role}.toml that was merged

  NodeSettings node;
  std::map<std::string, AmqpSettings> broker_services;
  AmqpSettings amqp;  // = broker_services[node.broker_service]
  std::map<std::string, DatabaseSettings> databases;
  std::vector<BrokerSettings> brokers;  // sorted by name
  ProtocolSettings protocol;
  AccessSettings access;
  IdempotencySettings idempotency;
  CalgonSettings calgon;
  TemplatesSettings templates;
  GatewaySettings gateway;
  LoggingSettings logging;
  MetricsSettings metrics;
  AmqpSettings log_amqp;  // = broker_services[logging.broker_service], or amqp

  std::string merged_toml;  // the merged document, secrets masked (`beds config check`)
  std::string digest;       // 16 hex digits over the merged document, secrets included
};

struct LoadOptions {
  std::string config_dir = "config";
  std::optional<std::string> env;  // --env; else BEDS_ENV; else "dev"
  // The env was named on the command line: its env_{env}.toml must exist (a typo in --env would
  // otherwise run silently on the base defaults). FromEnvironment() sets it when `env` is given.
  bool env_file_required = false;
  std::optional<std::string> role;  // --role; else BEDS_ROLE: merges nodes/{role}.toml
  // BEDS_ENV and BEDS__* variables; FromEnvironment() fills them from the process.
  std::vector<std::pair<std::string, std::string>> environment;
};

// Reads BEDS_ENV, BEDS_ROLE and every BEDS__* variable of this process into options.environment.
LoadOptions FromEnvironment(std::string config_dir, std::optional<std::string> env);

// Loads, merges and validates. The error (code VALIDATION) lists every problem, one per line,
// each naming the file (and line) or variable, the key and the expected type.
Result<Config> Load(const LoadOptions& options);

}  // namespace beds::config
