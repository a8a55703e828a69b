#include "config/config.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

namespace beds::config {
namespace {

namespace fs = std::filesystem;

// A throwaway config directory per test.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("beds-config-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Write("beds.toml", R"([node]
name = "appserver"

[broker_services.app_server]
host = "localhost"
port = 5672
pass = ""

[databases.main]
engine = "mariadb"
port = 3306

[brokers.rBroker]
instances = 8
bindings = ["sys.read"]
)");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }

  Result<Config> Load(std::vector<std::pair<std::string, std::string>> environment = {},
                      std::optional<std::string> env = std::nullopt) {
    LoadOptions o;
    o.config_dir = dir_.string();
    o.env = std::move(env);
    o.environment = std::move(environment);
    return config::Load(o);
  }

  fs::path dir_;
};

TEST_F(ConfigTest, BaseAloneGivesDefaults) {
  auto c = Load();
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->env, "dev");
  EXPECT_EQ(c->node.name, "appserver");
  EXPECT_FALSE(c->node.production);
  EXPECT_EQ(c->amqp.port, 5672);
  EXPECT_EQ(c->amqp.vhost, "/");
  ASSERT_EQ(c->brokers.size(), 1u);
  EXPECT_EQ(c->brokers[0].name, "rBroker");
  EXPECT_EQ(c->brokers[0].prefetch, 16);  // default from the struct
  EXPECT_EQ(c->brokers[0].retry_backoff_ms, (std::vector<int64_t>{100, 1000, 10000}));
  EXPECT_EQ(c->databases.at("main").engine, config::Engine::kMariadb);
  EXPECT_EQ(c->files.size(), 1u);
}

TEST_F(ConfigTest, EnvFileOverridesOnlyItsKeys) {
  Write("env_qa.toml",
        "[broker_services.app_server]\nport = 5699\n[brokers.rBroker]\ninstances = 2\n");
  auto c = Load({{"BEDS_ENV", "qa"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->env, "qa");
  EXPECT_EQ(c->amqp.port, 5699);
  EXPECT_EQ(c->amqp.host, "localhost");  // inherited from the base
  EXPECT_EQ(c->brokers[0].instances, 2);
  EXPECT_EQ(c->brokers[0].bindings, std::vector<std::string>{"sys.read"});
  EXPECT_EQ(c->files.size(), 2u);
}

TEST_F(ConfigTest, EnvFlagBeatsBedsEnvVariable) {
  Write("env_qa.toml", "[node]\nname = \"qa-node\"\n");
  auto c = Load({{"BEDS_ENV", "other"}}, "qa");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->node.name, "qa-node");
}

TEST_F(ConfigTest, ProdDefaultsToProduction) {
  auto c = Load({}, "prod");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->node.production);
  Write("env_prod.toml", "[node]\nproduction = false\n");
  auto d = Load({}, "prod");
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_FALSE(d->node.production);
}

TEST_F(ConfigTest, EnvironmentVariablesAreTheLastLayer) {
  Write("env_dev.toml", "[broker_services.app_server]\nport = 1111\n");
  auto c = Load({{"BEDS__BROKER_SERVICES__APP_SERVER__PORT", "2222"},
                 {"BEDS__BROKER_SERVICES__APP_SERVER__PASS", "12345"},
                 {"BEDS__BROKERS__RBROKER__BINDINGS", "[\"rel.read\", \"sys.read\"]"},
                 {"BEDS__LOGGING__CONSOLE", "false"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->amqp.port, 2222);
  EXPECT_EQ(c->amqp.pass, "12345");  // a string key stays a string even when it looks numeric
  EXPECT_EQ(c->brokers[0].bindings, (std::vector<std::string>{"rel.read", "sys.read"}));
  EXPECT_FALSE(c->logging.console);
}

TEST_F(ConfigTest, WrongTypeNamesFileLineKeyAndType) {
  Write("env_dev.toml", "[brokers.rBroker]\n\ninstances = \"eight\"\n");
  auto c = Load();
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Code::kValidation);
  const std::string& m = c.error().message;
  EXPECT_NE(m.find("env_dev.toml:3"), std::string::npos) << m;
  EXPECT_NE(m.find("brokers.rBroker.instances"), std::string::npos) << m;
  EXPECT_NE(m.find("expected integer, got string"), std::string::npos) << m;
}

TEST_F(ConfigTest, WrongTypeFromEnvironmentNamesTheVariable) {
  auto c = Load({{"BEDS__BROKERS__RBROKER__INSTANCES", "many"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("environment BEDS__BROKERS__RBROKER__INSTANCES"),
            std::string::npos)
      << c.error().message;
}

TEST_F(ConfigTest, UnknownKeysAreErrors) {
  Write("env_dev.toml", "[node]\nnmae = \"typo\"\n[loging]\nlevel = \"info\"\n");
  auto c = Load();
  ASSERT_FALSE(c);
  const std::string& m = c.error().message;
  EXPECT_NE(m.find("key 'node.nmae': unknown key"), std::string::npos) << m;
  EXPECT_NE(m.find("key 'loging': unknown key"), std::string::npos) << m;
}

TEST_F(ConfigTest, EveryProblemIsReportedAtOnce) {
  Write("env_dev.toml",
        "[brokers.rBroker]\nqueue_type = \"fast\"\nprefetch = 0\n[logging]\nlevel = \"loud\"\n");
  auto c = Load();
  ASSERT_FALSE(c);
  const std::string& m = c.error().message;
  EXPECT_NE(m.find("queue_type': expected one of classic | quorum"), std::string::npos) << m;
  EXPECT_NE(m.find("prefetch': expected an integer in [1, 65535], got 0"), std::string::npos) << m;
  EXPECT_NE(m.find("logging.level"), std::string::npos) << m;
}

TEST_F(ConfigTest, TomlSyntaxErrorNamesFileAndLine) {
  Write("env_dev.toml", "[node]\nname = \n");
  auto c = Load();
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("env_dev.toml:2"), std::string::npos) << c.error().message;
}

TEST_F(ConfigTest, MissingBaseFileIsAnError) {
  fs::remove(dir_ / "beds.toml");
  auto c = Load();
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("beds.toml: not found"), std::string::npos);
}

TEST_F(ConfigTest, NodeNameMustFitAnEventId) {
  auto c = Load({{"BEDS__NODE__NAME", "App.Server"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("node.name"), std::string::npos);
}

TEST_F(ConfigTest, UnknownBrokerServiceIsAnError) {
  auto c = Load({{"BEDS__NODE__BROKER_SERVICE", "nowhere"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("broker_services.nowhere"), std::string::npos);
}

TEST_F(ConfigTest, FaultInjectionIsRefusedInProduction) {
  auto c = Load({{"BEDS__NODE__FAULT_INJECTION", "true"}}, "prod");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("fault_injection"), std::string::npos);
}

TEST_F(ConfigTest, SecretsAreMaskedInTheMergedDocument) {
  Write("env_dev.toml",
        "[broker_services.app_server]\npass = \"hunter2\"\n[databases.docs]\nengine = \"mongodb\"\n"
        "uri = \"mongodb://u:s3cret@db:27017/x\"\n");
  auto c = Load();
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->amqp.pass, "hunter2");
  EXPECT_EQ(c->merged_toml.find("hunter2"), std::string::npos) << c->merged_toml;
  EXPECT_EQ(c->merged_toml.find("s3cret"), std::string::npos) << c->merged_toml;
  EXPECT_NE(c->merged_toml.find("mongodb://u:****@db:27017/x"), std::string::npos);
}

TEST_F(ConfigTest, DigestChangesWithTheConfig) {
  auto a = Load();
  auto b = Load({{"BEDS__BROKERS__RBROKER__INSTANCES", "3"}});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->digest.size(), 16u);
  EXPECT_NE(a->digest, b->digest);
  EXPECT_EQ(a->digest, Load()->digest);
}

TEST_F(ConfigTest, ShippedBaseConfigIsValid) {
  LoadOptions o;
  o.config_dir = BEDS_SOURCE_DIR "/config";
  o.env = "shipped-defaults-test";  // no such env file: the base alone
  auto c = config::Load(o);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_GE(c->brokers.size(), 1u);
}

TEST_F(ConfigTest, ARoleFileMergesBetweenTheBaseAndTheEnvFileAndTurnsBrokersOff) {
  fs::create_directories(dir_ / "nodes");
  Write("nodes/admin.toml", R"([node]
name = "admin"
[brokers.rBroker]
enabled = false
[brokers.adminLogsBroker]
handler = "logs"
bindings = ["log.#"]
batch_ms = 50
)");
  Write("env_dev.toml", "[node]\nname = \"admin2\"\n");
  LoadOptions o;
  o.config_dir = dir_.string();
  o.role = "admin";
  auto c = config::Load(o);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->role, "admin");
  EXPECT_EQ(c->node.name, "admin2") << "the env file is the later layer";
  ASSERT_EQ(c->brokers.size(), 1u) << "rBroker is turned off";
  EXPECT_EQ(c->brokers[0].name, "adminLogsBroker");
  EXPECT_EQ(c->brokers[0].handler, config::HandlerKind::kLogs);
  EXPECT_EQ(c->brokers[0].batch_ms, 50);
  EXPECT_EQ(c->files.size(), 3u);

  o.role = "nosuchrole";
  auto missing = config::Load(o);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("nodes/nosuchrole.toml: not found"), std::string::npos)
      << missing.error().message;
}

TEST_F(ConfigTest, TheRoleMayComeFromTheEnvironment) {
  fs::create_directories(dir_ / "nodes");
  Write("nodes/app.toml", "[metrics]\nlisten = \"127.0.0.1:9464\"\n");
  setenv("BEDS_ROLE", "app", 1);
  auto from_env = FromEnvironment(dir_.string(), std::nullopt);
  unsetenv("BEDS_ROLE");
  ASSERT_TRUE(from_env.role);
  EXPECT_EQ(*from_env.role, "app");
  auto c = config::Load(from_env);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->metrics.listen, "127.0.0.1:9464");
}

TEST_F(ConfigTest, LoggingKeysAndTheLogBrokerService) {
  Write("env_dev.toml", R"([broker_services.logs]
host = "logs.example"
vhost = "logs"
[logging]
broker_service = "logs"
buffer_events = 64
flush_ms = 5
spill_max_bytes = 1000
)");
  auto c = Load();
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->log_amqp.host, "logs.example");
  EXPECT_EQ(c->log_amqp.vhost, "logs");
  EXPECT_EQ(c->amqp.host, "localhost") << "requests keep the node's broker";
  EXPECT_EQ(c->logging.buffer_events, 64);
  EXPECT_EQ(c->logging.flush_ms, 5);
  EXPECT_EQ(c->logging.spill_path, "var/spill/appserver.events") << "the default names the node";
  EXPECT_EQ(c->logging.store_template, "Logs");

  Write("env_dev.toml", "[logging]\nbroker_service = \"nowhere\"\n");
  auto bad = Load();
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("logging.broker_service"), std::string::npos)
      << bad.error().message;
}

TEST_F(ConfigTest, ShippedRoleConfigsAreValid) {
  for (const char* role : {"appserver", "admin"}) {
    LoadOptions o;
    o.config_dir = std::string(BEDS_SOURCE_DIR) + "/config";
    o.env = "shipped-defaults-test";
    o.role = role;
    auto c = config::Load(o);
    ASSERT_TRUE(c) << role << ": " << c.error().message;
    EXPECT_EQ(c->node.name, role);
    EXPECT_FALSE(c->metrics.listen.empty());
  }
  LoadOptions o;
  o.config_dir = std::string(BEDS_SOURCE_DIR) + "/config";
  o.env = "shipped-defaults-test";
  o.role = "admin";
  auto admin = config::Load(o);
  ASSERT_TRUE(admin);
  std::set<std::string> handlers;
  for (const auto& b : admin->brokers) handlers.insert(std::string(config::HandlerName(b.handler)));
  EXPECT_EQ(handlers, (std::set<std::string>{"logs", "syslog", "metrics"}));
}

// `--env trail` (a typo for `--env trial`) must not run silently on the base defaults.
TEST_F(ConfigTest, AnEnvNamedOnTheCommandLineMustHaveItsFile) {
  LoadOptions o;
  o.config_dir = dir_.string();
  o.env = "trail";
  o.env_file_required = true;
  auto missing = config::Load(o);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("env_trail.toml: not found (--env trail)"),
            std::string::npos)
      << missing.error().message;
  Write("env_trail.toml", "[node]\nname = \"trail\"\n");
  auto found = config::Load(o);
  ASSERT_TRUE(found) << found.error().message;
  EXPECT_EQ(found->node.name, "trail");
  // FromEnvironment marks an env given on the command line as one whose file must exist.
  EXPECT_TRUE(FromEnvironment(dir_.string(), "qa").env_file_required);
  EXPECT_FALSE(FromEnvironment(dir_.string(), std::nullopt).env_file_required);
}

}  // namespace
}  // namespace beds::config

namespace beds::config {
namespace {

TEST_F(ConfigTest, GatewayPrincipalsAreReadWithTheirTokensAndPatterns) {
  Write("env_dev.toml",
        "[gateway.auth.principals.shop]\ntoken = \"0123456789abcdef0123\"\n"
        "allow = [\"Users/*\", \"calgon/*\"]\n[access]\ntrusted_users = [\"gw\"]\nnode_users = "
        "[\"node\"]\n"
        "[access.clients.shop]\nallow = [\"Users/fetch\"]\n");
  auto c = Load();
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->gateway.auth.principals.size(), 1u);
  EXPECT_EQ(c->gateway.auth.principals[0].name, "shop");
  EXPECT_EQ(c->gateway.auth.principals[0].allow.size(), 2u);
  EXPECT_EQ(c->access.trusted_users, std::vector<std::string>{"gw"});
  EXPECT_EQ(c->access.node_users, std::vector<std::string>{"node"});
  EXPECT_EQ(c->access.clients.at("shop"), std::vector<std::string>{"Users/fetch"});
  // The token is a secret: `beds config check` shows it masked.
  EXPECT_EQ(c->merged_toml.find("0123456789abcdef0123"), std::string::npos);
}

TEST_F(ConfigTest, GatewayAuthMistakesAreErrors) {
  Write("env_dev.toml",
        "[gateway.auth]\nrequired = true\n"
        "[gateway.auth.principals.a]\ntoken = \"short\"\n"
        "[gateway.auth.principals.b]\ntoken = \"0123456789abcdef0123\"\n"
        "[gateway.auth.principals.c]\ntoken = \"0123456789abcdef0123\"\nalow = []\n");
  auto c = Load();
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("at least 16 characters"), std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("the same token as principal 'b'"), std::string::npos);
  EXPECT_NE(c.error().message.find("gateway.auth.principals.c.alow"), std::string::npos);
  Write("env_dev.toml", "[gateway.auth]\nrequired = true\n");
  auto none = Load();
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("nobody could call"), std::string::npos);
}

TEST_F(ConfigTest, AKeyTakenAwaySaysWhatReplacedIt) {
  Write("env_dev.toml", "[gateway]\namqp_connections = 2\n");
  auto c = Load();
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("key 'gateway.amqp_connections': no longer a setting"),
            std::string::npos)
      << c.error().message;
  EXPECT_NE(c.error().message.find("set threads instead"), std::string::npos);
  Write("env_dev.toml", "[gateway]\nthreads = 2\nconsole = false\n");
  auto ok = Load();
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->gateway.threads, 2);
  EXPECT_FALSE(ok->gateway.console);
}

}  // namespace
}  // namespace beds::config
