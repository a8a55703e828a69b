// `beds`: one binary for every node. Reading top-down: parse the command line, load the config
// (IPL step 1), start logging (2), start the node (3–8), wait for SIGTERM/SIGINT or an admin
// shutdown, drain, exit 0.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <toml++/toml.h>

#include <CLI/CLI.hpp>
#include <boost/version.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <stop_token>
#include <thread>

#include "adapters/mariadb/mariadb.hpp"
#include "adapters/mongodb/mongodb.hpp"
#include "adapters/sqlite/sqlite.hpp"
#include "amqp/connection.hpp"
#include "app/ipl.hpp"
#include "app/node.hpp"
#include "build_info.hpp"
#include "config/config.hpp"
#include "core/clock.hpp"
#include "logs/logs.hpp"

namespace {

using beds::Result;

// Where the configuration comes from: --config-dir, --env and --role.
struct ConfigSource {
  std::string dir = "config";
  std::string env;
  std::string role;
};

Result<beds::config::Config> LoadConfig(const ConfigSource& source) {
  auto options = beds::config::FromEnvironment(
      source.dir, source.env.empty() ? std::nullopt : std::optional<std::string>(source.env));
  if (!source.role.empty()) options.role = source.role;
  return beds::config::Load(options);
}

// For the offline tools: the config, or every problem on stderr (the caller exits 2).
std::optional<beds::config::Config> LoadConfigOrReport(const ConfigSource& source) {
  auto config = LoadConfig(source);
  if (!config) {
    std::cerr << "config invalid:\n" << config.error().message << "\n";
    return std::nullopt;
  }
  return std::move(*config);
}

int Version() {
  std::cout << "beds " << beds::build::kVersion << " (" << beds::build::kBuildType << ", "
            << beds::build::kCompiler
            << (*beds::build::kSanitize ? std::string(", sanitize=") + beds::build::kSanitize : "")
            << ")\n"
            << "rabbitmq-c " << beds::amqp::LibraryVersion() << "\n"
            << "boost " << BOOST_VERSION / 100000 << "." << BOOST_VERSION / 100 % 1000 << "\n"
            << "spdlog " << SPDLOG_VER_MAJOR << "." << SPDLOG_VER_MINOR << "." << SPDLOG_VER_PATCH
            << "\n"
            << "mariadb connector/c " << beds::adapters::mariadb::ClientVersion() << "\n"
            << "sqlite " << beds::adapters::sqlite::LibraryVersion() << "\n"
            << "mongo-c-driver " << beds::adapters::mongodb::DriverVersion() << "\n"
            << "toml++ " << TOML_LIB_MAJOR << "." << TOML_LIB_MINOR << "." << TOML_LIB_PATCH
            << "\n";
  return 0;
}

int ConfigCheck(const ConfigSource& source) {
  auto config = LoadConfigOrReport(source);
  if (!config) return 2;
  std::cout << "# env " << config->env << ", files:";
  for (const auto& f : config->files) std::cout << " " << f;
  std::cout << "\n# digest " << config->digest << "\n" << config->merged_toml << "\n";
  return 0;
}

// `beds template check`: what IPL step 5 would find, without starting a node. Exit 0 when every
// template loads and binds, 1 when one does not bind (or was not checked), 2 when one is invalid.
int TemplateCheck(const ConfigSource& source) {
  auto config = LoadConfigOrReport(source);
  if (!config) return 2;
  auto set = beds::app::LoadTemplates(*config);
  if (!set) {
    std::cerr << "templates invalid:\n" << set.error().message << "\n";
    return 2;
  }
  for (const auto& [name, t] : set->snapshot->by_name) {
    const bool bad = set->snapshot->unavailable.contains(name);
    std::cout << (bad ? "FAIL " : "ok   ") << name << " (" << beds::ClassName(t.template_class)
              << ", database " << t.database << ", " << t.file << ")"
              << (t.template_class == beds::TemplateClass::kRec && !bad
                      ? ": collection " + t.collection + " is ensured at IPL"
                      : "")
              << "\n";
  }
  for (const auto& p : set->problems) std::cout << "  " << p << "\n";
  for (const auto& u : set->unchecked) std::cout << "  " << u << "\n";
  for (const auto& w : set->warnings) std::cout << "  warning: " << w << "\n";
  const size_t problems = set->problems.size() + set->unchecked.size();
  std::cout << set->snapshot->by_name.size() << " template(s), " << problems << " problem(s)"
            << (set->warnings.empty() ? ""
                                      : ", " + std::to_string(set->warnings.size()) + " warning(s)")
            << "\n";
  return problems == 0 ? 0 : 1;
}

// `beds template scaffold --tla usr`: a starting REL template from the objects named usr_*.
int TemplateScaffold(const ConfigSource& source, const std::string& tla,
                     const std::string& database, const std::string& out) {
  auto config = LoadConfigOrReport(source);
  if (!config) return 2;
  auto db = config->databases.find(database);
  if (db == config->databases.end() || db->second.engine != beds::config::Engine::kMariadb) {
    std::cerr << "beds: no mariadb database named \"" << database << "\" in the config\n";
    return 2;
  }
  auto schema = beds::adapters::mariadb::ReadSchema(db->second);
  if (!schema) {
    std::cerr << "beds: " << schema.error().message << "\n";
    return 1;
  }
  auto text = beds::templates::Scaffold(tla, database, *schema);
  if (!text) {
    std::cerr << "beds: " << text.error().message << "\n";
    return 1;
  }
  if (out.empty() || out == "-") {
    std::cout << *text;
    return 0;
  }
  std::ofstream file(out);
  file << *text;
  if (!file.flush()) {
    std::cerr << "beds: cannot write " << out << "\n";
    return 1;
  }
  std::cerr << "wrote " << out << "\n";
  return 0;
}

int Run(const ConfigSource& source) {
  beds::logs::InitDefault();
  auto config = LoadConfig(source);  // IPL 1: fatal in every mode
  if (!config) {
    std::cerr << "beds: config invalid:\n" << config.error().message << "\n";
    return 2;
  }
  beds::logs::Init(config->logging, config->node.name, config->env);  // IPL 2

  // Signals are taken synchronously by this thread only; every thread started later inherits
  // the mask, so no worker is ever interrupted by one.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  beds::app::Node node(*config);
  if (auto r = node.Start(); !r) {  // IPL 3–8
    spdlog::critical("IPL failed: {}", r.error().message);
    // The log sink's thread may still be logging: stop it first, then write the line operators
    // and scripts read as one piece, so nothing lands in the middle of it.
    node.Stop();
    std::cerr << ("beds: IPL failed: " + r.error().message + "\n") << std::flush;
    return r.error().code == beds::Code::kValidation ? 2 : 3;  // invalid templates: like config
  }
  while (!node.stop_requested()) {
    const timespec tick{0, 200'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) node.RequestStop(sig == SIGTERM ? "SIGTERM" : "SIGINT");
  }
  // A drain that outlives [node] shutdown_grace_ms ends the process anyway, exit status 1: the
  // unfinished messages are unacked, so RabbitMQ redelivers them to another worker.
  std::jthread watchdog([grace = config->node.shutdown_grace_ms](std::stop_token stop) {
    if (!beds::SleepUnlessStopped(stop, std::chrono::milliseconds(grace))) {
      return;  // the drain finished in time
    }
    spdlog::error(
        "shutdown took longer than {} ms; exiting with work unfinished (it will be redelivered)",
        grace);
    beds::logs::Flush();
    std::_Exit(1);
  });
  node.Stop();
  watchdog.request_stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"BEDS, the Back End Data System: one binary for every node"};
  app.require_subcommand(1);
  ConfigSource source;
  const char* kRoleHelp = "node role: merges {config-dir}/nodes/{role}.toml (default: $BEDS_ROLE)";

  auto* run = app.add_subcommand("run", "IPL, then serve until shutdown");
  run->add_option("--config-dir", source.dir, "directory holding beds.toml and env_*.toml");
  run->add_option("--env", source.env, "environment name (default: $BEDS_ENV, else dev)");
  run->add_option("--role", source.role, kRoleHelp);

  auto* config = app.add_subcommand("config", "configuration tools");
  config->require_subcommand(1);
  auto* check =
      config->add_subcommand("check", "load, validate, print the merged config (secrets masked)");
  check->add_option("--config-dir", source.dir, "directory holding beds.toml and env_*.toml");
  check->add_option("--env", source.env, "environment name (default: $BEDS_ENV, else dev)");
  check->add_option("--role", source.role, kRoleHelp);

  auto* tmpl = app.add_subcommand("template", "template tools");
  tmpl->require_subcommand(1);
  auto* tcheck = tmpl->add_subcommand("check", "load the templates and bind-check them");
  auto* scaffold = tmpl->add_subcommand("scaffold", "write a template from the DBA's objects");
  std::string tla, database = "main", out;
  for (auto* sub : {tcheck, scaffold}) {
    sub->add_option("--config-dir", source.dir, "directory holding beds.toml and env_*.toml");
    sub->add_option("--env", source.env, "environment name (default: $BEDS_ENV, else dev)");
    sub->add_option("--role", source.role, kRoleHelp);
  }
  scaffold->add_option("--tla", tla, "the three-letter prefix of the objects")->required();
  scaffold->add_option("--database", database, "a [databases.*] entry (default: main)");
  scaffold->add_option("--out", out, "file to write (default: standard output)");

  auto* version = app.add_subcommand("version", "version, build and dependency versions");

  CLI11_PARSE(app, argc, argv);
  if (*run) return Run(source);
  if (*check) return ConfigCheck(source);
  if (*tcheck) return TemplateCheck(source);
  if (*scaffold) return TemplateScaffold(source, tla, database, out);
  if (*version) return Version();
  return 2;
}
