#include "adapters/sqlite/sqlite.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "adapters/docstore/docstore.hpp"
#include "core/lineage.hpp"
#include "core/once.hpp"

namespace beds::adapters::sqlite {
namespace json = boost::json;
namespace fs = std::filesystem;
using docstore::DocFilter;
using docstore::DocQuery;
using docstore::Document;

namespace {

constexpr size_t kStatementCacheSize = 128;

// A TTL index to sweep: documents whose `field` is at least `expire_after_s` in the past go.
struct Expiry {
  std::string collection;
  std::string field;
  int64_t expire_after_s = 0;
};

std::string Table(const Template& t) { return "\"" + t.collection + "\""; }

class SqliteEngine;

// A write waiting for its group commit (Store::Commit).
struct PendingWrite {
  SqliteEngine* engine = nullptr;  // whose statements the body runs (on the leader's connection)
  const std::function<Result<void>()>* body = nullptr;
  int64_t deadline_ms = 0;
  Result<void> result = Ok();  // set by the group's leader
  bool done = false;           // guarded by the store's group mutex
};

// The SQL expression for a field. Field names are validated identifiers, so they can be spelled
// into the JSON path; the same text is used in indexes and queries so the indexes match.
std::string Expr(const FieldSpec& f) {
  if (f.key) return "id";
  std::string e = "json_extract(doc,'$." + f.name + "')";
  // DECIMAL is held as a string; compare it as a number (approximately, as REAL).
  if (f.type == FieldType::kDecimal) e = "CAST(" + e + " AS REAL)";
  return e;
}

const char* OpSql(Filter::Op op) {
  switch (op) {
    case Filter::Op::kGt:
      return " > ";
    case Filter::Op::kGte:
      return " >= ";
    case Filter::Op::kLt:
      return " < ";
    case Filter::Op::kLte:
      return " <= ";
    case Filter::Op::kEq:
    case Filter::Op::kIn:
      break;
  }
  return " = ";
}

}  // namespace

class Store {
 public:
  explicit Store(config::DatabaseSettings s) : settings_(std::move(s)) {
    if (settings_.sweep_interval_s > 0) {
      sweeper_ = std::jthread([this](std::stop_token stop) { SweepLoop(stop); });
    }
  }
  ~Store() {
    if (sweeper_.joinable()) {
      sweeper_.request_stop();
      cv_.notify_all();
    }
  }

  const config::DatabaseSettings& settings() const { return settings_; }

  // Names the database and its file in every message about it.
  std::string Describe() const {
    return "sqlite database '" + settings_.name + "' (" + settings_.path + ")";
  }

  // SQLite has one writer at a time per file, and with synchronous = full each commit waits for
  // the disk (an fsync: about 0.2 ms here), so writes committed one by one cap a store at a few
  // thousand a second however many workers share it. This process's writes are committed in
  // groups instead: a writer that finds no group running leads one, taking every write queued
  // meanwhile into one transaction on its own connection, each write in a savepoint of its own
  // (a failed write is rolled back alone), and one commit makes them all durable. The others wait
  // here for their result. SQLite's own busy handler is left to arbitrate between processes.
  // `lead` runs a batch and sets each write's result; Commit returns once `w` has one.
  template <typename Lead>
  void Commit(PendingWrite& w, Lead&& lead) {
    std::unique_lock lock(group_mutex_);
    group_queue_.push_back(&w);
    while (!w.done) {
      if (group_leading_) {
        group_cv_.wait(lock);
        continue;
      }
      group_leading_ = true;
      std::vector<PendingWrite*> batch;
      batch.swap(group_queue_);
      lock.unlock();
      try {
        lead(batch);
      } catch (...) {
        // Never leave the store without a leader: every write of this batch fails.
        for (PendingWrite* p : batch) {
          p->result = Fail(Code::kInternal, "the write failed in the document store");
        }
      }
      lock.lock();
      for (PendingWrite* p : batch) p->done = true;
      group_leading_ = false;
      group_cv_.notify_all();
    }
  }

  void AddExpiry(Expiry e) {
    std::lock_guard lock(mutex_);
    for (const auto& x : expiries_) {
      if (x.collection == e.collection && x.field == e.field) return;
    }
    expiries_.push_back(std::move(e));
  }

  // Opens a connection configured the way every connection to the file must be.
  Result<sqlite3*> Connect() const;

 private:
  void SweepLoop(std::stop_token stop);
  void SweepOnce(sqlite3* db);

  config::DatabaseSettings settings_;
  std::mutex mutex_;
  std::condition_variable_any cv_;
  std::mutex group_mutex_;
  std::condition_variable group_cv_;
  std::vector<PendingWrite*> group_queue_;
  bool group_leading_ = false;
  std::vector<Expiry> expiries_;
  std::jthread sweeper_;  // last: stopped and joined before the members it reads go
};

namespace {

Result<void> Exec(sqlite3* db, const std::string& sql) {
  char* msg = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &msg) != SQLITE_OK) {
    std::string m = msg ? msg : sqlite3_errmsg(db);
    sqlite3_free(msg);
    return Fail(Code::kUnavailable, m);
  }
  return Ok();
}

}  // namespace

Result<sqlite3*> Store::Connect() const {
  const std::string& path = settings_.path;
  if (path.empty()) return Fail(Code::kUnavailable, Describe() + ": no path is configured");
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty() && !fs::exists(parent, ec)) fs::create_directories(parent, ec);
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  auto fail = [&](const std::string& why) -> Result<sqlite3*> {
    sqlite3_close_v2(db);
    return Fail(Code::kUnavailable, Describe() + ": " + why);
  };
  if (rc != SQLITE_OK) return fail(db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  sqlite3_extended_result_codes(db, 1);
  if (sqlite3_db_readonly(db, "main") == 1) return fail("the file is read-only");
  sqlite3_busy_timeout(db, static_cast<int>(settings_.query_timeout_ms));
  // journal_mode reads the file header: a file that is not a database fails here.
  if (auto r = Exec(db, "PRAGMA journal_mode=WAL"); !r) return fail(r.error().message);
  if (auto r = Exec(db, "PRAGMA synchronous=" + settings_.synchronous); !r) {
    return fail(r.error().message);
  }
  return db;
}

void Store::SweepLoop(std::stop_token stop) {
  sqlite3* db = nullptr;
  while (!stop.stop_requested()) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, stop, std::chrono::seconds(settings_.sweep_interval_s),
                   [] { return false; });
    }
    if (stop.stop_requested()) break;
    if (!db) {
      auto c = Connect();
      if (!c) {
        spdlog::warn("TTL sweep: {}", c.error().message);
        continue;
      }
      db = *c;
    }
    SweepOnce(db);
  }
  sqlite3_close_v2(db);
}

void Store::SweepOnce(sqlite3* db) {
  std::vector<Expiry> expiries;
  {
    std::lock_guard lock(mutex_);
    expiries = expiries_;
  }
  for (const auto& e : expiries) {
    const std::string cutoff = IsoTimeMs(NowUnixMs() - e.expire_after_s * 1000);
    const std::string sql =
        "DELETE FROM \"" + e.collection + "\" WHERE json_extract(doc,'$." + e.field + "') <= ?";
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      spdlog::warn("TTL sweep of {}: {}", e.collection, sqlite3_errmsg(db));
      continue;
    }
    sqlite3_bind_text(st, 1, cutoff.c_str(), -1, SQLITE_TRANSIENT);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
      spdlog::warn("TTL sweep of {}: {}", e.collection, sqlite3_errmsg(db));
    } else if (const int n = sqlite3_changes(db); n > 0) {
      spdlog::debug("TTL sweep removed {} expired documents from {}", n, e.collection);
    }
  }
}

namespace {

// One worker's connection and its prepared statements.
class SqliteEngine final : public docstore::Engine {
 public:
  explicit SqliteEngine(std::shared_ptr<Store> store) : store_(std::move(store)) {}
  ~SqliteEngine() override { Close(); }

  Result<void> Ensure(const Template& t) override {
    if (auto r = Open(); !r) return r;
    const FieldSpec* key = t.Key();
    // The exactly-once records of every collection in this file (core/once.hpp).
    std::string sql =
        "CREATE TABLE IF NOT EXISTS beds_idempotency (identity BLOB PRIMARY KEY, digest BLOB NOT "
        "NULL, reply TEXT NOT NULL, expires_at INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS beds_idempotency_expires ON beds_idempotency (expires_at);";
    sql += "CREATE TABLE IF NOT EXISTS " + Table(t) + " (id " +
           (key->type == FieldType::kInt ? "INTEGER PRIMARY KEY" : "TEXT PRIMARY KEY") +
           ", doc TEXT NOT NULL)" + (key->type == FieldType::kInt ? "" : " WITHOUT ROWID") + ";";
    for (const auto& index : t.indexes) {
      std::string cols;
      for (const auto& name : index.fields) {
        const bool desc = name.starts_with('-');
        const FieldSpec* f = t.Field(desc ? name.substr(1) : name);
        cols += (cols.empty() ? "" : ", ") + Expr(*f) + (desc ? " DESC" : "");
      }
      sql += "CREATE INDEX IF NOT EXISTS \"" + t.collection + "__" + index.name + "\" ON " +
             Table(t) + " (" + cols + ");";
      if (index.expire_after_s) {
        store_->AddExpiry({t.collection, index.fields[0], *index.expire_after_s});
      }
    }
    if (auto r = Exec(db_, sql); !r) {
      return Fail(Code::kUnavailable,
                  store_->Describe() + ": collection " + t.collection + ": " + r.error().message);
    }
    return Ok();
  }

  Result<void> Insert(const Template& t, const json::value& key, const Document& doc,
                      int64_t deadline_ms) override {
    const std::string text = json::serialize(doc);
    return Write(deadline_ms, [&]() -> Result<void> {
      sqlite3_stmt* st = Prepare("INSERT INTO " + Table(t) + " (id, doc) VALUES (?, ?)");
      if (!st) return Failure("insert");
      BindJson(st, 1, key);
      sqlite3_bind_text(st, 2, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
      const int rc = sqlite3_step(st);
      sqlite3_reset(st);
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return Fail(Code::kConflict,
                    "a " + t.name + " document with this " + t.Key()->name + " exists");
      }
      if (rc != SQLITE_DONE) return Failure("insert", rc);
      return Ok();
    });
  }

  Result<int64_t> InsertMany(const Template& t, const std::vector<Keyed>& docs,
                             int64_t deadline_ms) override {
    int64_t inserted = 0;
    auto r = Write(deadline_ms, [&]() -> Result<void> {
      sqlite3_stmt* st = Prepare("INSERT OR IGNORE INTO " + Table(t) + " (id, doc) VALUES (?, ?)");
      if (!st) return Failure("insert");
      for (const Keyed& d : docs) {
        const std::string text = d.text.empty() ? json::serialize(d.doc) : d.text;
        BindJson(st, 1, d.key);
        sqlite3_bind_text(st, 2, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
        const int rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) return Failure("insert", rc);
        inserted += sqlite3_changes(db_);
      }
      return Ok();
    });
    if (!r) return std::unexpected(r.error());
    return inserted;
  }

  Result<std::vector<Document>> Find(const Template& t, const DocQuery& q) override {
    if (auto r = Open(); !r) return std::unexpected(r.error());
    std::vector<const json::value*> binds;
    std::string sql = "SELECT doc FROM " + Table(t) + Where(q, binds);
    std::string order;
    for (const auto& [f, desc] : q.order) {
      order += (order.empty() ? " ORDER BY " : ", ") + Expr(*f) + (desc ? " DESC" : "");
    }
    sql += order + " LIMIT ? OFFSET ?";
    sqlite3_stmt* st = Prepare(sql);
    if (!st) return std::unexpected(Failure("fetch").error());
    Arm(q.deadline_ms);
    int i = 1;
    for (const auto* v : binds) BindJson(st, i++, *v);
    sqlite3_bind_int64(st, i++, q.limit > 0 ? q.limit : -1);
    sqlite3_bind_int64(st, i++, q.offset);
    std::vector<Document> docs;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      const int n = sqlite3_column_bytes(st, 0);
      std::error_code ec;
      json::value v = json::parse(json::string_view(text ? text : "", static_cast<size_t>(n)), ec);
      if (ec || !v.is_object()) {
        sqlite3_reset(st);
        return std::unexpected(
            Error{Code::kInternal, "a stored " + t.name + " document is not a JSON object"});
      }
      docs.push_back(std::move(v.get_object()));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return std::unexpected(Failure("fetch", rc, q.deadline_ms).error());
    return docs;
  }

  Result<int64_t> Count(const Template& t, const DocQuery& q) override {
    if (auto r = Open(); !r) return std::unexpected(r.error());
    std::vector<const json::value*> binds;
    sqlite3_stmt* st = Prepare("SELECT count(*) FROM " + Table(t) + Where(q, binds));
    if (!st) return std::unexpected(Failure("count").error());
    Arm(q.deadline_ms);
    int i = 1;
    for (const auto* v : binds) BindJson(st, i++, *v);
    const int rc = sqlite3_step(st);
    const int64_t n = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    if (rc != SQLITE_ROW) return std::unexpected(Failure("count", rc, q.deadline_ms).error());
    return n;
  }

  Result<Document> Update(const Template& t, const json::value& key, const Document& set,
                          int64_t deadline_ms) override {
    std::string sql = "UPDATE " + Table(t) + " SET doc = json_set(doc";
    std::vector<std::string> values;
    for (const auto& [name, v] : set) {
      sql += ", '$." + std::string(name) + "', json(?)";
      values.push_back(json::serialize(v));
    }
    sql += ") WHERE id = ? RETURNING doc";
    Document after;
    auto r = Write(deadline_ms, [&]() -> Result<void> {
      sqlite3_stmt* st = Prepare(sql);
      if (!st) return Failure("update");
      int i = 1;
      for (const auto& v : values) {
        sqlite3_bind_text(st, i++, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
      }
      BindJson(st, i, key);
      int rc = sqlite3_step(st);
      if (rc == SQLITE_ROW) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        std::error_code ec;
        json::value v = json::parse(text ? text : "", ec);
        if (!ec && v.is_object()) after = std::move(v.get_object());
        rc = sqlite3_step(st);
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) return Failure("update", rc);
        return Ok();
      }
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) return Failure("update", rc);
      return Fail(Code::kNotFound, "no " + t.name + " document has this " + t.Key()->name);
    });
    if (!r) return std::unexpected(r.error());
    return after;
  }

  bool AppliesOnce() const override { return true; }

  // Runs `apply` with Write() joining the transaction already open.
  Result<OpResult> Nested(const std::function<Result<OpResult>()>& apply) {
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }
    } reset{nested_};
    nested_ = true;
    return apply();
  }

  Result<OpResult> ApplyOnce(const WriteOnce& once, int64_t deadline_ms,
                             const std::function<Result<OpResult>()>& apply) override {
    std::optional<Result<OpResult>> answer;
    auto r = Write(deadline_ms, [&]() -> Result<void> {
      sqlite3_stmt* find = Prepare("SELECT digest, reply FROM beds_idempotency WHERE identity = ?");
      if (!find) return Failure("exactly-once lookup");
      sqlite3_bind_blob(find, 1, once.identity.data(), static_cast<int>(once.identity.size()),
                        SQLITE_STATIC);
      int rc = sqlite3_step(find);
      if (rc == SQLITE_ROW) {
        const auto* digest = static_cast<const char*>(sqlite3_column_blob(find, 0));
        const std::string_view stored(digest ? digest : "",
                                      static_cast<size_t>(sqlite3_column_bytes(find, 0)));
        const auto* reply = reinterpret_cast<const char*>(sqlite3_column_text(find, 1));
        if (stored != once.digest) {
          answer = std::unexpected(KeyReusedError());
        } else {
          answer = DecodeRecordedReply(reply ? reply : "");
        }
        sqlite3_reset(find);
        return Ok();  // nothing was written: the commit is empty
      }
      sqlite3_reset(find);
      if (rc != SQLITE_DONE) return Failure("exactly-once lookup", rc, deadline_ms);
      Result<OpResult> applied = Nested(apply);
      if (!applied) return std::unexpected(applied.error());  // rolled back
      const std::string reply = EncodeRecordedReply(*applied);
      sqlite3_stmt* record = Prepare(
          "INSERT INTO beds_idempotency (identity, digest, reply, expires_at) VALUES (?, ?, ?, ?)");
      if (!record) return Failure("exactly-once record");
      sqlite3_bind_blob(record, 1, once.identity.data(), static_cast<int>(once.identity.size()),
                        SQLITE_STATIC);
      sqlite3_bind_blob(record, 2, once.digest.data(), static_cast<int>(once.digest.size()),
                        SQLITE_STATIC);
      sqlite3_bind_text(record, 3, reply.data(), static_cast<int>(reply.size()), SQLITE_STATIC);
      sqlite3_bind_int64(record, 4, NowUnixMs() + once.ttl_s * 1000);
      rc = sqlite3_step(record);
      sqlite3_reset(record);
      if (rc != SQLITE_DONE) return Failure("exactly-once record", rc, deadline_ms);
      answer = std::move(applied);
      return Ok();
    });
    if (!r) return std::unexpected(r.error());
    return std::move(*answer);
  }

  Result<int64_t> SweepOnce(int64_t batch) override {
    int64_t swept = 0;
    auto r = Write(0, [&]() -> Result<void> {
      sqlite3_stmt* st = Prepare(
          "DELETE FROM beds_idempotency WHERE identity IN (SELECT identity FROM beds_idempotency "
          "WHERE expires_at < ? ORDER BY expires_at LIMIT ?)");
      if (!st) return Failure("exactly-once sweep");
      sqlite3_bind_int64(st, 1, NowUnixMs());
      sqlite3_bind_int64(st, 2, batch);
      const int rc = sqlite3_step(st);
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) return Failure("exactly-once sweep", rc);
      swept = sqlite3_changes(db_);
      return Ok();
    });
    if (!r) return std::unexpected(r.error());
    return swept;
  }

  Result<void> Remove(const Template& t, const json::value& key, int64_t deadline_ms) override {
    return Write(deadline_ms, [&]() -> Result<void> {
      sqlite3_stmt* st = Prepare("DELETE FROM " + Table(t) + " WHERE id = ?");
      if (!st) return Failure("delete");
      BindJson(st, 1, key);
      const int rc = sqlite3_step(st);
      sqlite3_reset(st);
      if (rc != SQLITE_DONE) return Failure("delete", rc);
      if (sqlite3_changes(db_) == 0) {
        return Fail(Code::kNotFound, "no " + t.name + " document has this " + t.Key()->name);
      }
      return Ok();
    });
  }

 private:
  Result<void> Open() {
    if (db_) return Ok();
    auto db = store_->Connect();
    if (!db) return std::unexpected(db.error());
    db_ = *db;
    sqlite3_progress_handler(db_, 1000, &SqliteEngine::Progress, this);
    return Ok();
  }

  void Close() {
    for (auto& [sql, st] : statements_) sqlite3_finalize(st);
    statements_.clear();
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }

  // Sets how long the next statement may run and wait for the write lock: the request's
  // deadline or query_timeout_ms, whichever comes first.
  void Arm(int64_t deadline_ms) {
    const int64_t now = NowUnixMs();
    int64_t stop = now + store_->settings().query_timeout_ms;
    if (deadline_ms > 0) stop = std::min(stop, deadline_ms);
    stop_at_ms_ = stop;
    const int wait = static_cast<int>(std::max<int64_t>(stop - now, 1));
    if (wait != busy_ms_) {
      sqlite3_busy_timeout(db_, wait);
      busy_ms_ = wait;
    }
  }

  static int Progress(void* self) {
    return NowUnixMs() > static_cast<SqliteEngine*>(self)->stop_at_ms_ ? 1 : 0;
  }

  // A write, committed with whatever others this process's workers have queued meanwhile (see
  // Store::Commit). BEGIN IMMEDIATE takes the write lock first: it waits (busy timeout) instead of
  // failing later with a stale snapshot, which SQLite would not wait out.
  Result<void> Write(int64_t deadline_ms, const std::function<Result<void>()>& body) {
    if (nested_) return body();  // inside ApplyOnce's transaction
    if (auto r = Open(); !r) return r;
    PendingWrite w{this, &body, deadline_ms};
    store_->Commit(w, [this](std::vector<PendingWrite*>& batch) { LeadGroup(batch); });
    return std::move(w.result);
  }

  // One group: BEGIN IMMEDIATE; each write between SAVEPOINT and RELEASE (ROLLBACK TO when it
  // failed); COMMIT. A write alone in its group needs no savepoint: the transaction is its own.
  void LeadGroup(std::vector<PendingWrite*>& batch) {
    Arm(0);
    if (auto begun = Step("BEGIN IMMEDIATE", "write", 0); !begun) {
      for (PendingWrite* w : batch) w->result = begun;
      return;
    }
    const bool alone = batch.size() == 1;
    // The transaction is gone when the connection closed (a file in trouble) or SQLite rolled it
    // back whole (an I/O error, a full disk, out of memory, an interrupted statement): every write
    // of the group up to here is lost with it, and none after it may run in a transaction of its
    // own by accident.
    std::optional<Error> lost;
    auto lose = [&](size_t upto, const Result<void>& why) {
      lost = why ? Error{Code::kUnavailable, store_->Describe() +
                                                 ": the write's transaction was lost; nothing "
                                                 "was applied, try again"}
                 : why.error();
      for (size_t i = 0; i <= upto; ++i) batch[i]->result = std::unexpected(*lost);
    };
    auto gone = [&] { return !db_ || sqlite3_get_autocommit(db_); };
    for (size_t i = 0; i < batch.size(); ++i) {
      PendingWrite* w = batch[i];
      if (lost) {
        w->result = std::unexpected(*lost);
        continue;
      }
      if (w->deadline_ms > 0 && NowUnixMs() >= w->deadline_ms) {
        // Not run at all: an interrupted statement would roll the whole group back.
        w->result = Fail(Code::kTimeout, "the request's deadline passed before the write ran");
        continue;
      }
      Arm(w->deadline_ms);
      if (!alone) {
        if (auto saved = Step("SAVEPOINT w", "write", w->deadline_ms); !saved || gone()) {
          if (gone()) {
            lose(i, saved);
          } else {
            w->result = saved;
          }
          continue;
        }
      }
      w->result = RunFor(*w);
      if (gone()) {
        lose(i, w->result);
        continue;
      }
      if (alone) break;
      Arm(0);
      // A failed write's partial effect must not reach the commit: when it cannot be rolled back
      // to its savepoint, the whole group is.
      Result<void> back = w->result ? Ok() : Step("ROLLBACK TO w", "write", 0);
      if (back) back = Step("RELEASE w", "write", 0);
      if (!back || gone()) lose(i, back);
    }
    if (!db_) return;
    if (lost || (alone && !batch[0]->result)) return RollbackOrClose();
    Arm(0);
    sqlite3_stmt* commit = Prepare("COMMIT");
    const int rc = commit ? sqlite3_step(commit) : kPrepareFailed;
    if (commit) sqlite3_reset(commit);
    if (rc != SQLITE_DONE) {
      // A commit that failed on I/O may still have reached the disk: say so, unless it was
      // refused before it started (busy), when nothing was applied.
      const bool busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
      const Result<void> committed = Failure("commit", rc);
      for (PendingWrite* w : batch) {
        if (!w->result) continue;
        w->result =
            busy
                ? committed
                : std::unexpected(OutcomeUnknownError(
                      store_->Describe(), "its commit failed (" + committed.error().message + ")"));
      }
      RollbackOrClose();
    }
  }

  // Ends a transaction that must not commit. A connection that cannot roll back would keep the
  // write lock: it is closed instead (SQLite rolls back on close).
  void RollbackOrClose() {
    if (!db_ || sqlite3_get_autocommit(db_)) return;
    if (!Exec(db_, "ROLLBACK") || !sqlite3_get_autocommit(db_)) Close();
  }

  // Runs another worker's write on this (the leader's) connection: its engine borrows this
  // connection and its prepared statements while its thread waits in Store::Commit. An exception
  // from the write (out of memory, say) becomes its error, so the engines are swapped back and
  // the group goes on.
  Result<void> RunFor(PendingWrite& w) {
    struct Borrow {
      SqliteEngine* self;
      SqliteEngine* other;
      Borrow(SqliteEngine* s, SqliteEngine* o) : self(s), other(o) {
        if (other != self) self->Swap(*other);
      }
      ~Borrow() {
        if (other != self) self->Swap(*other);
      }
    } borrow(this, w.engine);
    try {
      return (*w.body)();
    } catch (const std::exception& e) {
      spdlog::error("{}: a write failed: {}", store_->Describe(), e.what());
      return Fail(Code::kInternal, "the write failed in the document store");
    }
  }

  void Swap(SqliteEngine& other) {
    std::swap(db_, other.db_);
    std::swap(statements_, other.statements_);
    std::swap(busy_ms_, other.busy_ms_);
  }

  // One statement that returns no rows, prepared once.
  Result<void> Step(const std::string& sql, const std::string& what, int64_t deadline_ms) {
    sqlite3_stmt* st = Prepare(sql);
    if (!st) return Failure(what);
    const int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) return Failure(what, rc, deadline_ms);
    return Ok();
  }

  std::string Where(const DocQuery& q, std::vector<const json::value*>& binds) {
    std::string sql;
    for (const DocFilter& f : q.filters) {
      sql += sql.empty() ? " WHERE " : " AND ";
      sql += Expr(*f.field);
      // A decimal is compared as a number on both sides (Expr casts the stored string).
      const char* placeholder =
          f.field->type == FieldType::kDecimal && !f.is_key ? "CAST(? AS REAL)" : "?";
      if (f.op == Filter::Op::kIn) {
        // Pad `in` to a power of two (repeating the last value) so a few statements serve all.
        size_t n = 1;
        while (n < f.values.size()) n *= 2;
        sql += " IN (";
        for (size_t i = 0; i < n; ++i) {
          sql += i ? "," : "";
          sql += placeholder;
          binds.push_back(&f.values[std::min(i, f.values.size() - 1)]);
        }
        sql += ")";
      } else {
        sql += OpSql(f.op);
        sql += placeholder;
        binds.push_back(&f.values[0]);
      }
    }
    return sql;
  }

  static void BindJson(sqlite3_stmt* st, int i, const json::value& v) {
    if (v.is_int64()) {
      sqlite3_bind_int64(st, i, v.get_int64());
    } else if (v.is_uint64()) {
      sqlite3_bind_int64(st, i, static_cast<int64_t>(v.get_uint64()));
    } else if (v.is_double()) {
      sqlite3_bind_double(st, i, v.get_double());
    } else if (v.is_bool()) {
      sqlite3_bind_int(st, i, v.get_bool() ? 1 : 0);
    } else if (v.is_string()) {
      const auto& s = v.get_string();
      sqlite3_bind_text(st, i, s.data(), static_cast<int>(s.size()), SQLITE_STATIC);
    } else {
      sqlite3_bind_null(st, i);
    }
  }

  sqlite3_stmt* Prepare(const std::string& sql) {
    auto it = statements_.find(sql);
    if (it != statements_.end()) return it->second;
    if (statements_.size() >= kStatementCacheSize) {
      // Rare (many distinct update field sets): start the cache afresh.
      for (auto& [s, st] : statements_) sqlite3_finalize(st);
      statements_.clear();
    }
    sqlite3_stmt* st = nullptr;
    if (!db_) {
      last_prepare_rc_ = SQLITE_MISUSE;
      last_prepare_error_ = "the connection is closed";
      return nullptr;
    }
    last_prepare_rc_ = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                          SQLITE_PREPARE_PERSISTENT, &st, nullptr);
    if (last_prepare_rc_ != SQLITE_OK) {
      last_prepare_error_ = sqlite3_errmsg(db_);
      return nullptr;
    }
    statements_.emplace(sql, st);
    return st;
  }

  // What went wrong, in words a client may see (no SQL). The file's own trouble names the file.
  // rc = kPrepareFailed: the statement did not prepare (its message was kept by Prepare).
  static constexpr int kPrepareFailed = -1;
  Result<void> Failure(const std::string& what, int rc = kPrepareFailed, int64_t deadline_ms = 0) {
    std::string prepare_error;
    if (rc == kPrepareFailed) {
      rc = last_prepare_rc_;
      prepare_error = std::exchange(last_prepare_error_, {});
    }
    const int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
      return std::unexpected(
          Error{Code::kUnavailable, "the document store is busy with other writers; try again"});
    }
    if (primary == SQLITE_INTERRUPT) {
      if (deadline_ms > 0 && NowUnixMs() >= deadline_ms) {
        return Fail(Code::kTimeout, "the request's deadline passed during the " + what);
      }
      return Fail(Code::kUnavailable, "the " + what + " ran longer than query_timeout_ms");
    }
    if (!db_) return Fail(Code::kUnavailable, store_->Describe() + ": the connection is closed");
    const std::string msg = prepare_error.empty() ? sqlite3_errmsg(db_) : prepare_error;
    if (primary == SQLITE_ERROR && msg.starts_with("no such table")) {
      return Fail(Code::kUnavailable, "the collection is missing from " + store_->Describe() +
                                          " (it is created at IPL)");
    }
    spdlog::warn("{} {}: {} ({})", store_->Describe(), what, msg, rc);
    if (primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB || primary == SQLITE_IOERR ||
        primary == SQLITE_FULL || primary == SQLITE_READONLY || primary == SQLITE_CANTOPEN) {
      // The file itself is in trouble: start from a fresh connection next time.
      Close();
      return Fail(Code::kUnavailable, store_->Describe() + ": " + msg);
    }
    return Fail(Code::kInternal, "the " + what + " failed in the document store");
  }

  std::shared_ptr<Store> store_;
  sqlite3* db_ = nullptr;
  std::map<std::string, sqlite3_stmt*, std::less<>> statements_;
  std::string last_prepare_error_;
  int last_prepare_rc_ = SQLITE_OK;
  int64_t stop_at_ms_ = 0;
  int busy_ms_ = -1;
  bool nested_ = false;  // a write running inside ApplyOnce's transaction
};

}  // namespace

std::shared_ptr<Store> OpenStore(const config::DatabaseSettings& settings) {
  return std::make_shared<Store>(settings);
}

std::unique_ptr<NamasteCore> MakeCore(const std::shared_ptr<Store>& store) {
  return docstore::MakeCore(std::make_unique<SqliteEngine>(store),
                            docstore::Limits{store->settings().max_document_bytes});
}

std::string LibraryVersion() { return sqlite3_libversion(); }

}  // namespace beds::adapters::sqlite
