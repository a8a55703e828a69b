#include "metrics/metrics.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "metrics/http_server.hpp"

namespace beds::metrics {
namespace {

TEST(MetricsTest, EmptyRegistryRendersNothing) {
  Registry registry;
  EXPECT_EQ(registry.Render(), "");
}

TEST(MetricsTest, CounterWithLabelsRendersExactly) {
  Registry registry;
  registry.GetCounter("beds_requests_total", "Requests handled.", {{"template", "t"}, {"op", "b"}})
      .Inc(3);
  registry.GetCounter("beds_requests_total", "ignored", {{"template", "t"}, {"op", "a"}}).Inc();
  registry.GetCounter("beds_requests_total", "ignored").Inc(0);
  EXPECT_EQ(registry.Render(),
            "# HELP beds_requests_total Requests handled.\n"
            "# TYPE beds_requests_total counter\n"
            "beds_requests_total 0\n"
            "beds_requests_total{template=\"t\",op=\"a\"} 1\n"
            "beds_requests_total{template=\"t\",op=\"b\"} 3\n");
}

TEST(MetricsTest, GaugeRendersExactly) {
  Registry registry;
  Gauge& g = registry.GetGauge("beds_queue_depth", "Messages waiting.", {{"queue", "q1"}});
  g.Set(10);
  g.Add(-15);
  EXPECT_EQ(g.Value(), -5);
  EXPECT_EQ(registry.Render(),
            "# HELP beds_queue_depth Messages waiting.\n"
            "# TYPE beds_queue_depth gauge\n"
            "beds_queue_depth{queue=\"q1\"} -5\n");
}

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Registry registry;
  Histogram& h = registry.GetHistogram("beds_latency_seconds", "Latency.", {{"op", "get"}});
  // Values exact in binary, so that _sum renders exactly; 0.5 sits on a bound (le is inclusive).
  h.Observe(0.00006103515625);  // 2^-14 -> le=0.0001
  h.Observe(0.5);               // le=0.5
  h.Observe(0.75);              // le=1
  h.Observe(3);                 // le=5
  h.Observe(12);                // +Inf only
  h.Observe(std::nan(""));      // ignored
  EXPECT_EQ(h.Count(), 5u);
  EXPECT_DOUBLE_EQ(h.Sum(), 16.25006103515625);
  EXPECT_EQ(registry.Render(),
            "# HELP beds_latency_seconds Latency.\n"
            "# TYPE beds_latency_seconds histogram\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.0001\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.00025\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.0005\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.001\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.0025\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.005\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.01\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.025\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.05\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.1\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.25\"} 1\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"0.5\"} 2\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"1\"} 3\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"2.5\"} 3\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"5\"} 4\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"10\"} 4\n"
            "beds_latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 5\n"
            "beds_latency_seconds_sum{op=\"get\"} 16.25006103515625\n"
            "beds_latency_seconds_count{op=\"get\"} 5\n");
}

TEST(MetricsTest, LabelValuesAndHelpAreEscaped) {
  Registry registry;
  registry.GetGauge("g", "say \"hi\" \\ then\nmore", {{"path", "a\\b\"c\nd"}}).Set(1);
  EXPECT_EQ(registry.Render(),
            "# HELP g say \"hi\" \\\\ then\\nmore\n"
            "# TYPE g gauge\n"
            "g{path=\"a\\\\b\\\"c\\nd\"} 1\n");
}

TEST(MetricsTest, FamiliesAreSortedByName) {
  Registry registry;
  registry.GetGauge("b", "B").Set(2);
  registry.GetCounter("a_total", "A").Inc();
  registry.GetGauge("c", "C").Set(3);
  EXPECT_EQ(registry.Render(),
            "# HELP a_total A\n# TYPE a_total counter\na_total 1\n"
            "# HELP b B\n# TYPE b gauge\nb 2\n"
            "# HELP c C\n# TYPE c gauge\nc 3\n");
}

TEST(MetricsTest, CollectorSamplesAreRenderedOnEveryScrape) {
  Registry registry;
  registry.GetCounter("beds_jobs_total", "Jobs.", {{"pool", "a"}}).Inc(2);
  registry.GetGauge("beds_z", "Z.").Set(1);
  int calls = 0;
  registry.AddCollector([&calls](std::vector<Registry::Sample>& out) {
    ++calls;
    out.push_back({"beds_pool_idle", "Idle connections.", "gauge", {{"pool", "main"}}, 2.5});
    out.push_back({"beds_pool_idle", "other help", "gauge", {{"pool", "aux"}}, 1e-05});
    out.push_back({"beds_jobs_total", "", "counter", {{"pool", "b"}}, 7});
    out.push_back({"beds_z", "", "counter", {}, 1});          // type differs from beds_z: dropped
    out.push_back({"beds_bad", "", "histogram", {}, 1});      // not counter/gauge: dropped
    out.push_back({"bad name", "", "gauge", {}, 1});          // malformed: dropped
    out.push_back({"beds_pool_idle", "", "counter", {}, 1});  // differs from first: dropped
  });
  registry.AddCollector([](std::vector<Registry::Sample>&) { throw std::runtime_error("boom"); });
  const std::string expected =
      "# HELP beds_jobs_total Jobs.\n"
      "# TYPE beds_jobs_total counter\n"
      "beds_jobs_total{pool=\"a\"} 2\n"
      "beds_jobs_total{pool=\"b\"} 7\n"
      "# HELP beds_pool_idle Idle connections.\n"
      "# TYPE beds_pool_idle gauge\n"
      "beds_pool_idle{pool=\"main\"} 2.5\n"
      "beds_pool_idle{pool=\"aux\"} 1e-05\n"
      "# HELP beds_z Z.\n"
      "# TYPE beds_z gauge\n"
      "beds_z 1\n";
  EXPECT_EQ(registry.Render(), expected);
  EXPECT_EQ(registry.Render(), expected);
  EXPECT_EQ(calls, 2);
}

TEST(MetricsTest, CollectorMayRegisterMetrics) {
  Registry registry;
  registry.AddCollector([&registry](std::vector<Registry::Sample>&) {
    registry.GetCounter("beds_scrapes_total", "Scrapes.").Inc();
  });
  EXPECT_EQ(registry.Render(),
            "# HELP beds_scrapes_total Scrapes.\n# TYPE beds_scrapes_total counter\n"
            "beds_scrapes_total 1\n");
}

TEST(MetricsTest, SameNameAndLabelsReturnTheSameObject) {
  Registry registry;
  Counter& a = registry.GetCounter("x_total", "X.", {{"k", "1"}, {"j", "2"}});
  EXPECT_EQ(&a, &registry.GetCounter("x_total", "X.", {{"k", "1"}, {"j", "2"}}));
  EXPECT_EQ(&a, &registry.GetCounter("x_total", "X.", {{"j", "2"}, {"k", "1"}}));
  EXPECT_NE(&a, &registry.GetCounter("x_total", "X.", {{"k", "1"}, {"j", "3"}}));
  EXPECT_NE(&a, &registry.GetCounter("x_total", "X."));
  Histogram& h = registry.GetHistogram("h_seconds", "H.");
  EXPECT_EQ(&h, &registry.GetHistogram("h_seconds", "H."));
  Gauge& g = registry.GetGauge("g", "G.");
  EXPECT_EQ(&g, &registry.GetGauge("g", "G."));
}

TEST(MetricsTest, TypeClashThrows) {
  Registry registry;
  registry.GetCounter("x_total", "X.");
  EXPECT_THROW(registry.GetGauge("x_total", "X."), std::logic_error);
  EXPECT_THROW(registry.GetHistogram("x_total", "X.", {{"a", "b"}}), std::logic_error);
  registry.GetGauge("g", "G.");
  EXPECT_THROW(registry.GetCounter("g", "G."), std::logic_error);
}

TEST(MetricsTest, MalformedNamesThrow) {
  Registry registry;
  EXPECT_THROW(registry.GetCounter("", "X."), std::logic_error);
  EXPECT_THROW(registry.GetCounter("9lives_total", "X."), std::logic_error);
  EXPECT_THROW(registry.GetCounter("a-b_total", "X."), std::logic_error);
  EXPECT_THROW(registry.GetCounter("x_total", "X.", {{"bad-key", "v"}}), std::logic_error);
  EXPECT_THROW(registry.GetCounter("x_total", "X.", {{"__name__", "v"}}), std::logic_error);
  EXPECT_THROW(registry.GetCounter("x_total", "X.", {{"a", "1"}, {"a", "2"}}), std::logic_error);
  EXPECT_THROW(registry.GetHistogram("h_seconds", "H.", {{"le", "1"}}), std::logic_error);
  EXPECT_EQ(registry.Render(), "");  // nothing half-registered
}

TEST(MetricsTest, ConcurrentIncFromFourThreadsGivesExactTotal) {
  Registry registry;
  Counter& c = registry.GetCounter("c_total", "C.");
  Histogram& h = registry.GetHistogram("h_seconds", "H.");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kPerThread; ++i) {
        c.Inc();
        h.Observe(0.5);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(c.Value(), uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(h.Count(), uint64_t{kThreads} * kPerThread);
  EXPECT_DOUBLE_EQ(h.Sum(), 0.5 * kThreads * kPerThread);  // exact: halves add up exactly
}

// --- HttpServer ------------------------------------------------------------------------------

// A connected loopback socket; every read gives up after 5 s so that a broken server fails the
// test instead of hanging it.
int Connect(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Everything the server sends until it closes the connection.
std::string ReadAll(int fd) {
  std::string out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

struct Reply {
  std::string status_line;
  std::string headers;
  std::string body;
};

Reply Exchange(int port, const std::string& request) {
  const int fd = Connect(port);
  EXPECT_GE(fd, 0);
  if (fd < 0) return {};
  EXPECT_EQ(::send(fd, request.data(), request.size(), 0), static_cast<ssize_t>(request.size()));
  const std::string raw = ReadAll(fd);
  ::close(fd);
  Reply reply;
  const size_t line_end = raw.find("\r\n");
  const size_t head_end = raw.find("\r\n\r\n");
  if (line_end == std::string::npos || head_end == std::string::npos) return reply;
  reply.status_line = raw.substr(0, line_end);
  reply.headers = raw.substr(line_end + 2, head_end - line_end - 2);
  reply.body = raw.substr(head_end + 4);
  return reply;
}

TEST(MetricsTest, HttpServerServesRender) {
  Registry registry;
  registry.GetCounter("beds_requests_total", "Requests.", {{"op", "get"}}).Inc(5);
  registry.GetHistogram("beds_latency_seconds", "Latency.").Observe(0.01);
  auto server = HttpServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.has_value()) << server.error().message;
  ASSERT_GT((*server)->port(), 0);

  const Reply reply =
      Exchange((*server)->port(), "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
  EXPECT_EQ(reply.status_line, "HTTP/1.1 200 OK");
  EXPECT_NE(reply.headers.find("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            std::string::npos)
      << reply.headers;
  EXPECT_EQ(reply.body, registry.Render());

  // A second scrape on a new connection sees the new value.
  registry.GetCounter("beds_requests_total", "Requests.", {{"op", "get"}}).Inc();
  EXPECT_EQ(Exchange((*server)->port(), "GET /metrics?x=1 HTTP/1.0\r\n\r\n").body,
            registry.Render());
}

TEST(MetricsTest, HttpServerAnswers404And405And400) {
  Registry registry;
  auto server = HttpServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.has_value()) << server.error().message;
  const int port = (*server)->port();
  EXPECT_EQ(Exchange(port, "GET /other HTTP/1.1\r\nHost: x\r\n\r\n").status_line,
            "HTTP/1.1 404 Not Found");
  const Reply post =
      Exchange(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  EXPECT_EQ(post.status_line, "HTTP/1.1 405 Method Not Allowed");
  EXPECT_NE(post.headers.find("Allow: GET"), std::string::npos) << post.headers;
  EXPECT_EQ(Exchange(port, "NOT HTTP AT ALL\r\n\r\n").status_line, "HTTP/1.1 400 Bad Request");
}

TEST(MetricsTest, HttpServerRefusesNonLoopbackAndMalformedAddresses) {
  Registry registry;
  for (const char* listen : {"0.0.0.0:0", "192.0.2.1:9464", "[::]:0", "example.com:9464",
                             "127.0.0.1", "127.0.0.1:", "127.0.0.1:70000", "127.0.0.1:9x"}) {
    auto server = HttpServer::Start(listen, registry);
    ASSERT_FALSE(server.has_value()) << listen;
    EXPECT_EQ(server.error().code, Code::kValidation) << listen;
  }
}

TEST(MetricsTest, HttpServerReportsAPortInUse) {
  Registry registry;
  auto first = HttpServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(first.has_value()) << first.error().message;
  auto second = HttpServer::Start("127.0.0.1:" + std::to_string((*first)->port()), registry);
  ASSERT_FALSE(second.has_value());
  EXPECT_EQ(second.error().code, Code::kUnavailable);
}

TEST(MetricsTest, HttpServerDestructorReturnsPromptlyWithIdleClient) {
  Registry registry;
  auto server = HttpServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.has_value()) << server.error().message;
  const int fd = Connect((*server)->port());
  ASSERT_GE(fd, 0);
  const std::string partial = "GET /metr";  // a request that never completes
  ASSERT_EQ(::send(fd, partial.data(), partial.size(), 0), static_cast<ssize_t>(partial.size()));

  const auto start = std::chrono::steady_clock::now();
  server->reset();
  const auto elapsed = std::chrono::steady_clock::now() - start;
  // Well under the 2 s read timeout: stopping does not wait for the client.
  EXPECT_LT(elapsed, std::chrono::milliseconds(500));
  EXPECT_EQ(ReadAll(fd), "");  // closed without an answer
  ::close(fd);
}

TEST(MetricsTest, HttpServerDropsAnIdleClientAfterTheTimeout) {
  Registry registry;
  auto server = HttpServer::Start("127.0.0.1:0", registry);
  ASSERT_TRUE(server.has_value()) << server.error().message;
  const int idle = Connect((*server)->port());
  ASSERT_GE(idle, 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(ReadAll(idle), "");  // the server closes it; the client's own limit is 5 s
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(4000));
  ::close(idle);
  // And the endpoint serves again.
  EXPECT_EQ(Exchange((*server)->port(), "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").status_line,
            "HTTP/1.1 200 OK");
}

}  // namespace
}  // namespace beds::metrics
