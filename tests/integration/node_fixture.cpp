#include "integration/node_fixture.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/lineage.hpp"

namespace beds::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr int kAmqpPort = BEDS_TEST_AMQP_PORT;
constexpr int kAmqpsPort = BEDS_TEST_AMQPS_PORT;
constexpr int kMariadbPort = BEDS_TEST_MARIADB_PORT;

}  // namespace

CommandResult RunCommand(const std::string& command) {
  const std::string out = fs::temp_directory_path() / ("beds-it-cmd-" + NewGuid());
  const int status = std::system((command + " >" + out + " 2>&1").c_str());
  std::ifstream in(out);
  CommandResult r;
  r.output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  fs::remove(out);
  return r;
}

TempConfigDir::TempConfigDir(const ConfigFiles& files)
    : path_(fs::temp_directory_path() / ("beds-it-conf-" + NewGuid())) {
  fs::create_directories(path_);
  for (const auto& [name, text] : files) std::ofstream(fs::path(path_) / name) << text;
}

TempConfigDir::~TempConfigDir() { fs::remove_all(path_); }

CommandResult Sql(const std::string& database, const std::string& statements, bool secondary) {
  const std::string file = fs::temp_directory_path() / ("beds-it-sql-" + NewGuid());
  std::ofstream(file) << statements;
  const int port = secondary ? kSecondaryMariadbPort : kMariadbPort;
  auto r = RunCommand("mariadb --no-defaults -h127.0.0.1 -P" + std::to_string(port) +
                      " -ubeds -pbeds --batch --skip-column-names " + database + " <" + file);
  fs::remove(file);
  return r;
}

bool FreshDatabase(const std::string& database, const std::vector<std::string>& sql_files,
                   bool secondary) {
  std::string command = std::string("env ") + BEDS_SERVERS_ENV + " " + BEDS_SERVERS_SCRIPT +
                        (secondary ? " database-secondary " : " database ") + database;
  // Every database BEDS writes to holds the exactly-once records (docs/templates.md).
  const std::string once =
      std::string(BEDS_SOURCE_DIR) + "/schema/mariadb/000_beds_idempotency.sql";
  if (std::none_of(sql_files.begin(), sql_files.end(),
                   [&](const std::string& f) { return f.ends_with("000_beds_idempotency.sql"); })) {
    command += " " + once;
  }
  for (const auto& f : sql_files) command += " " + f;
  auto r = RunCommand(command);
  if (r.exit_code != 0) std::cerr << r.output;
  return r.exit_code == 0;
}

void DomainTest::SetUpDomain(const std::vector<std::string>& sql_files,
                             const std::vector<std::string>& template_files) {
  NodeTest::SetUp();
  if (HasFatalFailure()) return;
  db_ = TestDatabaseName();
  ASSERT_TRUE(FreshDatabase(db_, sql_files));
  dir_ = std::filesystem::temp_directory_path() / ("beds-it-" + db_ + "-" + NewGuid().substr(24));
  templates_ = dir_ / "templates";
  std::filesystem::create_directories(templates_);
  for (const auto& f : template_files) {
    std::filesystem::copy_file(f, templates_ / std::filesystem::path(f).filename());
  }
}

void DomainTest::TearDown() {
  NodeTest::TearDown();
  if (!HasFailure() && !dir_.empty()) std::filesystem::remove_all(dir_);
}

NodeOptions DomainTest::DomainOptions() const {
  NodeOptions o;
  o.database = db_;
  o.templates_dir = templates_.string();
  o.docs_path = (dir_ / "docs.sqlite").string();
  return o;
}

std::string DomainTest::Scalar(const std::string& sql) {
  CommandResult r = Sql(db_, sql);
  EXPECT_EQ(r.exit_code, 0) << sql << ": " << r.output;
  while (!r.output.empty() && (r.output.back() == '\n' || r.output.back() == '\r')) {
    r.output.pop_back();
  }
  return r.output;
}

std::string TestDatabaseName() {
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::transform(name.begin(), name.end(), name.begin(), ::tolower);
  return "it_" + name.substr(0, 40);
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  if (fd >= 0) close(fd);
  return port;
}

bool WaitFor(const std::function<bool()>& condition, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (condition()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return condition();
}

NodeProcess::NodeProcess(const std::string& vhost, const NodeOptions& o) {
  dir_ = fs::temp_directory_path() / ("beds-it-" + vhost + "-" + o.name);
  fs::remove_all(dir_);
  fs::create_directories(dir_);
  std::string templates = o.templates_dir;
  if (templates.empty()) {
    templates = (fs::path(dir_) / "templates").string();
    fs::create_directories(templates);
  }
  std::ofstream(fs::path(dir_) / "beds.toml")
      << "[node]\nname = \"" << o.name
      << "\"\nfault_injection = " << (o.fault_injection ? "true" : "false")
      << "\nshutdown_grace_ms = " << o.shutdown_grace_ms
      << "\nproduction = " << (o.production ? "true" : "false") << "\n"
      << "[broker_services.app_server]\n"
      << (o.tls ? "host = \"localhost\"\ntls = true\ntls_ca_file = \"" +
                      (o.tls_ca_file.empty() ? std::string(BEDS_TEST_VAR) + "/rabbitmq/tls/ca.pem"
                                             : o.tls_ca_file) +
                      "\"\nport = " + std::to_string(kAmqpsPort)
                : "host = \"127.0.0.1\"\nport = " + std::to_string(kAmqpPort))
      << "\nvhost = \"" << (o.broker_vhost.empty() ? vhost : o.broker_vhost)
      << "\"\npass = \"guest\"\nheartbeat_s = 10\n"
      << "[databases.main]\nengine = \"mariadb\"\nport = " << (o.db_port ? o.db_port : kMariadbPort)
      << "\npass = \"beds\"\ndatabase = \"" << o.database << "\"\n"
      << o.db_extra << "\n"
      << "[databases.docs]\nengine = \"sqlite\"\nsweep_interval_s = 1\npath = \""
      << (o.docs_path.empty() ? (fs::path(dir_) / "docs.sqlite").string() : o.docs_path) << "\"\n"
      << o.docs_extra << "\n[templates]\ndir = \"" << templates << "\"\n"
      << "[logging]\nspill_path = \"" << (fs::path(dir_) / "spill.events").string() << "\"\n"
      << o.logging_extra << "\n";
  if (o.dispatch) {
    std::ofstream(fs::path(dir_) / "beds.toml", std::ios::app)
        << "[brokers.rBroker]\ninstances = " << o.instances << "\nprefetch = " << o.prefetch
        << "\nqueue_type = \"" << o.queue_type
        << "\"\nbindings = [\"sys.read\", \"rel.read\", \"rel.write\", \"rec.read\", "
           "\"rec.write\"]\nmax_retries = "
        << o.max_retries << "\nretry_backoff_ms = " << o.retry_backoff_ms << "\n";
  }
  std::ofstream(fs::path(dir_) / "beds.toml", std::ios::app)
      << "[protocol]\nmax_body_bytes = " << o.max_body_bytes << "\n"
      << o.extra_toml << "\n";
  const std::string log = (fs::path(dir_) / "beds.log").string();
  pid_ = fork();
  if (pid_ == 0) {
    // A test process killed outright (ctest's timeout) takes its nodes with it: no orphan keeps
    // consuming from the fixture's broker.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    std::freopen(log.c_str(), "w", stderr);
    execl(BEDS_BINARY, BEDS_BINARY, "run", "--config-dir", dir_.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
}

NodeProcess::~NodeProcess() {
  if (running()) {
    kill(pid_, SIGKILL);
    Wait(10s);
  }
  if (!::testing::Test::HasFailure()) fs::remove_all(dir_);
}

bool NodeProcess::running() {
  if (exit_code_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return false;
}

std::optional<int> NodeProcess::Wait(std::chrono::seconds timeout) {
  WaitFor([&] { return !running(); }, timeout);
  return exit_code_;
}

int NodeProcess::Signal(int signal, std::chrono::seconds timeout) {
  if (running()) kill(pid_, signal);
  auto code = Wait(timeout);
  return code.value_or(-1);
}

std::string NodeProcess::Log() const {
  std::ifstream in(fs::path(dir_) / "beds.log");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool NodeTest::Servers(const std::string& command) {
  const std::string line =
      std::string("env ") + BEDS_SERVERS_ENV + " " + BEDS_SERVERS_SCRIPT + " " + command;
  return std::system(line.c_str()) == 0;
}

void NodeTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  vhost_ = "it-" + std::string(info->name()) + "-" + std::to_string(getpid());
  ASSERT_TRUE(Servers("vhost " + vhost_)) << "could not create vhost " << vhost_;
  client_ = NewClient();
  ASSERT_NE(client_, nullptr);
}

void NodeTest::TearDown() {
  if (HasFailure()) {
    for (auto& n : nodes_) std::cerr << "---- node log ----\n" << n->Log().substr(0, 20000) << "\n";
  }
  client_.reset();
  // Every node still running must shut down cleanly (and, in the sanitizer build, leak-free:
  // a sanitizer report makes the exit status non-zero).
  for (auto& n : nodes_) {
    if (n->running()) {
      EXPECT_EQ(n->Signal(SIGTERM, 30s), 0) << n->Log();
    }
  }
  nodes_.clear();
}

config::AmqpSettings NodeTest::Amqp() const {
  config::AmqpSettings s;
  s.host = "127.0.0.1";
  s.port = kAmqpPort;
  s.vhost = vhost_;
  s.pass = "guest";
  s.heartbeat_s = 10;
  return s;
}

std::unique_ptr<client::Client> NodeTest::NewClient() {
  auto c = client::Client::Connect(Amqp());
  EXPECT_TRUE(c) << c.error().message;
  return c ? std::move(*c) : nullptr;
}

NodeProcess& NodeTest::StartNode(const NodeOptions& options) {
  nodes_.push_back(std::make_unique<NodeProcess>(vhost_, options));
  NodeProcess& node = *nodes_.back();
  // Ready = answers a ping through beds.events; until IPL declares the exchange a publish is
  // dropped by the broker (or closes the channel), so each attempt uses a short wait.
  // A node without a dispatch pool (an admin node) answers through its control queue instead.
  config::AmqpSettings amqp = Amqp();
  if (!options.broker_vhost.empty()) amqp.vhost = options.broker_vhost;
  const bool ready = WaitFor(
      [&] {
        if (!node.running()) return true;
        auto c = client::Client::Connect(amqp);
        if (!c) return false;
        auto r = options.dispatch
                     ? (*c)->Call("sys.read", R"({"template":"sys","op":"ping"})", 300ms)
                     : (*c)->Call("admin.ping." + options.name,
                                  R"({"template":"admin","op":"ping"})", 300ms);
        if (!r) return false;
        auto reply = protocol::DecodeReply(r->body);
        return reply && reply->ok && reply->body.at("data").at("node").as_string() == options.name;
      },
      30s);
  EXPECT_TRUE(ready && node.running()) << "node did not come up:\n" << node.Log();
  return node;
}

protocol::Reply NodeTest::Call(const std::string& key, const std::string& body,
                               std::chrono::milliseconds timeout) {
  auto r = client_->Call(key, body, timeout);
  EXPECT_TRUE(r) << "no reply to " << body << ": " << (r ? "" : r.error().message);
  if (!r) return {};
  auto reply = protocol::DecodeReply(r->body);
  EXPECT_TRUE(reply) << r->body;
  return reply ? *reply : protocol::Reply{};
}

boost::json::object NodeTest::Ping() {
  auto reply = Call("sys.read", R"({"template":"sys","op":"ping"})");
  EXPECT_TRUE(reply.ok);
  if (!reply.ok) return {};
  return reply.body.at("data").as_object();
}

std::vector<amqp::Delivery> NodeTest::WaitForParked(size_t n, const std::string& broker) {
  std::vector<amqp::Delivery> parked;
  WaitFor(
      [&] {
        for (auto& d : DrainDlq(broker)) parked.push_back(std::move(d));
        return parked.size() >= n;
      },
      10s);
  return parked;
}

std::vector<amqp::Delivery> NodeTest::DrainDlq(const std::string& broker) {
  std::vector<amqp::Delivery> out;
  auto c = amqp::Connection::Open(Amqp());
  EXPECT_TRUE(c);
  if (!c) return out;
  while (true) {
    auto d = (*c)->Get("beds." + broker + ".dlq");
    EXPECT_TRUE(d) << d.error().message;
    if (!d || !*d) break;
    out.push_back(std::move(**d));
  }
  return out;
}

}  // namespace beds::testing
