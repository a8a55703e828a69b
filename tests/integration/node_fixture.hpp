// Integration-test fixture: the real `beds` binary against the real RabbitMQ started by
// scripts/servers.sh (ctest's `servers` fixture). Every test gets its own vhost, so tests never
// see each other's queues; every node it starts is a child process it stops itself.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "amqp/connection.hpp"
#include "client/client.hpp"
#include "config/config.hpp"
#include "protocol/envelope.hpp"

namespace beds::testing {

// The repository: schema files, templates and test domains are read from here.
inline const std::string kSource = BEDS_SOURCE_DIR;

struct NodeOptions {
  std::string name = "appserver";
  int instances = 2;
  int prefetch = 16;
  int max_retries = 2;
  std::string retry_backoff_ms = "[50, 100]";
  int64_t max_body_bytes = 1 << 20;
  bool fault_injection = true;
  bool production = false;
  std::string queue_type = "classic";
  int db_port = 0;  // 0: the fixture's MariaDB
  std::string database = "beds";
  std::string db_extra;       // more keys for [databases.main]
  std::string templates_dir;  // "": an empty directory (system templates only)
  std::string docs_path;      // [databases.docs] (sqlite) file; "": one in the node's config dir
  std::string docs_extra;     // more keys for [databases.docs]
  bool tls = false;           // talk to the broker over TLS, verifying it against the fixture's CA
  std::string tls_ca_file;    // "" = the fixture's CA
  int64_t shutdown_grace_ms = 30000;
  std::string extra_toml;  // appended to beds.toml
  bool dispatch = true;  // run the rBroker dispatch pool (false: an admin node's own brokers only)
  std::string broker_vhost;   // "": `vhost`; else the node's own broker_service uses this vhost
  std::string logging_extra;  // more keys for [logging] (spill_path is the node dir's spill.events)
};

// A `beds run` child process with its own config directory.
class NodeProcess {
 public:
  NodeProcess(const std::string& vhost, const NodeOptions& options);
  ~NodeProcess();  // SIGKILL if still running
  pid_t pid() const { return pid_; }
  bool running();
  // Sends `signal` and waits for the exit; returns the exit code (or 128+signal).
  int Signal(int signal, std::chrono::seconds timeout = std::chrono::seconds(60));
  // Waits for the process to exit by itself; nullopt on timeout.
  std::optional<int> Wait(std::chrono::seconds timeout);
  std::string Log() const;
  const std::string& config_dir() const { return dir_; }

 private:
  std::string dir_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
};

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;

  config::AmqpSettings Amqp() const;
  // Starts a node and waits until it answers sys/ping.
  NodeProcess& StartNode(const NodeOptions& options = {});
  std::unique_ptr<client::Client> NewClient();
  // One request through the test's client; fails the test on no reply.
  protocol::Reply Call(const std::string& routing_key, const std::string& body,
                       std::chrono::milliseconds timeout = std::chrono::seconds(10));
  boost::json::object Ping();
  // Messages parked in beds.{broker}.dlq, taken off the queue.
  std::vector<amqp::Delivery> DrainDlq(const std::string& broker = "rBroker");
  // Drains the DLQ until `n` messages have arrived or 10 s pass; returns what arrived.
  std::vector<amqp::Delivery> WaitForParked(size_t n, const std::string& broker = "rBroker");
  // Runs scripts/servers.sh with `command`; true on success.
  static bool Servers(const std::string& command);

  std::string vhost_;
  std::unique_ptr<client::Client> client_;
  std::vector<std::unique_ptr<NodeProcess>> nodes_;
};

// A test with a domain of its own, as a user adds one (docs/templates.md): a fresh database
// loaded with SQL files, and a scratch directory whose templates/ holds copies of template files
// (the test may write more there). The directory goes after a test that passed; a failed test's
// is kept to look at.
class DomainTest : public NodeTest {
 protected:
  // NodeTest::SetUp, then the domain: call it from SetUp.
  void SetUpDomain(const std::vector<std::string>& sql_files,
                   const std::vector<std::string>& template_files);
  void TearDown() override;
  // A node on this domain: its database, its templates, and a SQLite document store in the
  // scratch directory, kept when a node is replaced.
  NodeOptions DomainOptions() const;
  // The output of `sql` on the domain's database (one value: the first column of the first row),
  // without the trailing newline; the statement must succeed.
  std::string Scalar(const std::string& sql);

  std::string db_;
  std::filesystem::path dir_;
  std::filesystem::path templates_;  // dir_ / "templates"
};

// A shell command's exit code and its stdout + stderr.
struct CommandResult {
  int exit_code = -1;
  std::string output;
};
CommandResult RunCommand(const std::string& command);

// A throwaway directory holding the given files (name → text), removed again at the end.
using ConfigFiles = std::vector<std::pair<std::string, std::string>>;
class TempConfigDir {
 public:
  explicit TempConfigDir(const ConfigFiles& files);
  TempConfigDir(const TempConfigDir&) = delete;
  TempConfigDir& operator=(const TempConfigDir&) = delete;
  ~TempConfigDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The fixture's MariaDB. `Sql` runs statements as the beds user (the mariadb client, batch
// mode: one line per row, tab-separated) and returns the output; `FreshDatabase` drops and
// re-creates a database and loads the given .sql files into it.
// `secondary`: the second, independent server of `servers.sh start-secondary` instead.
CommandResult Sql(const std::string& database, const std::string& statements,
                  bool secondary = false);
bool FreshDatabase(const std::string& database, const std::vector<std::string>& sql_files,
                   bool secondary = false);
inline constexpr int kSecondaryMariadbPort = BEDS_TEST_MARIADB_PORT + 10;

// A database name of the running test's own: "it_" and its name, lowercased, cut to 40 characters.
std::string TestDatabaseName();

// A loopback TCP port that was free a moment ago (bound to port 0, then closed); 0 on failure.
int FreePort();

// Polls `condition` every 20 ms until it holds or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout);

}  // namespace beds::testing
