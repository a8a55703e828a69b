#include "app/node.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "app/ipl.hpp"
#include "brokers/calgon.hpp"
#include "brokers/control.hpp"
#include "brokers/dispatch.hpp"
#include "brokers/log_handlers.hpp"
#include "brokers/once_sweeper.hpp"
#include "brokers/pool.hpp"
#include "build_info.hpp"
#include "core/clock.hpp"
#include "gateway/gateway.hpp"
#include "logs/amqp_sink.hpp"
#include "logs/logs.hpp"
#include "metrics/http_server.hpp"
#include "metrics/metrics.hpp"

namespace beds::app {

struct Node::Impl {
  config::Config config;
  std::shared_ptr<logs::AmqpSink> sink;  // first up, last down: it carries the IPL and shutdown
  std::shared_ptr<metrics::Registry> metrics;
  std::unique_ptr<metrics::HttpServer> metrics_http;
  std::shared_ptr<brokers::NodeInfo> info;
  std::vector<std::unique_ptr<brokers::Pool>> pools;
  std::unique_ptr<brokers::ControlLoop> control;
  std::jthread metric_events;  // publishes metric.{node} every [logging] metrics_interval_s
  std::unique_ptr<brokers::OnceSweeper> sweeper;  // expired exactly-once records
  std::unique_ptr<gateway::Gateway> gateway;      // HTTP, when [gateway] enabled
  std::atomic<bool> stop_requested{false};
  std::mutex stop_mutex;
  std::string stop_reason;  // guarded by stop_mutex
  // IPL only (one thread): what a development node goes on without, for the "ready" line.
  std::vector<std::string> degraded;

  // Pool, sink and (admin) per-node figures, read at each scrape.
  void RegisterCollectors(metrics::Registry& registry,
                          std::shared_ptr<brokers::NodeMetricsTable> node_metrics);
  // metric.{node} events: this node's pool figures, for the admin node's `metrics` handler.
  void PublishMetrics(std::stop_token stop);

  // Uninstalls and stops the log sink: what the broker does not take within the grace waits in
  // the spill file for the next start. Its thread must be gone before static destruction.
  void StopSink() {
    if (!sink) return;
    logs::SetEventSink(nullptr);
    sink->Stop(std::chrono::milliseconds(2000));
    const auto st = sink->Stats();
    spdlog::info("log sink: {} events published, {} unrouted, {} spilled, {} dropped", st.published,
                 st.unrouted, st.spilled, st.dropped);
    sink.reset();
  }

  // The IPL steps Node::Start runs, in order.
  void StartLogSink();
  Result<void> CheckServers();
  Result<TemplateSet> BindTemplates(const std::shared_ptr<CoreFactory>& factory);
  Result<void> StartWork(const TemplateSet& templates, const std::shared_ptr<CoreFactory>& factory,
                         std::function<std::vector<brokers::PoolStats>()> pool_stats,
                         std::function<void(const std::string&)> on_shutdown);
  void RecordIpl(const Lineage& lineage, const templates::Snapshot& snapshot);
  void ReportReady() const;

  // In production a failed step ends IPL; in development it is logged and IPL goes on.
  Result<void> Step(const char* name, const Result<void>& result) {
    if (result) return Ok();
    if (config.node.production) {
      return Fail(result.error().code, std::string(name) + ": " + result.error().message);
    }
    spdlog::error("IPL {}: {} (development mode: continuing degraded)", name,
                  result.error().message);
    degraded.push_back(std::string(name) + " failed");
    return Ok();
  }
};

void Node::Impl::RegisterCollectors(metrics::Registry& registry,
                                    std::shared_ptr<brokers::NodeMetricsTable> node_metrics) {
  using Sample = metrics::Registry::Sample;
  registry.AddCollector([this, node_metrics](std::vector<Sample>& out) {
    auto counter = [&](const char* name, const char* help, const std::string& broker, double v) {
      out.push_back(Sample{name, help, "counter", {{"broker", broker}}, v});
    };
    auto gauge = [&](const char* name, const char* help, const std::string& broker, double v) {
      out.push_back(Sample{name, help, "gauge", {{"broker", broker}}, v});
    };
    for (const auto& p : pools) {
      const brokers::PoolStats s = p->Stats();
      counter("beds_messages_consumed_total", "Messages taken from the broker's queue", s.broker,
              static_cast<double>(s.consumed));
      counter("beds_messages_acked_total", "Messages acked after their work and reply", s.broker,
              static_cast<double>(s.acked));
      counter("beds_messages_retried_total", "Messages sent through the retry queue", s.broker,
              static_cast<double>(s.retried));
      counter("beds_messages_dead_lettered_total", "Messages parked in the DLQ", s.broker,
              static_cast<double>(s.parked));
      counter("beds_worker_respawns_total", "Workers that died and were replaced", s.broker,
              static_cast<double>(s.respawns));
      counter("beds_broker_reconnects_total", "Worker connections re-opened after a loss", s.broker,
              static_cast<double>(s.reconnects));
      gauge("beds_messages_in_flight", "Messages being handled now", s.broker, s.in_flight);
      gauge("beds_workers_alive", "Workers running", s.broker, s.alive);
      gauge("beds_workers_connected", "Workers connected to the broker", s.broker, s.connected);
    }
    if (sink) {
      const logs::SinkStats s = sink->Stats();
      auto plain = [&](const char* name, const char* help, const char* type, double v) {
        out.push_back(Sample{name, help, type, {}, v});
      };
      plain("beds_log_events_emitted_total", "Log, audit and metric events emitted", "counter",
            static_cast<double>(s.emitted));
      plain("beds_log_events_published_total", "Events a queue on beds.logs took", "counter",
            static_cast<double>(s.published));
      plain("beds_log_events_unrouted_total",
            "Events no queue took (no admin node yet): log and audit ones wait in the spill file",
            "counter", static_cast<double>(s.unrouted));
      plain("beds_log_events_spilled_total", "Events written to the spill file", "counter",
            static_cast<double>(s.spilled));
      plain("beds_log_events_replayed_total", "Spilled events published later", "counter",
            static_cast<double>(s.replayed));
      plain("beds_log_sink_drops_total", "Events lost: buffer and spill file full", "counter",
            static_cast<double>(s.dropped));
      plain("beds_log_sink_reconnects_total", "Log sink connections re-opened", "counter",
            static_cast<double>(s.reconnects));
      plain("beds_log_events_buffered", "Events waiting in memory", "gauge",
            static_cast<double>(s.buffered));
      plain("beds_log_spill_bytes", "Bytes waiting in the spill file", "gauge",
            static_cast<double>(s.spill_bytes));
    }
    // On an admin node: the latest figures every node published (metric.{node} events).
    for (const auto& [node, fields] : node_metrics->Snapshot()) {
      const auto* pools_field = fields.if_contains("pools");
      if (!pools_field || !pools_field->is_array()) continue;
      for (const auto& pv : pools_field->get_array()) {
        if (!pv.is_object()) continue;
        const auto& po = pv.get_object();
        const auto* broker = po.if_contains("broker");
        if (!broker || !broker->is_string()) continue;
        for (const auto& [key, v] : po) {
          if (!v.is_number() || key == "instances") continue;
          out.push_back(Sample{"beds_node_" + std::string(key),
                               "As published by the node",
                               "gauge",
                               {{"node", node}, {"broker", std::string(broker->get_string())}},
                               v.to_number<double>()});
        }
      }
    }
  });
}

void Node::Impl::PublishMetrics(std::stop_token stop) {
  const auto interval = std::chrono::seconds(config.logging.metrics_interval_s);
  while (!stop.stop_requested()) {
    if (!SleepUnlessStopped(stop, interval)) break;
    logs::LogEvent e;
    e.kind = "metric";
    e.lineage = RootLineage(config.node.name, config.env);
    e.template_name = "sys";
    e.op = "metrics";
    e.msg = "pool figures";
    boost::json::array list;
    for (const auto& p : pools) {
      const brokers::PoolStats s = p->Stats();
      list.push_back(boost::json::object{{"broker", s.broker},
                                         {"instances", s.instances},
                                         {"alive", s.alive},
                                         {"connected", s.connected},
                                         {"in_flight", s.in_flight},
                                         {"consumed", s.consumed},
                                         {"acked", s.acked},
                                         {"retried", s.retried},
                                         {"parked", s.parked},
                                         {"respawns", s.respawns},
                                         {"reconnects", s.reconnects}});
    }
    e.fields["pools"] = std::move(list);
    logs::Emit(std::move(e));
  }
}

Node::Node(config::Config config) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
}

Node::~Node() { Stop(); }

namespace {

// The handler each `handler =` names ([brokers.*]; config refuses any other), made per worker so
// each holds its own database connections.
struct HandlerParts {
  std::shared_ptr<const brokers::NodeInfo> info;
  std::shared_ptr<templates::Snapshot> templates;
  std::shared_ptr<CoreFactory> factory;
  std::shared_ptr<brokers::NodeMetricsTable> node_metrics;
  std::string log_store;
};
// The maker of `broker`'s handlers: a switch, so a new HandlerKind without a handler is a
// compile error (-Wswitch).
brokers::HandlerMaker MakerFor(const config::BrokerSettings& broker, const HandlerParts& p) {
  switch (broker.handler) {
    case config::HandlerKind::kDispatch:
      return [info = p.info, factory = p.factory]() -> std::shared_ptr<brokers::Handler> {
        return std::make_shared<brokers::DispatchHandler>(info, factory);
      };
    case config::HandlerKind::kCalgon:
      return [info = p.info, factory = p.factory]() -> std::shared_ptr<brokers::Handler> {
        return std::make_shared<brokers::CalgonHandler>(info, factory);
      };
    case config::HandlerKind::kLogs:
      return [snapshot = p.templates, factory = p.factory, store = p.log_store,
              nodes = p.info->access.node_users]() -> std::shared_ptr<brokers::Handler> {
        return std::make_shared<brokers::LogStoreHandler>(snapshot, factory, store, nodes);
      };
    case config::HandlerKind::kSyslog:
      return [broker]() -> std::shared_ptr<brokers::Handler> {
        return std::make_shared<brokers::SyslogHandler>(broker.syslog_socket, broker.level);
      };
    case config::HandlerKind::kMetrics:
      return [tables = p.node_metrics]() -> std::shared_ptr<brokers::Handler> {
        return std::make_shared<brokers::MetricsHandler>(tables);
      };
  }
  throw std::logic_error("unknown handler kind");
}

bool RunsHandler(const config::Config& c, config::HandlerKind handler) {
  return std::any_of(c.brokers.begin(), c.brokers.end(),
                     [&](const config::BrokerSettings& b) { return b.handler == handler; });
}

}  // namespace

// IPL step 2: the log sink first, so that IPL's own lines reach the log store; it connects (and
// spills until it can) on its own thread.
void Node::Impl::StartLogSink() {
  const config::Config& c = config;
  if (c.logging.amqp) {
    logs::AmqpSinkSettings settings;
    settings.amqp = c.log_amqp;
    settings.buffer_events = static_cast<size_t>(c.logging.buffer_events);
    settings.flush_interval = std::chrono::milliseconds(c.logging.flush_ms);
    settings.spill_path = c.logging.spill_path;
    settings.spill_max_bytes = c.logging.spill_max_bytes;
    sink = std::make_shared<logs::AmqpSink>(settings);
    logs::SetEventSink(sink);
  }
  spdlog::info("IPL: node {} env {} ({}), config {} from {}", c.node.name, c.env,
               c.node.production ? "production" : "development", c.digest,
               fmt::join(c.files, " + "));
}

// IPL step 3: every configured server answers.
Result<void> Node::Impl::CheckServers() {
  for (const auto& endpoint : ConfiguredEndpoints(config, UsesDatabases(config))) {
    if (auto r = Step("pre-flight", Preflight(endpoint, 2000)); !r) return r;
  }
  return Ok();
}

// IPL step 5: the templates, bound to the DBA's objects through the adapters' `factory`.
Result<TemplateSet> Node::Impl::BindTemplates(const std::shared_ptr<CoreFactory>& factory) {
  const config::Config& c = config;
  Result<TemplateSet> templates = TemplateSet{std::make_shared<templates::Snapshot>(), {}, {}, {}};
  if (std::error_code ec; !std::filesystem::is_directory(c.templates.dir, ec)) {
    // A node without data templates (an admin node, say) is legitimate in development; in
    // production a missing directory is far more likely a wrong working directory or path.
    const std::string why = "templates dir \"" + c.templates.dir + "\" is not a directory";
    if (c.node.production) return Fail(Code::kUnavailable, why);
    spdlog::warn("IPL {} (development mode: serving the system templates only)", why);
  } else if (!UsesDatabases(c)) {
    // A gateway-only node: the templates route HTTP requests; the nodes that serve them bind them.
    spdlog::info(
        "IPL: no broker pool here uses a database (a gateway-only node): templates are read for "
        "routing, no database is opened");
    templates = LoadTemplates(c, nullptr, TemplateUse::kRouteOnly);
    if (!templates) return Fail(Code::kValidation, "templates: " + templates.error().message);
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
  if (auto r = report(templates->problems, "it answers UNAVAILABLE"); !r) {
    return std::unexpected(r.error());
  }
  if (auto r = report(templates->unchecked, "serving it unchecked"); !r) {
    return std::unexpected(r.error());
  }
  for (const auto& w : templates->warnings) spdlog::warn("IPL template {}", w);
  const templates::Snapshot& snapshot = *templates->snapshot;
  spdlog::info("IPL templates: {} loaded from {}, {} unavailable, {} not checked, {} warning(s)",
               snapshot.by_name.size(), c.templates.dir, snapshot.unavailable.size(),
               templates->unchecked.size(), templates->warnings.size());
  if (!snapshot.unavailable.empty()) {
    degraded.push_back(std::to_string(snapshot.unavailable.size()) + " template(s) unavailable");
  }
  // Async requests need the ticket store wherever requests are taken or jobs run.
  const std::string& tickets = c.calgon.ticket_template;
  if ((RunsHandler(c, config::HandlerKind::kDispatch) ||
       RunsHandler(c, config::HandlerKind::kCalgon)) &&
      (!snapshot.Find(tickets) || snapshot.unavailable.contains(tickets))) {
    spdlog::warn(
        "IPL: no CALGON ticket store (template '{}', [calgon] ticket_template): async "
        "requests are answered UNAVAILABLE; templates/cgn_tickets_rec.toml is the one "
        "BEDS ships",
        tickets);
    degraded.push_back("no CALGON ticket store");
  }
  if (!templates->unchecked.empty()) {
    degraded.push_back(std::to_string(templates->unchecked.size()) + " template(s) not checked");
  }
  return templates;
}

// IPL step 6: what the workers see of the node, then one pool per broker, the exactly-once
// sweeper on a node that serves writes, the control loop, /metrics and the metric events.
Result<void> Node::Impl::StartWork(const TemplateSet& templates,
                                   const std::shared_ptr<CoreFactory>& factory,
                                   std::function<std::vector<brokers::PoolStats>()> pool_stats,
                                   std::function<void(const std::string&)> on_shutdown) {
  const config::Config& c = config;
  metrics = std::make_shared<metrics::Registry>();
  info = std::make_shared<brokers::NodeInfo>();
  info->metrics = metrics;
  info->log_store = c.logging.store_template;
  info->node = c.node.name;
  info->env = c.env;
  info->version = build::kVersion;
  info->started = std::chrono::steady_clock::now();
  info->fault_injection = c.node.fault_injection;
  info->max_body_bytes = c.protocol.max_body_bytes;
  info->max_reply_bytes = c.protocol.max_reply_bytes;
  info->max_batch = c.protocol.max_batch;
  info->templates = templates.snapshot;
  info->idempotency = c.idempotency;
  info->calgon = c.calgon;
  info->access = c.access;
  info->pools = std::move(pool_stats);
  const HandlerParts parts{info, templates.snapshot, factory,
                           std::make_shared<brokers::NodeMetricsTable>(), c.logging.store_template};
  for (const auto& broker : c.brokers) {
    pools.push_back(std::make_unique<brokers::Pool>(broker, c.amqp, MakerFor(broker, parts)));
  }
  RegisterCollectors(*metrics, parts.node_metrics);
  // The node that serves writes keeps their exactly-once records from growing without bound.
  if (RunsHandler(c, config::HandlerKind::kDispatch)) {
    sweeper =
        std::make_unique<brokers::OnceSweeper>(c.idempotency, templates.snapshot, factory, metrics);
  }
  for (auto& p : pools) p->Start();
  control = std::make_unique<brokers::ControlLoop>(c.amqp, info, std::move(on_shutdown));
  control->Start();

  if (!c.metrics.listen.empty()) {
    auto server = metrics::HttpServer::Start(c.metrics.listen, *metrics);
    if (!server) {
      if (auto r = Step("metrics endpoint", std::unexpected(server.error())); !r) return r;
    } else {
      metrics_http = std::move(*server);
    }
  }
  if (sink && c.logging.metrics_interval_s > 0) {
    metric_events = std::jthread([this](std::stop_token stop) { PublishMetrics(stop); });
  }
  if (c.gateway.enabled) {
    // Last: it takes HTTP requests only once the pools that answer them are up.
    auto started = gateway::Gateway::Start(c.gateway, c.amqp, templates.snapshot);
    if (!started) {
      if (auto r = Step("gateway", std::unexpected(started.error())); !r) return r;
      degraded.push_back("no HTTP gateway");
    } else {
      gateway = std::move(*started);
    }
  }
  return Ok();
}

// IPL step 7: the IPL record: which node, which build, which configuration and templates.
void Node::Impl::RecordIpl(const Lineage& lineage, const templates::Snapshot& snapshot) {
  const config::Config& c = config;
  logs::LogEvent ipl;
  ipl.kind = "ipl";
  ipl.lineage = lineage;
  ipl.template_name = "sys";
  ipl.op = "ipl";
  ipl.msg = "IPL complete: version " + std::string(build::kVersion) + ", config " + c.digest;
  ipl.fields["version"] = build::kVersion;
  ipl.fields["config_digest"] = c.digest;
  ipl.fields["production"] = c.node.production;
  boost::json::array names;
  for (const auto& [name, t] : snapshot.by_name) names.push_back(boost::json::string(name));
  ipl.fields["templates"] = std::move(names);
  boost::json::array brokers;
  for (const auto& b : c.brokers) {
    brokers.push_back(boost::json::object{{"broker", b.name},
                                          {"handler", config::HandlerName(b.handler)},
                                          {"instances", b.instances}});
  }
  ipl.fields["brokers"] = std::move(brokers);
  logs::Emit(std::move(ipl));
}

// IPL step 8: ready, and what it went on without.
void Node::Impl::ReportReady() const {
  const config::Config& c = config;
  int workers = 0;
  for (const auto& b : c.brokers) workers += b.instances;
  const char* serving = gateway ? ", HTTP gateway" : "";
  if (degraded.empty()) {
    spdlog::info("ready: {} broker pool(s), {} worker(s){}", c.brokers.size(), workers, serving);
  } else {
    // Workers connect on their own threads; here "ready" only says IPL is over, and what it
    // went on without.
    spdlog::warn("ready, degraded: {} broker pool(s), {} worker(s) connecting with backoff; {}",
                 c.brokers.size(), workers, fmt::join(degraded, "; "));
  }
}

// IPL (docs/operations.md "IPL"): step 1, the configuration, was loaded by main.
Result<void> Node::Start() {
  Impl& n = *impl_;
  const auto lineage = RootLineage(n.config.node.name, n.config.env);
  logs::EventScope scope(lineage);
  n.StartLogSink();
  if (auto r = n.CheckServers(); !r) return r;
  if (auto r = n.Step("AMQP topology", DeclareTopology(n.config)); !r) return r;
  // A node whose pools use no database opens none (a SQLite file, a MongoDB client pool).
  const std::shared_ptr<CoreFactory> factory =
      UsesDatabases(n.config) ? MakeCoreFactory(n.config) : std::make_shared<CoreFactory>();
  auto templates = n.BindTemplates(factory);
  if (!templates) return std::unexpected(templates.error());
  auto pool_stats = [this] {
    std::vector<brokers::PoolStats> stats;
    for (const auto& p : impl_->pools) stats.push_back(p->Stats());
    return stats;
  };
  auto on_shutdown = [this](const std::string& mode) {
    RequestStop("admin shutdown (" + mode + ")");
  };
  if (auto r = n.StartWork(*templates, factory, pool_stats, on_shutdown); !r) return r;
  n.RecordIpl(lineage, *templates->snapshot);
  n.ReportReady();
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
  if (n.pools.empty() && !n.control) {
    // IPL stopped before the pools (or Stop ran already): only the log sink may be up.
    n.StopSink();
    return;
  }
  {
    std::lock_guard lock(n.stop_mutex);
    spdlog::info("shutting down: {}", n.stop_reason.empty() ? "requested" : n.stop_reason);
  }
  const auto started = std::chrono::steady_clock::now();
  // The front door closes first: what it still waits for is answered UNAVAILABLE.
  n.gateway.reset();
  for (auto& p : n.pools) p->RequestStop();  // all pools drain at once
  for (auto& p : n.pools) p->Stop();
  if (n.control) n.control->Stop();
  if (n.metric_events.joinable()) {
    n.metric_events.request_stop();
    n.metric_events.join();
  }
  n.metrics_http.reset();
  n.sweeper.reset();
  n.pools.clear();
  n.control.reset();
  spdlog::info("shutdown complete in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - started)
                                                 .count());
  n.StopSink();
  logs::Flush();
}

}  // namespace beds::app
