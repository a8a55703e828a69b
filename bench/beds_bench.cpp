// beds-bench: keeps W requests in flight against a running `beds` node and reports throughput and
// latency percentiles, beside a raw baseline measured in the same run on the same broker: a bare
// rabbitmq-c echo server (the same number of consumers and prefetch as the node's broker pool,
// each acking after it publishes the reply, as BEDS workers do). Rounds alternate baseline and
// BEDS so that machine noise hits both alike; the medians and their ratio are printed.
//
//   beds-bench --config-dir config --inflight 64 --body-bytes 256 --duration-s 10 --rounds 3
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <thread>
#include <vector>

#include "amqp/connection.hpp"
#include "amqp/topology.hpp"
#include "client/client.hpp"
#include "config/config.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kEchoKey = "bench.echo";
constexpr const char* kEchoQueue = "beds.bench.echo";

struct Figures {
  double throughput = 0;  // replies per second
  double p50_us = 0, p99_us = 0, p999_us = 0;
  uint64_t replies = 0;
  uint64_t errors = 0;
};

// The raw baseline: consume, publish the body back to reply_to, ack. Nothing else.
class EchoServer {
 public:
  EchoServer(const beds::config::AmqpSettings& amqp, int workers, int prefetch) {
    for (int i = 0; i < workers; ++i) {
      threads_.emplace_back([this, amqp, prefetch] { Run(amqp, prefetch); });
    }
    while (ready_.load() < workers) std::this_thread::sleep_for(10ms);
  }
  ~EchoServer() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  void Run(beds::config::AmqpSettings amqp, int prefetch) {
    auto c = beds::amqp::Connection::Open(amqp);
    if (!c) {
      std::cerr << "echo server: " << c.error().message << "\n";
      std::exit(3);
    }
    auto& conn = **c;
    beds::amqp::QueueOptions q;
    q.durable = false;
    q.auto_delete = true;
    if (!beds::amqp::DeclareExchanges(conn) || !conn.DeclareQueue(kEchoQueue, q) ||
        !conn.BindQueue(kEchoQueue, beds::amqp::kEventsExchange, kEchoKey) ||
        !conn.Qos(static_cast<uint16_t>(prefetch)) || !conn.Consume(kEchoQueue, false)) {
      std::cerr << "echo server: cannot set up its queue\n";
      std::exit(3);
    }
    ready_.fetch_add(1);
    while (!stop_) {
      auto d = conn.Next(100ms);
      if (!d) std::exit(3);
      if (!*d) continue;
      beds::amqp::Message reply;
      reply.body = (*d)->message.body;
      reply.correlation_id = (*d)->message.correlation_id;
      if (!conn.Publish("", (*d)->message.reply_to, reply) || !conn.Ack((*d)->delivery_tag))
        std::exit(3);
    }
  }

  std::atomic<bool> stop_{false};
  std::atomic<int> ready_{0};
  std::vector<std::thread> threads_;
};

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

// Keeps `inflight` requests outstanding for warmup + duration; measures only after the warmup.
Figures Load(const beds::config::AmqpSettings& amqp, const std::string& key,
             const std::string& body, int inflight, std::chrono::seconds warmup,
             std::chrono::seconds duration) {
  auto client = beds::client::Client::Connect(amqp);
  if (!client) {
    std::cerr << "client: " << client.error().message << "\n";
    std::exit(3);
  }
  std::map<std::string, Clock::time_point> sent;
  std::vector<double> latencies;
  latencies.reserve(1 << 20);
  Figures f;
  const auto start = Clock::now();
  const auto measure_from = start + warmup;
  const auto end = measure_from + duration;
  bool sending = true;
  while (sending || !sent.empty()) {
    const auto now = Clock::now();
    if (now >= end) sending = false;
    while (sending && static_cast<int>(sent.size()) < inflight) {
      auto id = (*client)->Send(key, body);
      if (!id) {
        std::cerr << "send: " << id.error().message << "\n";
        std::exit(3);
      }
      sent.emplace(*id, Clock::now());
    }
    if (sent.empty()) break;
    auto r = (*client)->Receive(5s);
    if (!r || !*r) {
      std::cerr << "no reply within 5 s; " << sent.size() << " outstanding\n";
      std::exit(3);
    }
    const auto got = Clock::now();
    auto it = sent.find((*r)->correlation_id);
    if (it == sent.end()) continue;
    if (it->second >= measure_from && got <= end) {
      latencies.push_back(std::chrono::duration<double, std::micro>(got - it->second).count());
      if ((*r)->body.find("\"ok\":false") != std::string::npos) ++f.errors;
    }
    sent.erase(it);
  }
  f.replies = latencies.size();
  f.throughput = static_cast<double>(f.replies) / std::chrono::duration<double>(duration).count();
  f.p50_us = Percentile(latencies, 0.50);
  f.p99_us = Percentile(latencies, 0.99);
  f.p999_us = Percentile(latencies, 0.999);
  return f;
}

void Print(const char* what, int round, const Figures& f) {
  std::printf(
      "%-8s round %d: %9.0f req/s  p50 %7.0f us  p99 %7.0f us  p99.9 %7.0f us  (%lu replies, %lu "
      "errors)\n",
      what, round, f.throughput, f.p50_us, f.p99_us, f.p999_us,
      static_cast<unsigned long>(f.replies), static_cast<unsigned long>(f.errors));
  std::fflush(stdout);
}

Figures Median(std::vector<Figures> v) {
  auto mid = [&](auto field) {
    std::vector<double> x;
    for (const auto& f : v) x.push_back(f.*field);
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
  };
  Figures m;
  m.throughput = mid(&Figures::throughput);
  m.p50_us = mid(&Figures::p50_us);
  m.p99_us = mid(&Figures::p99_us);
  m.p999_us = mid(&Figures::p999_us);
  for (const auto& f : v) m.errors += f.errors;
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"beds-bench: sys/ping through beds beside a bare rabbitmq-c echo baseline"};
  std::string config_dir = "config";
  std::string env;
  std::string broker = "rBroker";
  int inflight = 64;
  int body_bytes = 256;
  int duration_s = 10;
  int warmup_s = 2;
  int rounds = 3;
  app.add_option("--config-dir", config_dir,
                 "the config the running node uses (broker, pool size)");
  app.add_option("--env", env, "environment name");
  app.add_option("--broker", broker, "the node's broker pool that serves sys.read");
  app.add_option("--inflight,-w", inflight, "requests kept in flight (W)");
  app.add_option("--body-bytes", body_bytes, "request body size");
  app.add_option("--duration-s", duration_s, "measured seconds per round");
  app.add_option("--warmup-s", warmup_s, "unmeasured seconds before each round");
  app.add_option("--rounds", rounds, "alternating baseline/BEDS rounds");
  CLI11_PARSE(app, argc, argv);

  auto config = beds::config::Load(
      beds::config::FromEnvironment(config_dir, env.empty() ? std::nullopt : std::optional(env)));
  if (!config) {
    std::cerr << "beds-bench: config invalid:\n" << config.error().message << "\n";
    return 2;
  }
  const auto pool = std::find_if(config->brokers.begin(), config->brokers.end(),
                                 [&](const auto& b) { return b.name == broker; });
  if (pool == config->brokers.end()) {
    std::cerr << "beds-bench: no [brokers." << broker << "] in the config\n";
    return 2;
  }
  // Both sides get the same body size: a ping envelope padded with data.pad.
  std::string body = R"({"template":"sys","op":"ping","data":{"pad":""}})";
  if (static_cast<int>(body.size()) < body_bytes)
    body.insert(body.size() - 3, body_bytes - body.size(), 'x');

  std::printf(
      "beds-bench: W=%d, %zu-byte bodies, %d s x %d rounds; baseline = %d echo consumers, prefetch "
      "%d\n",
      inflight, body.size(), duration_s, rounds, pool->instances, pool->prefetch);
  std::vector<Figures> base, beds;
  {
    EchoServer echo(config->amqp, pool->instances, pool->prefetch);
    for (int r = 1; r <= rounds; ++r) {
      base.push_back(Load(config->amqp, kEchoKey, body, inflight, std::chrono::seconds(warmup_s),
                          std::chrono::seconds(duration_s)));
      Print("baseline", r, base.back());
      beds.push_back(Load(config->amqp, "sys.read", body, inflight, std::chrono::seconds(warmup_s),
                          std::chrono::seconds(duration_s)));
      Print("beds", r, beds.back());
    }
  }
  const Figures b = Median(base);
  const Figures m = Median(beds);
  std::printf("\nmedian   baseline: %9.0f req/s  p50 %7.0f us  p99 %7.0f us  p99.9 %7.0f us\n",
              b.throughput, b.p50_us, b.p99_us, b.p999_us);
  std::printf("median   beds:     %9.0f req/s  p50 %7.0f us  p99 %7.0f us  p99.9 %7.0f us\n",
              m.throughput, m.p50_us, m.p99_us, m.p999_us);
  std::printf("ratio    beds/baseline throughput %.3f; p50 difference %+.0f us\n",
              b.throughput > 0 ? m.throughput / b.throughput : 0.0, m.p50_us - b.p50_us);
  if (m.errors > 0) {
    std::printf("beds answered %lu requests with an error\n", static_cast<unsigned long>(m.errors));
    return 1;
  }
  return 0;
}
