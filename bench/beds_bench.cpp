// beds-bench: keeps W requests in flight against a running `beds` node and reports throughput and
// latency percentiles, beside a raw baseline measured in the same run on the same broker: a bare
// rabbitmq-c echo server (the same number of consumers and prefetch as the node's broker pool that
// serves the mode's routing key, each acking after it publishes the reply, as BEDS workers do).
// Rounds alternate baseline and BEDS so that machine noise hits both alike; the medians and their
// ratio are printed.
//
// --mode ping (the default) sends sys/ping; the baseline echoes the body back.
// --mode rel sends Users/call get for N rows it creates through BEDS if they are missing; each
// baseline consumer runs the same prepared CALL usr_get(?) on a MariaDB connection of its own and
// replies with the row, so the difference is what BEDS adds around the database round trip.
// --mode rec-create sends Sessions/create (rec.write), every document with a token never sent
// before; each baseline consumer runs BEDS's BEGIN IMMEDIATE / INSERT / COMMIT on a connection of
// its own to the node's SQLite file (same pragmas) and replies with the document.
// --mode rec-fetch sends Sessions/fetch by key (rec.read) for N documents it creates through BEDS
// if they are missing; each baseline consumer runs BEDS's SELECT on the same file.
// --mode fanout issues --children child requests (Users/call get) at once through the client's
// FanOut, one fan-out at a time, against a single child request: the ratio of their latencies,
// for BEDS and for the rel baseline's consumers (what the machine itself allows).
//
//   beds-bench --config-dir config --inflight 64 --body-bytes 256 --duration-s 10 --rounds 3
//   beds-bench --config-dir config --mode rel --rows 1000 --inflight 64
//   beds-bench --config-dir config --mode rec-fetch --rows 1000 --inflight 64
#include <mysql.h>
#include <sqlite3.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string_view>
#include <thread>
#include <vector>

#include "amqp/connection.hpp"
#include "amqp/topology.hpp"
#include "client/client.hpp"
#include "config/config.hpp"
#include "core/lineage.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace json = boost::json;

constexpr const char* kEchoKey = "bench.echo";
constexpr const char* kEchoQueue = "beds.bench.echo";
constexpr const char* kRelEchoKey = "bench.rel";
constexpr const char* kRelEchoQueue = "beds.bench.rel";
constexpr const char* kRecEchoKey = "bench.rec";
constexpr const char* kRecEchoQueue = "beds.bench.rec";
constexpr int kFetchLimit = 500;  // templates/usr_users_rel.toml: [ops.fetch] max_limit
// templates/example_rec.toml: [ops.fetch] max_limit, which is also the limit BEDS binds when the
// request gives none.
constexpr int kSessionsLimit = 500;
constexpr int kCreateWindow = 64;

// The statements BEDS's SQLite engine runs for Sessions (src/adapters/sqlite/sqlite.cpp: Write,
// Insert, Find with the key filter and the key order it always appends).
constexpr const char* kSqlBegin = "BEGIN IMMEDIATE";
constexpr const char* kSqlInsert = R"(INSERT INTO "sesSessions" (id, doc) VALUES (?, ?))";
constexpr const char* kSqlCommit = "COMMIT";
constexpr const char* kSqlFetchByKey =
    R"(SELECT doc FROM "sesSessions" WHERE id = ? ORDER BY id LIMIT ? OFFSET ?)";
// Every Sessions document the bench writes has this created time (and agent "bench").
constexpr const char* kSessionCreated = "2026-11-25T10:00:00.000Z";

struct Figures {
  double throughput = 0;  // replies per second
  double p50_us = 0, p99_us = 0, p999_us = 0;
  uint64_t replies = 0;
  uint64_t errors = 0;
  double node_cpu_us = -1;  // the node's CPU time per reply (--node-pid), -1 when not measured
};

// CPU time (user + system, every thread) the process `pid` has used so far, in microseconds, from
// /proc/{pid}/stat; -1 when it cannot be read. Clock ticks are 10 ms: over a round of thousands
// of requests the figure per request is still exact to a fraction of a microsecond.
double ProcessCpuUs(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return -1;
  const size_t name_end = line.rfind(')');  // the command name may hold spaces and parentheses
  if (name_end == std::string::npos) return -1;
  std::istringstream fields(line.substr(name_end + 1));
  std::string skip;
  for (int i = 3; i <= 13; ++i) fields >> skip;  // state … cmajflt: fields 3 to 13
  long long utime = 0, stime = 0;
  if (!(fields >> utime >> stime)) return -1;
  return static_cast<double>(utime + stime) * 1e6 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

[[noreturn]] void Die(const std::string& why) {
  std::cerr << "beds-bench: " << why << "\n";
  std::exit(3);
}

// What a baseline consumer does with one request body: its reply body. One per consumer thread.
class Responder {
 public:
  virtual ~Responder() = default;
  virtual std::string Reply(const std::string& request) = 0;
};

class EchoResponder : public Responder {
 public:
  std::string Reply(const std::string& request) override { return request; }
};

// The rel baseline's database side: BEDS's Users/call get without BEDS. The same prepared
// CALL usr_get(?) on a connection of its own, prepared once, every result set drained, the row
// sent back as JSON.
class UsrGetResponder : public Responder {
 public:
  explicit UsrGetResponder(const beds::config::DatabaseSettings& db) {
    mysql_ = mysql_init(nullptr);
    if (!mysql_) Die("rel baseline: mysql_init failed");
    mysql_optionsv(mysql_, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    // The node's master connection takes the socket when one is configured; so does this one.
    const bool use_socket = !db.socket.empty();
    if (!mysql_real_connect(mysql_, use_socket ? nullptr : db.host.c_str(), db.user.c_str(),
                            db.pass.c_str(), db.database.c_str(), static_cast<unsigned>(db.port),
                            use_socket ? db.socket.c_str() : nullptr, CLIENT_MULTI_RESULTS)) {
      Die("rel baseline: database " + db.name + ": " + mysql_error(mysql_));
    }
    stmt_ = mysql_stmt_init(mysql_);
    const std::string_view sql = "CALL usr_get(?)";
    if (!stmt_ || mysql_stmt_prepare(stmt_, sql.data(), sql.size()) != 0) Fail("prepare");
    // Bound once: execute reads id_ afresh each time.
    MYSQL_BIND param{};
    param.buffer_type = MYSQL_TYPE_LONGLONG;
    param.buffer = &id_;
    if (mysql_stmt_bind_param(stmt_, &param) != 0) Fail("bind");
  }
  ~UsrGetResponder() override {
    if (stmt_) mysql_stmt_close(stmt_);
    mysql_close(mysql_);
  }
  UsrGetResponder(const UsrGetResponder&) = delete;
  UsrGetResponder& operator=(const UsrGetResponder&) = delete;

  std::string Reply(const std::string& request) override {
    // The same stack arena BEDS parses requests into, so neither side pays more for allocation.
    unsigned char arena[4096];
    json::monotonic_resource parse_memory(arena, sizeof(arena));
    boost::system::error_code ec;
    const json::value body = json::parse(request, ec, &parse_memory);
    const json::object* envelope = ec ? nullptr : body.if_object();
    const json::value* id = envelope ? envelope->if_contains("id") : nullptr;
    const json::string* text = id ? id->if_string() : nullptr;
    if (!text || std::from_chars(text->data(), text->data() + text->size(), id_).ec != std::errc())
      Die("rel baseline: a request without a numeric id: " + request);
    if (mysql_stmt_execute(stmt_) != 0) Fail("execute");
    json::array rows;
    while (true) {
      const unsigned fields = mysql_stmt_field_count(stmt_);
      if (fields > 0) BindResult(fields);
      while (fields > 0) {
        const int rc = mysql_stmt_fetch(stmt_);
        if (rc == MYSQL_NO_DATA) break;
        if (rc == 1) Fail("fetch");
        json::object row;
        for (unsigned i = 0; i < fields; ++i) {
          Column& c = columns_[i];
          if (c.is_null) {
            row[c.name] = nullptr;
            continue;
          }
          if (c.length > c.buffer.size()) {  // truncated: fetch it again into a buffer that fits
            std::string big(c.length, '\0');
            MYSQL_BIND again = binds_[i];
            again.buffer = big.data();
            again.buffer_length = big.size();
            if (mysql_stmt_fetch_column(stmt_, &again, i, 0) != 0) Fail("fetch column");
            row[c.name] = big;
            continue;
          }
          row[c.name] = std::string_view(c.buffer.data(), c.length);
        }
        rows.push_back(std::move(row));
      }
      const int next = mysql_stmt_next_result(stmt_);
      if (next == -1) break;
      if (next > 0) Fail("next result");
    }
    return json::serialize(json::object{{"ok", true}, {"data", std::move(rows)}});
  }

 private:
  struct Column {
    std::string name;
    std::string buffer = std::string(256, '\0');
    unsigned long length = 0;
    my_bool is_null = 0;
    my_bool error = 0;
  };

  [[noreturn]] void Fail(const char* what) {
    Die(std::string("rel baseline: CALL usr_get(?) ") + what + ": " +
        (stmt_ ? mysql_stmt_error(stmt_) : mysql_error(mysql_)));
  }

  // Every column as text, which is all a JSON reply needs.
  void BindResult(unsigned fields) {
    MYSQL_RES* meta = mysql_stmt_result_metadata(stmt_);
    if (!meta) Fail("result metadata");
    const MYSQL_FIELD* f = mysql_fetch_fields(meta);
    columns_.resize(fields);
    binds_.assign(fields, MYSQL_BIND{});
    for (unsigned i = 0; i < fields; ++i) {
      Column& c = columns_[i];
      c.name = f[i].name;
      MYSQL_BIND& b = binds_[i];
      b.buffer_type = MYSQL_TYPE_STRING;
      b.buffer = c.buffer.data();
      b.buffer_length = c.buffer.size();
      b.length = &c.length;
      b.is_null = &c.is_null;
      b.error = &c.error;
    }
    mysql_free_result(meta);
    if (mysql_stmt_bind_result(stmt_, binds_.data()) != 0) Fail("bind result");
  }

  MYSQL* mysql_ = nullptr;
  MYSQL_STMT* stmt_ = nullptr;
  long long id_ = 0;
  std::vector<Column> columns_;
  std::vector<MYSQL_BIND> binds_;
};

// The rec baselines' database side: a connection of its own to the node's SQLite file, opened as
// BEDS opens each worker's (Store::Connect: no mutex, WAL, the configured synchronous, busy
// timeout = query_timeout_ms), with BEDS's statements prepared once as persistent.
class SqliteResponder : public Responder {
 public:
  ~SqliteResponder() override {
    for (sqlite3_stmt* st : statements_) sqlite3_finalize(st);
    sqlite3_close_v2(db_);
  }
  SqliteResponder(const SqliteResponder&) = delete;
  SqliteResponder& operator=(const SqliteResponder&) = delete;

 protected:
  SqliteResponder(const beds::config::DatabaseSettings& db, std::string what)
      : what_(std::move(what)) {
    const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(db.path.c_str(), &db_, flags, nullptr) != SQLITE_OK)
      Fail("open " + db.path);
    sqlite3_extended_result_codes(db_, 1);
    sqlite3_busy_timeout(db_, static_cast<int>(db.query_timeout_ms));
    Exec("PRAGMA journal_mode=WAL");
    Exec("PRAGMA synchronous=" + db.synchronous);
  }

  sqlite3_stmt* Prepare(const char* sql) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, nullptr) != SQLITE_OK)
      Fail(std::string("prepare ") + sql);
    statements_.push_back(st);
    return st;
  }

  // Steps a statement that returns no rows and resets it for the next request.
  void Run(sqlite3_stmt* st) {
    const int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) Fail(sqlite3_sql(st));
  }

  // The request as JSON, parsed into the caller's stack arena as BEDS parses requests, so neither
  // side pays more for allocation.
  json::object Parse(const std::string& request, json::monotonic_resource& memory) const {
    boost::system::error_code ec;
    json::value body = json::parse(request, ec, &memory);
    if (ec || !body.is_object()) Die(what_ + ": a request that is not a JSON object: " + request);
    return std::move(body.get_object());
  }

  // A baseline that cannot do what BEDS does would measure nothing: the run ends.
  [[noreturn]] void Fail(const std::string& doing) const {
    Die(what_ + ": " + doing + ": " + (db_ ? sqlite3_errmsg(db_) : "out of memory"));
  }

 private:
  void Exec(const std::string& sql) {
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) Fail(sql);
  }

  const std::string what_;
  sqlite3* db_ = nullptr;
  std::vector<sqlite3_stmt*> statements_;
};

// rec-create's baseline: Sessions/create without BEDS. The request's data object is the document
// (the bench sends the template's fields in their declared order, as BEDS stores them), inserted
// under its token in BEDS's transaction, and sent back as BEDS answers a create.
class SessionCreateResponder : public SqliteResponder {
 public:
  explicit SessionCreateResponder(const beds::config::DatabaseSettings& db)
      : SqliteResponder(db, "rec-create baseline"),
        begin_(Prepare(kSqlBegin)),
        insert_(Prepare(kSqlInsert)),
        commit_(Prepare(kSqlCommit)) {}

  std::string Reply(const std::string& request) override {
    unsigned char arena[4096];
    json::monotonic_resource parse_memory(arena, sizeof(arena));
    const json::object envelope = Parse(request, parse_memory);
    const json::value* data = envelope.if_contains("data");
    const json::object* doc = data ? data->if_object() : nullptr;
    const json::value* token = doc ? doc->if_contains("token") : nullptr;
    if (!token || !token->is_string()) Die("rec-create baseline: no data.token in " + request);
    const std::string text = json::serialize(*doc);
    Run(begin_);
    const json::string& key = token->get_string();
    sqlite3_bind_text(insert_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_text(insert_, 2, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
    Run(insert_);  // a used token ends the run: the two sides' tokens must never meet
    Run(commit_);
    return R"({"ok":true,"data":[)" + text + "]}";
  }

 private:
  sqlite3_stmt* const begin_;
  sqlite3_stmt* const insert_;
  sqlite3_stmt* const commit_;
};

// rec-fetch's baseline: Sessions/fetch by key without BEDS. The same SELECT with the same limit
// and offset; the stored text is already the JSON document, so it goes into the reply as it is
// (BEDS parses it and serializes it again: that is part of what the ratio measures).
class SessionFetchResponder : public SqliteResponder {
 public:
  explicit SessionFetchResponder(const beds::config::DatabaseSettings& db)
      : SqliteResponder(db, "rec-fetch baseline"), select_(Prepare(kSqlFetchByKey)) {}

  std::string Reply(const std::string& request) override {
    unsigned char arena[4096];
    json::monotonic_resource parse_memory(arena, sizeof(arena));
    const json::object envelope = Parse(request, parse_memory);
    const json::value* id = envelope.if_contains("id");
    if (!id || !id->is_string()) Die("rec-fetch baseline: a request without an id: " + request);
    const json::string& key = id->get_string();
    sqlite3_bind_text(select_, 1, key.data(), static_cast<int>(key.size()), SQLITE_STATIC);
    sqlite3_bind_int64(select_, 2, kSessionsLimit);
    sqlite3_bind_int64(select_, 3, 0);
    std::string reply = R"({"ok":true,"data":[)";
    int rc;
    for (bool first = true; (rc = sqlite3_step(select_)) == SQLITE_ROW; first = false) {
      if (!first) reply += ',';
      reply.append(reinterpret_cast<const char*>(sqlite3_column_text(select_, 0)),
                   static_cast<size_t>(sqlite3_column_bytes(select_, 0)));
    }
    sqlite3_reset(select_);
    if (rc != SQLITE_DONE) Fail(kSqlFetchByKey);
    return reply + "]}";
  }

 private:
  sqlite3_stmt* const select_;
};

using ResponderFactory = std::function<std::unique_ptr<Responder>()>;

// The raw baseline: consume, publish the responder's reply to reply_to, ack. Nothing else.
class EchoServer {
 public:
  // make_responder runs on each consumer's own thread, before that consumer counts as ready.
  EchoServer(const beds::config::AmqpSettings& amqp, std::string key, std::string queue,
             int workers, int prefetch, ResponderFactory make_responder)
      : key_(std::move(key)), queue_(std::move(queue)), make_responder_(std::move(make_responder)) {
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
    if (!beds::amqp::DeclareExchanges(conn) || !conn.DeclareQueue(queue_, q) ||
        !conn.BindQueue(queue_, beds::amqp::kEventsExchange, key_) ||
        !conn.Qos(static_cast<uint16_t>(prefetch)) || !conn.Consume(queue_, false)) {
      std::cerr << "echo server: cannot set up its queue\n";
      std::exit(3);
    }
    const std::unique_ptr<Responder> responder = make_responder_();
    ready_.fetch_add(1);
    while (!stop_) {
      auto d = conn.Next(100ms);
      if (!d) std::exit(3);
      if (!*d) continue;
      beds::amqp::Message reply;
      reply.body = responder->Reply((*d)->message.body);
      reply.correlation_id = (*d)->message.correlation_id;
      if (!conn.Publish("", (*d)->message.reply_to, reply) || !conn.Ack((*d)->delivery_tag))
        std::exit(3);
    }
  }

  const std::string key_;
  const std::string queue_;
  const ResponderFactory make_responder_;
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

// Where Load takes each request body from: the read modes cycle through a fixed list, rec-create
// makes a new document each time.
using BodySource = std::function<std::string()>;

BodySource Cycle(std::vector<std::string> bodies) {
  return [bodies = std::move(bodies), next = size_t{0}]() mutable {
    const std::string& body = bodies[next];
    if (++next == bodies.size()) next = 0;
    return body;
  };
}

// Keeps `inflight` requests outstanding for warmup + duration, each body from next_body; measures
// only after the warmup.
Figures Load(const beds::config::AmqpSettings& amqp, const std::string& key, BodySource& next_body,
             int inflight, std::chrono::seconds warmup, std::chrono::seconds duration,
             const beds::client::SendOptions& options = {}, int node_pid = 0) {
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
  double cpu_from = -1, cpu_to = -1;
  while (sending || !sent.empty()) {
    const auto now = Clock::now();
    if (node_pid > 0 && cpu_from < 0 && now >= measure_from) cpu_from = ProcessCpuUs(node_pid);
    if (node_pid > 0 && cpu_to < 0 && now >= end) cpu_to = ProcessCpuUs(node_pid);
    if (now >= end) sending = false;
    while (sending && static_cast<int>(sent.size()) < inflight) {
      auto id = (*client)->Send(key, next_body(), options);
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
  if (cpu_from >= 0 && cpu_to >= cpu_from && f.replies > 0) {
    f.node_cpu_us = (cpu_to - cpu_from) / static_cast<double>(f.replies);
  }
  f.p50_us = Percentile(latencies, 0.50);
  f.p99_us = Percentile(latencies, 0.99);
  f.p999_us = Percentile(latencies, 0.999);
  return f;
}

std::string BenchEmail(int k) { return "bench" + std::to_string(k) + "@example.org"; }

// A reply's data array, or the end of the run: a bench that reads rows it could not set up
// would measure errors.
json::array ReplyData(const std::string& what, const std::string& reply) {
  boost::system::error_code ec;
  json::value v = json::parse(reply, ec);
  const json::object* o = ec ? nullptr : v.if_object();
  const json::value* ok = o ? o->if_contains("ok") : nullptr;
  const json::value* data = o ? o->if_contains("data") : nullptr;
  if (!ok || !ok->is_bool() || !ok->get_bool() || !data || !data->is_array())
    Die(what + " failed: " + reply);
  return data->get_array();
}

// Sends the create requests on `key` kCreateWindow at a time (the write pool commits them side by
// side), persistent as a client's writes are, and hands each reply to `done` with the index of
// its request.
void CreateAll(beds::client::Client& client, const std::string& key, const std::string& what,
               const std::vector<std::string>& requests,
               const std::function<void(size_t, const std::string&)>& done) {
  beds::client::SendOptions write;
  write.delivery_mode = 2;
  std::map<std::string, size_t> creating;  // correlation id -> request
  for (size_t i = 0; i < requests.size() || !creating.empty();) {
    for (; i < requests.size() && creating.size() < static_cast<size_t>(kCreateWindow); ++i) {
      auto id = client.Send(key, requests[i], write);
      if (!id) Die(what + ": " + id.error().message);
      creating.emplace(*id, i);
    }
    auto r = client.Receive(10s);
    if (!r) Die(what + ": " + r.error().message);
    if (!*r) Die(what + ": no reply within 10 s");
    auto it = creating.find((*r)->correlation_id);
    if (it == creating.end()) continue;
    done(it->second, (*r)->body);
    creating.erase(it);
  }
}

// The ids of the rows bench1..bench<rows>@example.org: those already there are looked up, the
// rest created through BEDS (so a second run against the same database reads the same rows).
std::vector<int64_t> EnsureRows(const beds::config::AmqpSettings& amqp, int rows) {
  auto client = beds::client::Client::Connect(amqp);
  if (!client) Die("client: " + client.error().message);
  std::vector<int64_t> ids(static_cast<size_t>(rows), 0);
  for (int first = 1; first <= rows; first += kFetchLimit) {
    json::array emails;
    for (int k = first; k <= std::min(rows, first + kFetchLimit - 1); ++k)
      emails.push_back(json::string(BenchEmail(k)));
    const json::object request{{"template", "Users"},
                               {"op", "fetch"},
                               {"where", {{"email", {{"in", std::move(emails)}}}}},
                               {"limit", kFetchLimit}};
    auto r = (*client)->Call("rel.read", json::serialize(request), 10s);
    if (!r) Die("Users/fetch of the bench rows: " + r.error().message);
    for (const json::value& row : ReplyData("Users/fetch of the bench rows", r->body)) {
      const std::string email(row.at("email").as_string());
      int k = 0;
      std::from_chars(email.data() + 5, email.data() + email.size(), k);
      if (k >= 1 && k <= rows) ids[static_cast<size_t>(k - 1)] = row.at("id").to_number<int64_t>();
    }
  }
  std::vector<int> missing;  // request i creates row missing[i]
  std::vector<std::string> requests;
  for (int k = 1; k <= rows; ++k) {
    if (ids[static_cast<size_t>(k - 1)] != 0) continue;
    missing.push_back(k);
    requests.push_back(json::serialize(json::object{
        {"template", "Users"},
        {"op", "create"},
        {"data", {{"email", BenchEmail(k)}, {"name", "Bench " + std::to_string(k)}}}}));
  }
  CreateAll(**client, "rel.write", "Users/create", requests,
            [&](size_t i, const std::string& reply) {
              const int k = missing[i];
              const std::string what = "Users/create of " + BenchEmail(k);
              const json::array data = ReplyData(what, reply);
              if (data.empty() || !data[0].is_object() || !data[0].as_object().contains("id"))
                Die(what + " returned no row: " + reply);
              ids[static_cast<size_t>(k - 1)] = data[0].at("id").to_number<int64_t>();
            });
  std::printf("rel rows: %zu present, %zu created\n", rows - missing.size(), missing.size());
  return ids;
}

// A Sessions/create request: the template's fields in their declared order, which is the order
// BEDS stores them in, so the rec-create baseline can store the data object as it comes.
std::string SessionCreate(const std::string& token, int64_t user_id) {
  return json::serialize(json::object{{"template", "Sessions"},
                                      {"op", "create"},
                                      {"data",
                                       {{"token", token},
                                        {"user_id", user_id},
                                        {"created", kSessionCreated},
                                        {"agent", "bench"}}}});
}

std::string SessionFetch(const std::string& token) {
  return json::serialize(json::object{{"template", "Sessions"}, {"op", "fetch"}, {"id", token}});
}

// rec-fetch reads the documents bench-fetch-1..<rows>.
constexpr std::string_view kFetchTokenPrefix = "bench-fetch-";
std::string FetchToken(int k) { return std::string(kFetchTokenPrefix) + std::to_string(k); }

// rec-create's tokens. Both sides insert into the same table and a token sent twice would be
// answered CONFLICT, so every request of the run (either side, every round, the warmups) takes the
// next number, after a prefix from the clock that no earlier run on the same file had.
class SessionTokens {
 public:
  SessionTokens()
      : prefix_("bench-" +
                std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count()) +
                "-") {}
  std::string Next() { return prefix_ + std::to_string(++last_); }
  uint64_t last() const { return last_; }

 private:
  const std::string prefix_;
  uint64_t last_ = 0;
};

// The Sessions documents FetchToken(1..rows): those already there are looked up, the rest created
// through BEDS (so a second run against the same file reads the same documents).
void EnsureSessions(const beds::config::AmqpSettings& amqp, int rows) {
  auto client = beds::client::Client::Connect(amqp);
  if (!client) Die("client: " + client.error().message);
  std::vector<bool> present(static_cast<size_t>(rows), false);
  for (int first = 1; first <= rows; first += kSessionsLimit) {
    json::array tokens;
    for (int k = first; k <= std::min(rows, first + kSessionsLimit - 1); ++k)
      tokens.push_back(json::string(FetchToken(k)));
    const json::object request{{"template", "Sessions"},
                               {"op", "fetch"},
                               {"where", {{"token", {{"in", std::move(tokens)}}}}},
                               {"limit", kSessionsLimit}};
    auto r = (*client)->Call("rec.read", json::serialize(request), 10s);
    if (!r) Die("Sessions/fetch of the bench documents: " + r.error().message);
    for (const json::value& doc : ReplyData("Sessions/fetch of the bench documents", r->body)) {
      const std::string token(doc.at("token").as_string());
      int k = 0;
      if (token.starts_with(kFetchTokenPrefix))
        std::from_chars(token.data() + kFetchTokenPrefix.size(), token.data() + token.size(), k);
      if (k >= 1 && k <= rows) present[static_cast<size_t>(k - 1)] = true;
    }
  }
  std::vector<int> missing;  // request i creates document missing[i]
  std::vector<std::string> requests;
  for (int k = 1; k <= rows; ++k) {
    if (present[static_cast<size_t>(k - 1)]) continue;
    missing.push_back(k);
    requests.push_back(SessionCreate(FetchToken(k), k));
  }
  CreateAll(**client, "rec.write", "Sessions/create", requests,
            [&](size_t i, const std::string& reply) {
              const std::string token = FetchToken(missing[i]);
              const json::array data = ReplyData("Sessions/create of " + token, reply);
              const json::object* doc = data.empty() ? nullptr : data[0].if_object();
              const json::value* got = doc ? doc->if_contains("token") : nullptr;
              if (!got || !got->is_string() || got->get_string() != token)
                Die("Sessions/create of " + token + " did not return it: " + reply);
            });
  std::printf("rec documents: %zu present, %zu created\n", rows - missing.size(), missing.size());
}

// One request on each side before measuring: both must answer ok with `field` = `want` in the
// first row or document, or the figures would compare error paths.
void CheckReply(const beds::config::AmqpSettings& amqp, const char* what, const std::string& key,
                const std::string& body, const char* field, const std::string& want) {
  auto client = beds::client::Client::Connect(amqp);
  if (!client) Die("client: " + client.error().message);
  auto r = (*client)->Call(key, body, 10s);
  if (!r) Die(std::string(what) + " check: " + r.error().message);
  const json::array data = ReplyData(std::string(what) + " check", r->body);
  const json::object* row = data.empty() ? nullptr : data[0].if_object();
  const json::value* got = row ? row->if_contains(field) : nullptr;
  if (!got || !got->is_string() || got->get_string() != want)
    Die(std::string(what) + " check did not return " + field + " " + want + ": " + r->body);
}

// A point read of each of `rows` rows (created through BEDS if missing): Users/call get (the
// usr_get procedure), or with `fetch` Users/fetch by key (the usr_v_users view).
std::vector<std::string> UsrGetBodies(const beds::config::AmqpSettings& amqp, int rows,
                                      bool fetch = false) {
  std::vector<std::string> bodies;
  const std::string head = fetch ? R"({"template":"Users","op":"fetch","id":")"
                                 : R"({"template":"Users","op":"call","call":"get","id":")";
  for (const int64_t id : EnsureRows(amqp, rows)) {
    bodies.push_back(head + std::to_string(id) + R"("})");
  }
  return bodies;
}

// --mode fanout: the latency of issuing `children` child requests at once (a Users/call get each,
// as children of one parent event, through Client::FanOut) against issuing one, one fan-out at a
// time (W=1). The same fan-outs go to the raw baseline too (rabbitmq-c consumers running CALL
// usr_get, as in --mode rel): how much of the fan-out's cost is the machine's, not BEDS's.
// Rounds alternate the four. Prints p50/p99 of each and the fan-out/single ratios.
int FanOutMode(const beds::config::AmqpSettings& amqp, const beds::config::DatabaseSettings& db,
               const beds::config::BrokerSettings& pool, const std::vector<std::string>& bodies,
               int children, int warmup_s, int duration_s, int rounds) {
  auto client = beds::client::Client::Connect(amqp);
  if (!client) Die("client: " + client.error().message);
  auto parent_reply = (*client)->Call("sys.read", R"({"template":"sys","op":"ping"})", 10s);
  if (!parent_reply) Die("parent ping: " + parent_reply.error().message);
  auto parent = beds::client::LineageOfReply(parent_reply->body);
  if (!parent) Die("parent ping: " + parent.error().message);
  if (mysql_library_init(0, nullptr, nullptr) != 0) Die("mysql_library_init failed");
  EchoServer raw(amqp, kRelEchoKey, kRelEchoQueue, pool.instances, pool.prefetch,
                 [db] { return std::make_unique<UsrGetResponder>(db); });
  size_t next = 0;
  auto measure = [&](const char* key, int n) {
    const auto warmup = std::chrono::seconds(warmup_s);
    const auto duration = std::chrono::seconds(duration_s);
    std::vector<double> us;
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - start < warmup + duration) {
      std::vector<beds::client::Client::Request> requests;
      for (int i = 0; i < n; ++i) {
        auto body = beds::client::AsChildOf(*parent, bodies[next++ % bodies.size()]);
        if (!body) Die(body.error().message);
        requests.push_back({key, std::move(*body), {}});
      }
      const auto t0 = std::chrono::steady_clock::now();
      auto replies = (*client)->FanOut(std::move(requests), 10s);
      if (!replies) Die("fan-out: " + replies.error().message);
      const auto t1 = std::chrono::steady_clock::now();
      if (t0 - start >= warmup)
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    }
    std::sort(us.begin(), us.end());
    Figures f;
    f.replies = us.size();
    if (!us.empty()) {
      f.p50_us = us[us.size() / 2];
      f.p99_us = us[std::min(us.size() - 1, us.size() * 99 / 100)];
      f.p999_us = us[std::min(us.size() - 1, us.size() * 999 / 1000)];
      f.throughput = static_cast<double>(us.size()) / duration.count();
    }
    return f;
  };
  std::printf(
      "beds-bench: mode fanout (%d child Users/call get requests at once vs 1, W=1, %d s x %d "
      "rounds; baseline = %d echo consumers each with its own MariaDB connection and prepared "
      "CALL, prefetch %d)\n",
      children, duration_s, rounds, pool.instances, pool.prefetch);
  struct Series {
    const char* side;
    const char* key;
    int n;
    std::vector<Figures> figures;
  };
  Series series[] = {{"baseline", kRelEchoKey, 1, {}},
                     {"baseline", kRelEchoKey, children, {}},
                     {"beds", "rel.read", 1, {}},
                     {"beds", "rel.read", children, {}}};
  for (int r = 1; r <= rounds; ++r) {
    for (auto& s : series) {
      s.figures.push_back(measure(s.key, s.n));
      std::printf("%-8s %2d child%s round %d: p50 %7.0f us  p99 %7.0f us  (%lu fan-outs)\n", s.side,
                  s.n, s.n == 1 ? " " : "ren", r, s.figures.back().p50_us, s.figures.back().p99_us,
                  static_cast<unsigned long>(s.figures.back().replies));
      std::fflush(stdout);
    }
  }
  auto p50 = [](const Series& s) {
    std::vector<double> x;
    for (const auto& f : s.figures) x.push_back(f.p50_us);
    std::sort(x.begin(), x.end());
    return x[x.size() / 2];
  };
  const double raw_one = p50(series[0]), raw_many = p50(series[1]);
  const double beds_one = p50(series[2]), beds_many = p50(series[3]);
  std::printf("\nmedian   baseline 1 child: p50 %7.0f us; %d children: p50 %7.0f us\n", raw_one,
              children, raw_many);
  std::printf("median   beds     1 child: p50 %7.0f us; %d children: p50 %7.0f us\n", beds_one,
              children, beds_many);
  std::printf("ratio    fan-out/single p50: baseline %.2f, beds %.2f; beds/baseline fan-out %.2f\n",
              raw_one > 0 ? raw_many / raw_one : 0.0, beds_one > 0 ? beds_many / beds_one : 0.0,
              raw_many > 0 ? beds_many / raw_many : 0.0);
  return 0;
}

void Print(const char* what, int round, const Figures& f) {
  std::printf(
      "%-8s round %d: %9.0f req/s  p50 %7.0f us  p99 %7.0f us  p99.9 %7.0f us  (%lu replies, %lu "
      "errors)",
      what, round, f.throughput, f.p50_us, f.p99_us, f.p999_us,
      static_cast<unsigned long>(f.replies), static_cast<unsigned long>(f.errors));
  if (f.node_cpu_us >= 0) std::printf("  node CPU %.1f us/req", f.node_cpu_us);
  std::printf("\n");
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
  m.node_cpu_us = mid(&Figures::node_cpu_us);
  for (const auto& f : v) m.errors += f.errors;
  return m;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "beds-bench: sys/ping, a REL point read, or a REC create or fetch by key through beds beside "
      "a bare rabbitmq-c baseline"};
  std::string config_dir = "config";
  std::string env;
  std::string broker;
  std::string mode = "ping";
  int inflight = 64;
  int body_bytes = 256;
  int rows = 1000;
  int duration_s = 10;
  int warmup_s = 2;
  int rounds = 3;
  app.add_option("--config-dir", config_dir,
                 "the config the running node uses (broker, pool size, databases)");
  app.add_option("--env", env, "environment name");
  app.add_option("--broker", broker,
                 "the node's broker pool that serves the mode's routing key (default: the one "
                 "bound to it)");
  app.add_option("--mode", mode,
                 "ping: sys/ping vs an echo; rel: Users/call get vs CALL usr_get; rec-create: "
                 "Sessions/create vs the same SQLite insert; rec-fetch: Sessions/fetch by key vs "
                 "the same SQLite select")
      ->check(CLI::IsMember({"ping", "rel", "rel-create", "rec-create", "rec-fetch",
                             "calgon-submit", "calgon-poll", "fanout"}));
  int children = 24;
  app.add_option("--children", children, "fanout: child requests issued at once")
      ->check(CLI::Range(1, 10000));
  app.add_option("--inflight,-w", inflight, "requests kept in flight (W)");
  app.add_option("--body-bytes", body_bytes, "request body size (ping mode)");
  app.add_option("--rows", rows,
                 "rows or documents read in turn (rel, rec-fetch); created if missing")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--duration-s", duration_s, "measured seconds per round");
  app.add_option("--warmup-s", warmup_s, "unmeasured seconds before each round");
  app.add_option("--rounds", rounds, "alternating baseline/BEDS rounds");
  int node_pid = 0;
  bool best_shape = false;
  app.add_flag("--best-shape", best_shape,
               "ping, rel and rec modes: also run the raw baseline with 1 and 2 consumers (each "
               "with prefetch >= W) and compare with the faster");
  app.add_option("--node-pid", node_pid,
                 "the beds node's pid: each round also reports its CPU time per reply (/proc)");
  int batch = 0;
  bool atomic = false;
  app.add_option("--batch", batch,
                 "rel and rel-create: BEDS is sent batch envelopes of this many requests "
                 "(docs/protocol.md \"Batches\"); figures are then also given per operation")
      ->check(CLI::Range(1, 10000));
  app.add_flag("--atomic", atomic, "with --batch in rel-create: atomic batches");
  std::string read = "call";
  app.add_option("--read", read,
                 "rel: BEDS's point read is Users/call get (the usr_get procedure, as the "
                 "baseline runs) or Users/fetch by key (the usr_v_users view; a batch's "
                 "consecutive ones run as one query)")
      ->check(CLI::IsMember({"call", "fetch"}));
  CLI11_PARSE(app, argc, argv);
  if (read != "call" && mode != "rel") {
    std::cerr << "beds-bench: --read is for the rel mode\n";
    return 2;
  }
  if (batch > 0 && mode != "rel" && mode != "rel-create") {
    std::cerr << "beds-bench: --batch is for the rel and rel-create modes\n";
    return 2;
  }
  if (atomic && (batch == 0 || mode != "rel-create")) {
    std::cerr << "beds-bench: --atomic needs --batch and --mode rel-create\n";
    return 2;
  }

  auto config = beds::config::Load(
      beds::config::FromEnvironment(config_dir, env.empty() ? std::nullopt : std::optional(env)));
  if (!config) {
    std::cerr << "beds-bench: config invalid:\n" << config.error().message << "\n";
    return 2;
  }

  // What BEDS is sent and where, and what stands in for it on the baseline side.
  std::string beds_key = "sys.read";
  std::string echo_key = kEchoKey;
  std::string echo_queue = kEchoQueue;
  if (mode == "rel" || mode == "fanout") {
    beds_key = "rel.read";
    echo_key = kRelEchoKey;
    echo_queue = kRelEchoQueue;
  } else if (mode == "rel-create") {
    beds_key = "rel.write";
  } else if (mode == "calgon-submit") {
    beds_key = "rec.read";
  } else if (mode == "calgon-poll") {
    beds_key = "sys.read";
  } else if (mode.starts_with("rec-")) {
    beds_key = mode == "rec-create" ? "rec.write" : "rec.read";
    echo_key = kRecEchoKey;
    echo_queue = kRecEchoQueue;
  }
  // The baseline gets as many consumers and the same prefetch as the pool that serves beds_key.
  const auto pool =
      std::find_if(config->brokers.begin(), config->brokers.end(), [&](const auto& b) {
        return broker.empty() ? std::ranges::find(b.bindings, beds_key) != b.bindings.end()
                              : b.name == broker;
      });
  if (pool == config->brokers.end()) {
    std::cerr << "beds-bench: no "
              << (broker.empty() ? "broker pool bound to " + beds_key : "[brokers." + broker + "]")
              << " in the config\n";
    return 2;
  }
  // The rel and fanout modes' database: the Users template's.
  const auto db = config->databases.find("main");
  if ((mode == "rel" || mode == "fanout") && db == config->databases.end()) {
    std::cerr << "beds-bench: " << mode << " mode needs [databases.main] (the Users template's)\n";
    return 2;
  }
  if (mode == "fanout") {
    return FanOutMode(config->amqp, db->second, *pool, UsrGetBodies(config->amqp, rows), children,
                      warmup_s, duration_s, rounds);
  }

  BodySource next_body;
  ResponderFactory make_responder = [] { return std::make_unique<EchoResponder>(); };
  // One request on each side before measuring (not for ping), given the side's name and routing
  // key: both must answer with the row or document asked for.
  std::function<void(const std::string& what, const std::string& key)> check;
  SessionTokens tokens;                        // rec-create's
  beds::client::SendOptions baseline_options;  // rel-create's baseline: writes without identity
  // Modes whose baseline is BEDS itself on another request: its key and bodies.
  std::string baseline_key;
  BodySource baseline_body;
  if (mode == "ping") {
    // Both sides get the same body size: a ping envelope padded with data.pad.
    std::string body = R"({"template":"sys","op":"ping","data":{"pad":""}})";
    if (static_cast<int>(body.size()) < body_bytes)
      body.insert(body.size() - 3, body_bytes - body.size(), 'x');
    const size_t size = body.size();
    next_body = Cycle({std::move(body)});
    std::printf(
        "beds-bench: mode ping (sys/ping), W=%d, %zu-byte bodies, %d s x %d rounds; baseline = %d "
        "echo consumers, prefetch %d\n",
        inflight, size, duration_s, rounds, pool->instances, pool->prefetch);
  } else if (mode == "rel-create") {
    // Both sides are BEDS, on the same node: the baseline's creates carry no identity (no key,
    // no message id), so they take the plain at-least-once path; BEDS's carry a key (as the C++
    // client gives every write) and are applied exactly once.
    next_body = [run = beds::NewGuid().substr(20), n = uint64_t{0}]() mutable {
      return R"({"template":"Users","op":"create","data":{"email":"c)" + std::to_string(++n) + "." +
             run + R"(@bench.example","name":"bench"}})";
    };
    baseline_options.add_idempotency_key = false;
    baseline_options.add_message_id = false;
    std::printf(
        "beds-bench: mode rel-create (Users/create -> CALL usr_create(?, ?, ?)), W=%d, %d s x %d "
        "rounds; baseline = the same creates on the same node without an exactly-once identity "
        "(at least once), beds = with one (an idempotency key: looked up, applied and recorded "
        "in one transaction)\n",
        inflight, duration_s, rounds);
  } else if (mode == "calgon-submit" || mode == "calgon-poll") {
    // Both sides are BEDS. calgon-submit: an async Sessions fetch (answered with a ticket; the
    // calgon pool runs the jobs meanwhile) against a synchronous sys/ping. calgon-poll: calgon/poll
    // of finished tickets against a Sessions fetch by key (a REC read of one document).
    EnsureSessions(config->amqp, rows);
    std::vector<std::string> fetches;
    for (int k = 1; k <= rows; ++k) fetches.push_back(SessionFetch(FetchToken(k)));
    if (mode == "calgon-submit") {
      std::vector<std::string> submits;
      for (const std::string& f : fetches) {
        json::object o = json::parse(f).as_object();
        o["async"] = true;
        submits.push_back(json::serialize(o));
      }
      next_body = Cycle(std::move(submits));
      baseline_key = "sys.read";
      baseline_body = Cycle({R"({"template":"sys","op":"ping"})"});
    } else {
      auto client = beds::client::Client::Connect(config->amqp);
      if (!client) Die("client: " + client.error().message);
      std::vector<std::string> polls;
      for (int k = 1; k <= std::min(rows, 100); ++k) {
        json::object o = json::parse(fetches[static_cast<size_t>(k - 1)]).as_object();
        o["async"] = true;
        auto submitted = (*client)->Call("rec.read", json::serialize(o), 10s);
        if (!submitted) Die("submit: " + submitted.error().message);
        const json::value reply = json::parse(submitted->body);
        if (!reply.as_object().contains("ticket")) Die("submit: " + submitted->body);
        const std::string ticket(reply.at("ticket").as_string());
        const std::string wait = R"({"template":"calgon","op":"wait","id":")" + ticket +
                                 R"(","data":{"timeout_ms":10000}})";
        auto waited = (*client)->Call("sys.read", wait, 15s);
        if (!waited || waited->body.find(R"("status":"done")") == std::string::npos)
          Die("a bench job did not finish: " + (waited ? waited->body : waited.error().message));
        polls.push_back(R"({"template":"calgon","op":"poll","id":")" + ticket + R"("})");
      }
      next_body = Cycle(std::move(polls));
      baseline_key = "rec.read";
      baseline_body = Cycle(std::move(fetches));
    }
    std::printf("beds-bench: mode %s, W=%d, %d s x %d rounds; baseline = %s on the same node\n",
                mode.c_str(), inflight, duration_s, rounds,
                mode == "calgon-submit"
                    ? "sys/ping (synchronous), beds = async Sessions/fetch submits"
                    : "Sessions/fetch by key, beds = calgon/poll of finished tickets");
  } else if (mode == "rel") {
    std::vector<std::string> bodies = UsrGetBodies(config->amqp, rows, read == "fetch");
    check = [&, first = bodies[0]](const std::string& what, const std::string& key) {
      CheckReply(config->amqp, what.c_str(), key, first, "email", BenchEmail(1));
    };
    next_body = Cycle(std::move(bodies));
    // Consumer threads open their connections concurrently; the library must be set up first.
    if (mysql_library_init(0, nullptr, nullptr) != 0) Die("mysql_library_init failed");
    make_responder = [settings = db->second] {
      return std::make_unique<UsrGetResponder>(settings);
    };
    std::printf(
        "beds-bench: mode rel (Users/%s -> CALL usr_get(?)), W=%d, %d rows, %d s x %d "
        "rounds; baseline = %d echo consumers each with its own MariaDB connection and prepared "
        "CALL, prefetch %d\n",
        read == "fetch" ? "fetch by key" : "call get", inflight, rows, duration_s, rounds,
        pool->instances, pool->prefetch);
  } else {
    const auto db = config->databases.find("docs");
    if (db == config->databases.end() || db->second.engine != beds::config::Engine::kSqlite) {
      std::cerr << "beds-bench: " << mode
                << " mode needs [databases.docs] (the Sessions template's) on engine sqlite\n";
      return 2;
    }
    const beds::config::DatabaseSettings settings = db->second;
    std::string what;
    if (mode == "rec-create") {
      what = "Sessions/create -> BEGIN IMMEDIATE; INSERT; COMMIT), W=" + std::to_string(inflight);
      next_body = [&tokens] {
        const std::string token = tokens.Next();
        return SessionCreate(token, static_cast<int64_t>(tokens.last()));
      };
      check = [&](const std::string& what, const std::string& key) {
        const std::string token = tokens.Next();
        CheckReply(config->amqp, what.c_str(), key,
                   SessionCreate(token, static_cast<int64_t>(tokens.last())), "token", token);
      };
      make_responder = [settings] { return std::make_unique<SessionCreateResponder>(settings); };
    } else {
      what = "Sessions/fetch by key -> SELECT doc WHERE id = ?), W=" + std::to_string(inflight) +
             ", " + std::to_string(rows) + " documents";
      EnsureSessions(config->amqp, rows);
      std::vector<std::string> bodies;
      for (int k = 1; k <= rows; ++k) bodies.push_back(SessionFetch(FetchToken(k)));
      next_body = Cycle(std::move(bodies));
      check = [&](const std::string& what, const std::string& key) {
        CheckReply(config->amqp, what.c_str(), key, SessionFetch(FetchToken(1)), "token",
                   FetchToken(1));
      };
      make_responder = [settings] { return std::make_unique<SessionFetchResponder>(settings); };
    }
    std::printf(
        "beds-bench: mode %s (%s, %d s x %d rounds; baseline = %d echo consumers each with its "
        "own SQLite connection to %s (WAL, synchronous=%s) and prepared statements, prefetch %d\n",
        mode.c_str(), what.c_str(), duration_s, rounds, pool->instances, settings.path.c_str(),
        settings.synchronous.c_str(), pool->prefetch);
  }
  // With --batch, BEDS gets the same requests N at a time in batch envelopes.
  // A reference, not a copy: body sources keep state (rel-create's running e-mail number), and
  // both sides must draw from the one sequence.
  BodySource beds_body = [&next_body] { return next_body(); };
  if (batch > 0) {
    beds_body = [&next_body, batch, atomic] {
      std::string body = atomic ? R"({"atomic":true,"batch":[)" : R"({"batch":[)";
      for (int i = 0; i < batch; ++i) {
        if (i) body += ',';
        body += next_body();
      }
      return body + "]}";
    };
    std::printf("beds-bench: BEDS is sent %sbatches of %d: each reply answers %d operations\n",
                atomic ? "atomic " : "", batch, batch);
  }
  std::fflush(stdout);

  std::vector<Figures> base, beds, best;
  {
    // rel-create's and calgon's baselines are BEDS itself: no echo server.
    const bool echoes = mode != "rel-create" && baseline_key.empty();
    if (mode == "rel-create") {
      echo_key = beds_key;
    } else if (!baseline_key.empty()) {
      echo_key = baseline_key;
    }
    // An echo server runs only while its own rounds do: every shape consumes the same queue.
    auto serve = [&](int consumers, int prefetch) {
      return echoes ? std::make_unique<EchoServer>(config->amqp, echo_key, echo_queue, consumers,
                                                   prefetch, make_responder)
                    : nullptr;
    };
    if (check) {
      auto echo = serve(pool->instances, pool->prefetch);
      check("baseline", echo_key);
      check("beds", beds_key);
    }
    for (int r = 1; r <= rounds; ++r) {
      {
        auto echo = serve(pool->instances, pool->prefetch);
        base.push_back(Load(config->amqp, echo_key, baseline_body ? baseline_body : next_body,
                            inflight, std::chrono::seconds(warmup_s),
                            std::chrono::seconds(duration_s), baseline_options, node_pid));
      }
      Print("baseline", r, base.back());
      if (best_shape && echoes) {
        // The raw library at the shape that makes it fastest on this machine: one or two
        // consumers, each allowed every request in flight.
        Figures top;
        for (int consumers : {1, 2}) {
          auto echo = serve(consumers, std::max(pool->prefetch, inflight));
          Figures f =
              Load(config->amqp, echo_key, next_body, inflight, std::chrono::seconds(warmup_s),
                   std::chrono::seconds(duration_s), {}, node_pid);
          Print(consumers == 1 ? "raw x1" : "raw x2", r, f);
          if (f.throughput > top.throughput) top = f;
        }
        best.push_back(top);
      }
      beds.push_back(Load(config->amqp, beds_key, beds_body, inflight,
                          std::chrono::seconds(warmup_s), std::chrono::seconds(duration_s), {},
                          node_pid));
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
  if (!best.empty()) {
    const Figures top = Median(best);
    std::printf("median   best-shape raw (1 or 2 consumers): %9.0f req/s  p50 %7.0f us\n",
                top.throughput, top.p50_us);
    std::printf("ratio    beds/best-shape raw throughput %.3f; p50 difference %+.0f us\n",
                top.throughput > 0 ? m.throughput / top.throughput : 0.0, m.p50_us - top.p50_us);
  }
  if (batch > 0) {
    std::printf("median   beds operations (batches of %d): %9.0f op/s; node CPU %.1f us per op\n",
                batch, m.throughput * batch, m.node_cpu_us >= 0 ? m.node_cpu_us / batch : -1.0);
    std::printf("ratio    beds operations/baseline throughput %.3f\n",
                b.throughput > 0 ? m.throughput * batch / b.throughput : 0.0);
  }
  if (m.node_cpu_us >= 0) {
    // On an echo baseline the node idles: its figure there is the node's own background cost.
    std::printf("node CPU per reply (median): baseline rounds %.1f us, beds rounds %.1f us\n",
                b.node_cpu_us, m.node_cpu_us);
  }
  if (b.errors > 0) {
    std::printf("the baseline answered %lu requests with an error\n",
                static_cast<unsigned long>(b.errors));
  }
  if (m.errors > 0) {
    std::printf("beds answered %lu requests with an error\n", static_cast<unsigned long>(m.errors));
    return 1;
  }
  return 0;
}
