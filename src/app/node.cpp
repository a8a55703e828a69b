#include "app/node.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>

#include "app/ipl.hpp"
#include "brokers/control.hpp"
#include "brokers/dispatch.hpp"
#include "brokers/pool.hpp"
#include "build_info.hpp"
#include "logs/logs.hpp"

namespace beds::app {

struct Node::Impl {
  config::Config config;
  std::shared_ptr<brokers::NodeInfo> info;
  std::vector<std::unique_ptr<brokers::Pool>> pools;
  std::unique_ptr<brokers::ControlLoop> control;
  std::atomic<bool> stop_requested{false};
  std::mutex stop_mutex;
  std::string stop_reason;  // guarded by stop_mutex

  // In production a failed step ends IPL; in development it is logged and IPL goes on.
  Result<void> Step(const char* name, const Result<void>& result) {
    if (result) return Ok();
    if (config.node.production) {
      return Fail(result.error().code, std::string(name) + ": " + result.error().message);
    }
    spdlog::error("IPL {}: {} (development mode: continuing degraded)", name,
                  result.error().message);
    return Ok();
  }
};

Node::Node(config::Config config) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
}

Node::~Node() { Stop(); }

Result<void> Node::Start() {
  Impl& n = *impl_;
  const config::Config& c = n.config;
  const auto lineage = RootLineage(c.node.name, c.env);
  logs::EventScope scope(lineage.event_id);
  spdlog::info("IPL: node {} env {} ({}), config {} from {}", c.node.name, c.env,
               c.node.production ? "production" : "development", c.digest,
               fmt::join(c.files, " + "));

  // 3. Pre-flight reachability of every configured server.
  for (const auto& endpoint : ConfiguredEndpoints(c)) {
    if (auto r = n.Step("pre-flight", Preflight(endpoint, 2000)); !r) return r;
  }
  // 4. AMQP login and topology.
  if (auto r = n.Step("AMQP topology", DeclareTopology(c)); !r) return r;
  // 5. Templates, bound to the DBA's objects; the adapters each worker will use.
  auto factory = MakeCoreFactory(c);
  Result<TemplateSet> templates = TemplateSet{std::make_shared<templates::Snapshot>(), {}, {}};
  if (std::error_code ec; !std::filesystem::is_directory(c.templates.dir, ec)) {
    // A node without data templates (an admin node, say) is legitimate in development; in
    // production a missing directory is far more likely a wrong working directory or path.
    const std::string why = "templates dir \"" + c.templates.dir + "\" is not a directory";
    if (c.node.production) return Fail(Code::kUnavailable, why);
    spdlog::warn("IPL {} (development mode: serving the system templates only)", why);
  } else {
    templates = LoadTemplates(c, factory);
    if (!templates) return Fail(Code::kValidation, "templates: " + templates.error().message);
  }
  // In production any of these ends IPL; in development each is logged and the node goes on.
  auto report = [&](const std::vector<std::string>& lines,
                    const char* dev_outcome) -> Result<void> {
    for (const auto& line : lines) {
      if (c.node.production) return Fail(Code::kUnavailable, "template " + line);
      spdlog::error("IPL template {} (development mode: {})", line, dev_outcome);
    }
    return Ok();
  };
  if (auto r = report(templates->problems, "it answers UNAVAILABLE"); !r) return r;
  if (auto r = report(templates->unchecked, "serving it unchecked"); !r) return r;
  spdlog::info("IPL templates: {} loaded from {}, {} unavailable",
               templates->snapshot->by_name.size(), c.templates.dir,
               templates->snapshot->unavailable.size());

  // 6. Broker pools and the control loop.
  n.info = std::make_shared<brokers::NodeInfo>();
  n.info->node = c.node.name;
  n.info->env = c.env;
  n.info->version = build::kVersion;
  n.info->started = std::chrono::steady_clock::now();
  n.info->fault_injection = c.node.fault_injection;
  n.info->max_body_bytes = c.protocol.max_body_bytes;
  n.info->max_reply_bytes = c.protocol.max_reply_bytes;
  n.info->templates = templates->snapshot;
  n.info->pools = [this] {
    std::vector<brokers::PoolStats> stats;
    for (const auto& p : impl_->pools) stats.push_back(p->Stats());
    return stats;
  };
  // A handler per worker: each holds its own database connections.
  auto make_handler = [info = n.info, factory]() -> std::shared_ptr<brokers::Handler> {
    return std::make_shared<brokers::DispatchHandler>(info, factory);
  };
  for (const auto& broker : c.brokers) {
    n.pools.push_back(std::make_unique<brokers::Pool>(broker, c.amqp, make_handler));
  }
  for (auto& p : n.pools) p->Start();
  n.control = std::make_unique<brokers::ControlLoop>(
      c.amqp, n.info,
      [this](const std::string& mode) { RequestStop("admin shutdown (" + mode + ")"); });
  n.control->Start();

  // 7. The IPL event (the log store records it once the admin pipeline exists).
  logs::Emit(logs::LogEvent{
      "info", c.node.name, c.env, lineage, "sys", "ipl",
      "IPL complete: version " + std::string(build::kVersion) + ", config " + c.digest, 0});
  // 8. Ready.
  int workers = 0;
  for (const auto& b : c.brokers) workers += b.instances;
  spdlog::info("ready: {} broker pool(s), {} worker(s)", c.brokers.size(), workers);
  return Ok();
}

void Node::RequestStop(const std::string& why) {
  {
    std::lock_guard lock(impl_->stop_mutex);
    if (impl_->stop_reason.empty()) impl_->stop_reason = why;
  }
  impl_->stop_requested = true;
}

bool Node::stop_requested() const { return impl_->stop_requested; }

void Node::Stop() {
  Impl& n = *impl_;
  if (n.pools.empty() && !n.control) return;
  {
    std::lock_guard lock(n.stop_mutex);
    spdlog::info("shutting down: {}", n.stop_reason.empty() ? "requested" : n.stop_reason);
  }
  const auto started = std::chrono::steady_clock::now();
  for (auto& p : n.pools) p->RequestStop();  // all pools drain at once
  for (auto& p : n.pools) p->Stop();
  if (n.control) n.control->Stop();
  n.pools.clear();
  n.control.reset();
  spdlog::info("shutdown complete in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - started)
                                                 .count());
  logs::Flush();
}

}  // namespace beds::app
