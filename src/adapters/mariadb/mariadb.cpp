#include "adapters/mariadb/mariadb.hpp"

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>

#include "core/backoff.hpp"
#include "core/lineage.hpp"
#include "core/once.hpp"
#include "core/validate.hpp"

namespace beds::adapters::mariadb {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// Per connection. The server's max_prepared_stmt_count (16382 by default) is shared by every
// connection of every node, so each keeps only its most recently used shapes.
constexpr size_t kMaxCachedStatements = 64;
constexpr size_t kInitialColumnBuffer = 256;
constexpr auto kSecondaryCooldown = 5s;
constexpr int kDeadlockRetries = 2;

// A database error, with what the adapter needs to decide: was the connection lost (and did the
// statement possibly run)?
struct DbError {
  unsigned errnum = 0;
  std::string sqlstate;
  std::string text;
};

bool IsConnectionError(unsigned e) {
  switch (e) {
    case CR_SERVER_GONE_ERROR:
    case CR_SERVER_LOST:
    case CR_CONN_HOST_ERROR:
    case CR_CONNECTION_ERROR:
    case CR_COMMANDS_OUT_OF_SYNC:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case ER_QUERY_INTERRUPTED:
    case 4031:  // ER_CLIENT_INTERACTION_TIMEOUT: the server closed an idle connection
      return true;
    default:
      return false;
  }
}

std::string Clip(const std::string& s, size_t n = 200) { return s.size() > n ? s.substr(0, n) : s; }

// How long one operation keeps trying to reach the server: until reconnect_wait_ms has passed or
// the request's deadline, whichever comes first, waiting 50 ms, 100 ms, … 1 s between connection
// attempts.
class Patience {
 public:
  Patience(int64_t reconnect_wait_ms, int64_t deadline_ms)
      : give_up_(NowUnixMs() + reconnect_wait_ms),
        deadline_first_(deadline_ms > 0 && deadline_ms < give_up_) {
    if (deadline_first_) give_up_ = deadline_ms;
  }
  bool Expired() const { return NowUnixMs() > give_up_; }
  // After a failed connection attempt: waits the next step and says to try again, or says to give
  // up when that wait would run past the end.
  bool WaitToRetry() {
    if (NowUnixMs() + backoff_.Peek().count() > give_up_) return false;
    std::this_thread::sleep_for(backoff_.Next());
    return true;
  }
  // The answer once it has run out: TIMEOUT when the deadline came first, else UNAVAILABLE with
  // `advice` (retryable as `retry` says), the server's last words logged.
  Error GaveUp(const std::string& what, const std::string& database,
               const std::optional<DbError>& last, const std::string& advice,
               std::optional<bool> retry = std::nullopt) const {
    if (deadline_first_) {
      return Error{Code::kTimeout,
                   what + ": the request's deadline passed while the database was unavailable"};
    }
    spdlog::warn("{}: database {} unavailable: {}", what, database, last ? last->text : "?");
    return Error{Code::kUnavailable, what + ": the database is not reachable; " + advice, retry};
  }

 private:
  int64_t give_up_;
  bool deadline_first_;
  Backoff backoff_{50ms, 1s};
};

// Server errors that pass with time: out of connections or resources, a full disk or lock
// table, a server shutting down, read-only during a switchover, a cluster node not ready yet.
bool IsPassingServerError(unsigned e) {
  switch (e) {
    case ER_CON_COUNT_ERROR:
    case ER_TOO_MANY_USER_CONNECTIONS:
    case ER_OUT_OF_RESOURCES:
    case ER_OUTOFMEMORY:
    case ER_DISK_FULL:
    case ER_RECORD_FILE_FULL:
    case ER_LOCK_TABLE_FULL:
    case ER_SERVER_SHUTDOWN:
    case ER_CONNECTION_KILLED:
    case ER_QUERY_INTERRUPTED:
    case ER_OPTION_PREVENTS_STATEMENT:  // 1290: --read-only
    case ER_READ_ONLY_MODE:             // 1836
    case ER_UNKNOWN_COM_ERROR:          // 1047: a Galera node not ready (WSREP)
    case ER_ERROR_DURING_COMMIT:        // 1180
    case ER_TOO_MANY_CONCURRENT_TRXS:   // 1637
      return true;
    default:
      return false;
  }
}

// docs/protocol.md codes for what the server said. Messages never carry SQL text; a DBA's SIGNAL
// message is theirs to word and is passed on.
Error MapError(const DbError& e, const std::string& what) {
  const bool signalled = e.errnum == ER_SIGNAL_EXCEPTION || e.errnum == ER_SIGNAL_NOT_FOUND ||
                         e.errnum == ER_SIGNAL_WARN;
  if (signalled || e.sqlstate == "45000") {
    if (e.sqlstate == "02000") return {Code::kNotFound, Clip(e.text)};
    if (e.sqlstate.starts_with("23")) return {Code::kConflict, Clip(e.text)};
    return {Code::kValidation, Clip(e.text)};
  }
  if (IsPassingServerError(e.errnum)) {
    return {Code::kUnavailable,
            what + ": the database is overloaded, read-only or going away; try again"};
  }
  switch (e.errnum) {
    case ER_DUP_ENTRY:
    case ER_DUP_ENTRY_WITH_KEY_NAME:
      return {Code::kConflict, what + ": a record with the same unique value already exists"};
    case ER_ROW_IS_REFERENCED_2:
    case ER_ROW_IS_REFERENCED:
      return {Code::kConflict, what + ": other records still refer to this one"};
    case ER_NO_REFERENCED_ROW_2:
    case ER_NO_REFERENCED_ROW:
      return {Code::kConflict, what + ": it refers to a record that does not exist"};
    case ER_BAD_NULL_ERROR:
      return {Code::kValidation, what + ": a required value is missing"};
    case ER_DATA_TOO_LONG:
      return {Code::kValidation, what + ": a value is too long for its column"};
    case ER_WARN_DATA_OUT_OF_RANGE:
      return {Code::kValidation, what + ": a number is out of range for its column"};
    case ER_TRUNCATED_WRONG_VALUE_FOR_FIELD:
    case ER_TRUNCATED_WRONG_VALUE:
    case ER_WRONG_VALUE:
      return {Code::kValidation, what + ": a value has the wrong form for its column"};
    case ER_CONSTRAINT_FAILED:
      return {Code::kValidation, what + ": a value breaks a check constraint"};
    case ER_CANT_AGGREGATE_2COLLATIONS:
    case ER_CANT_AGGREGATE_3COLLATIONS:
    case ER_CANT_AGGREGATE_NCOLLATIONS:
      // A filter value with characters the column's character set cannot hold (a latin1 column
      // compared with an emoji): no row could ever match, and resending changes nothing.
      return {Code::kValidation,
              what + ": a value has characters its column's character set cannot hold"};
    case ER_LOCK_DEADLOCK:
    case ER_LOCK_WAIT_TIMEOUT:
      return {Code::kUnavailable, what + ": the database was busy; try again"};
    case ER_MAX_PREPARED_STMT_COUNT_REACHED:
      return {Code::kUnavailable, what + ": the database is out of prepared-statement slots"};
    case CR_NEW_STMT_METADATA:
    case ER_NEED_REPREPARE:
      return {Code::kUnavailable, what + ": its database object changed while it ran; try again"};
    case ER_SP_DOES_NOT_EXIST:
    case ER_SP_WRONG_NO_OF_ARGS:
    case ER_NO_SUCH_TABLE:
    case ER_VIEW_INVALID:
    case ER_BAD_FIELD_ERROR:
      return {Code::kUnavailable,
              what + " is unavailable: the database object it is bound to is missing or changed"};
    case ER_STATEMENT_TIMEOUT:
    case CR_SERVER_LOST:
      return {Code::kUnavailable, what + ": the database did not answer in time"};
    default:
      break;
  }
  if (e.sqlstate.starts_with("23"))
    return {Code::kConflict, what + ": the database refused the change"};
  if (e.sqlstate.starts_with("22"))
    return {Code::kValidation, what + ": a value was refused by the database"};
  // The server answered, and would answer the same request the same way: resending it cannot
  // help, so the client is told not to (a client honouring `retryable` would resend forever).
  // Errors of the client library (2000–2999, and MariaDB's own 5000–5999, network reads and
  // writes among them) may be transient and keep the default.
  const bool client_library = (e.errnum >= CR_MIN_ERROR && e.errnum <= CR_MAX_ERROR) ||
                              (e.errnum >= 5000 && e.errnum <= 5999);
  if (!client_library) {
    return Error{Code::kInternal, what + ": database error " + std::to_string(e.errnum), false};
  }
  return {Code::kInternal, what + ": database error " + std::to_string(e.errnum)};
}

std::string Quote(std::string_view identifier) { return "`" + std::string(identifier) + "`"; }

// ISO 8601 for a DATE/DATETIME/TIMESTAMP/TIME column. Datetimes are UTC (the session time zone is
// +00:00, and BEDS stores what clients send as UTC): they get a Z.
std::string FormatTime(const MYSQL_TIME& t, enum_field_types type, unsigned decimals) {
  char buf[64];
  if (type == MYSQL_TYPE_DATE || type == MYSQL_TYPE_NEWDATE) {
    std::snprintf(buf, sizeof buf, "%04u-%02u-%02u", t.year, t.month, t.day);
    return buf;
  }
  int n;
  if (type == MYSQL_TYPE_TIME) {
    n = std::snprintf(buf, sizeof buf, "%s%02u:%02u:%02u", t.neg ? "-" : "", t.hour, t.minute,
                      t.second);
  } else {
    n = std::snprintf(buf, sizeof buf, "%04u-%02u-%02uT%02u:%02u:%02u", t.year, t.month, t.day,
                      t.hour, t.minute, t.second);
  }
  std::string out(buf, static_cast<size_t>(n));
  if (decimals > 0 && decimals <= 6) {
    std::snprintf(buf, sizeof buf, ".%06lu", static_cast<unsigned long>(t.second_part));
    out.append(buf, 1 + decimals);
  }
  if (type != MYSQL_TYPE_TIME) out += 'Z';
  return out;
}

bool IsIntegerType(enum_field_types t) {
  return t == MYSQL_TYPE_TINY || t == MYSQL_TYPE_SHORT || t == MYSQL_TYPE_INT24 ||
         t == MYSQL_TYPE_LONG || t == MYSQL_TYPE_LONGLONG || t == MYSQL_TYPE_YEAR;
}

bool IsTimeType(enum_field_types t) {
  return t == MYSQL_TYPE_DATE || t == MYSQL_TYPE_NEWDATE || t == MYSQL_TYPE_DATETIME ||
         t == MYSQL_TYPE_TIMESTAMP || t == MYSQL_TYPE_TIME || t == MYSQL_TYPE_DATETIME2 ||
         t == MYSQL_TYPE_TIMESTAMP2 || t == MYSQL_TYPE_TIME2;
}

// One result column: its bind and the storage the bind points at.
struct Column {
  std::string name;
  enum_field_types type = MYSQL_TYPE_STRING;
  bool is_unsigned = false;
  bool binary = false;  // binary charset: bytes
  bool json = false;    // extended metadata says JSON
  unsigned decimals = 0;
  const FieldSpec* field = nullptr;  // the template's declaration of this column, if any
  long long i = 0;
  double f = 0;
  MYSQL_TIME t{};
  std::string text;
  unsigned long length = 0;
  my_bool is_null = 0;
  my_bool error = 0;
};

json::value ColumnValue(Column& c) {
  if (c.is_null) return nullptr;
  const FieldType declared = c.field ? c.field->type : FieldType::kString;
  if (IsIntegerType(c.type)) {
    if (c.field && declared == FieldType::kBool) return c.i != 0;
    if (c.is_unsigned && static_cast<unsigned long long>(c.i) > INT64_MAX)
      return static_cast<uint64_t>(c.i);
    return static_cast<int64_t>(c.i);
  }
  if (c.type == MYSQL_TYPE_FLOAT || c.type == MYSQL_TYPE_DOUBLE) return c.f;
  if (IsTimeType(c.type)) return json::string(FormatTime(c.t, c.type, c.decimals));
  std::string_view text(c.text.data(), std::min<size_t>(c.length, c.text.size()));
  if ((c.field && declared == FieldType::kJson) || (!c.field && c.json)) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (!ec) return v;
  }
  if ((c.field && declared == FieldType::kBytes) || (!c.field && c.binary)) {
    return json::string(Base64Encode(text));
  }
  if (c.field && declared == FieldType::kBool && (text == "0" || text == "1")) return text == "1";
  return json::string(text);  // strings, DECIMAL digits (exact), ENUM, SET, BIT as text
}

DbError ConnectionError(MYSQL* m) {
  return DbError{mysql_errno(m), mysql_sqlstate(m), mysql_error(m)};
}

// Some failures (an error in the status packet that ends a CALL's results, such as an
// interrupted statement) are recorded on the connection rather than the statement.
DbError StmtError(MYSQL_STMT* stmt) {
  if (mysql_stmt_errno(stmt) == 0 && stmt->mysql && mysql_errno(stmt->mysql) != 0) {
    return ConnectionError(stmt->mysql);
  }
  return DbError{mysql_stmt_errno(stmt), mysql_stmt_sqlstate(stmt), mysql_stmt_error(stmt)};
}

class Connection {
 public:
  Connection(const config::DatabaseSettings& s, std::string host, int port, std::string label)
      : settings_(s), host_(std::move(host)), port_(port), label_(std::move(label)) {}
  ~Connection() { Close(); }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  bool connected() const { return mysql_ != nullptr; }
  const std::string& label() const { return label_; }

  std::optional<DbError> Connect() {
    Close();
    // The library's global set-up is not safe to race; workers connect from their own threads.
    static std::once_flag library;
    std::call_once(library, [] { mysql_library_init(0, nullptr, nullptr); });
    MYSQL* m = mysql_init(nullptr);
    if (!m) return DbError{CR_OUT_OF_MEMORY, "HY000", "out of memory"};
    const unsigned connect_timeout = 2;
    // The server abandons a statement after query_timeout_ms (max_statement_time below) and says
    // so, keeping the connection; the socket timeout is only the backstop for a server that hangs.
    const unsigned io_timeout = static_cast<unsigned>(settings_.query_timeout_ms / 1000 + 5);
    const my_bool no = 0;
    mysql_optionsv(m, MYSQL_OPT_CONNECT_TIMEOUT, &connect_timeout);
    mysql_optionsv(m, MYSQL_OPT_READ_TIMEOUT, &io_timeout);
    mysql_optionsv(m, MYSQL_OPT_WRITE_TIMEOUT, &io_timeout);
    mysql_optionsv(m, MYSQL_OPT_RECONNECT, &no);  // we reconnect, and clear our statements then
    mysql_optionsv(m, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    // UTC: TIMESTAMP columns read and write in UTC, like everything BEDS exchanges.
    char init[96];
    std::snprintf(init, sizeof init, "SET time_zone = '+00:00', max_statement_time = %.3f",
                  static_cast<double>(settings_.query_timeout_ms) / 1000.0);
    mysql_optionsv(m, MYSQL_INIT_COMMAND, init);
    const bool use_socket = !settings_.socket.empty() && label_ == "master";
    if (!mysql_real_connect(m, use_socket ? nullptr : host_.c_str(), settings_.user.c_str(),
                            settings_.pass.c_str(), settings_.database.c_str(),
                            static_cast<unsigned>(port_),
                            use_socket ? settings_.socket.c_str() : nullptr,
                            CLIENT_MULTI_RESULTS | CLIENT_FOUND_ROWS)) {
      DbError e = ConnectionError(m);
      mysql_close(m);
      return e;
    }
    mysql_ = m;
    return std::nullopt;
  }

  void Close() {
    Clear();
    if (mysql_) mysql_close(mysql_);
    mysql_ = nullptr;
  }

  // Closes every cached statement (they hold server-side slots, limited server-wide).
  void Clear() {
    for (auto& [sql, entry] : statements_) mysql_stmt_close(entry.stmt);
    statements_.clear();
    recent_.clear();
  }

  // True when the server has closed the connection (or sent an unsolicited error, such as an
  // idle timeout) since it was last used: nothing should be readable between requests. Checked
  // before every statement so that a write is never sent on a connection that is already dead.
  bool LooksClosed() const {
    const auto fd = mysql_get_socket(mysql_);
    if (fd < 0) return true;  // the library already dropped the socket after a network error
    pollfd p{fd, POLLIN | POLLRDHUP, 0};
    return ::poll(&p, 1, 0) != 0;
  }

  // The prepared statement for `sql`, prepared on first use and kept while it is among the
  // kMaxCachedStatements most recently used on this connection.
  std::expected<MYSQL_STMT*, DbError> Prepare(const std::string& sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) {
      recent_.splice(recent_.begin(), recent_, it->second.recent);
      return it->second.stmt;
    }
    if (statements_.size() >= kMaxCachedStatements) Forget(recent_.back());
    MYSQL_STMT* stmt = mysql_stmt_init(mysql_);
    if (!stmt) return std::unexpected(ConnectionError(mysql_));
    if (mysql_stmt_prepare(stmt, sql.data(), sql.size()) != 0) {
      DbError e = StmtError(stmt);
      mysql_stmt_close(stmt);
      return std::unexpected(e);
    }
    recent_.push_front(sql);
    statements_.emplace(sql, Cached{stmt, recent_.begin()});
    return stmt;
  }

  void Forget(const std::string& sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) {
      mysql_stmt_close(it->second.stmt);
      recent_.erase(it->second.recent);
      statements_.erase(it);
    }
  }

  MYSQL* handle() const { return mysql_; }

 private:
  const config::DatabaseSettings& settings_;
  std::string host_;
  int port_;
  std::string label_;
  MYSQL* mysql_ = nullptr;
  struct Cached {
    MYSQL_STMT* stmt;
    std::list<std::string>::iterator recent;
  };
  std::unordered_map<std::string, Cached> statements_;
  std::list<std::string> recent_;  // most recently used first
};

// What one statement produced.
struct Produced {
  std::vector<json::array> sets;    // result sets, in order
  std::optional<json::object> out;  // the OUT parameters' row
  int64_t affected = 0;
};

// Binds `params` (which must outlive the execution) and runs the statement, draining every
// result set: rows become objects keyed by column name, typed by the template where it declares
// the column.
std::expected<Produced, DbError> Execute(Connection& conn, MYSQL_STMT* stmt,
                                         std::vector<Value>& params, size_t out_count,
                                         const Template& t,
                                         const std::vector<std::string>& out_names) {
  const size_t n = params.size() + out_count;
  std::vector<MYSQL_BIND> binds(n);
  std::vector<unsigned long> lengths(n);
  for (size_t i = 0; i < params.size(); ++i) {
    Value& v = params[i];
    MYSQL_BIND& b = binds[i];
    if (v.null) {
      b.buffer_type = MYSQL_TYPE_NULL;
      continue;
    }
    switch (v.type) {
      case FieldType::kInt:
      case FieldType::kBool:
        b.buffer_type = MYSQL_TYPE_LONGLONG;
        b.buffer = &v.i;
        break;
      case FieldType::kFloat:
        b.buffer_type = MYSQL_TYPE_DOUBLE;
        b.buffer = &v.f;
        break;
      case FieldType::kBytes:
        b.buffer_type = MYSQL_TYPE_BLOB;
        b.buffer = v.text.data();
        lengths[i] = v.text.size();
        b.buffer_length = v.text.size();
        b.length = &lengths[i];
        break;
      default:  // string, decimal digits, ISO date text, JSON text: the server converts exactly
        b.buffer_type = MYSQL_TYPE_STRING;
        b.buffer = v.text.data();
        lengths[i] = v.text.size();
        b.buffer_length = v.text.size();
        b.length = &lengths[i];
        break;
    }
  }
  for (size_t i = params.size(); i < n; ++i) binds[i].buffer_type = MYSQL_TYPE_NULL;  // OUT
  if (n > 0 && mysql_stmt_bind_param(stmt, binds.data()) != 0)
    return std::unexpected(StmtError(stmt));
  if (mysql_stmt_execute(stmt) != 0) return std::unexpected(StmtError(stmt));

  Produced produced;
  while (true) {
    const unsigned fields = mysql_stmt_field_count(stmt);
    if (fields > 0) {
      const bool is_out = (conn.handle()->server_status & SERVER_PS_OUT_PARAMS) != 0;
      MYSQL_RES* meta = mysql_stmt_result_metadata(stmt);
      if (!meta) return std::unexpected(StmtError(stmt));
      MYSQL_FIELD* f = mysql_fetch_fields(meta);
      std::vector<Column> cols(fields);
      std::vector<MYSQL_BIND> rb(fields);
      for (unsigned i = 0; i < fields; ++i) {
        Column& c = cols[i];
        c.name = f[i].name;
        c.type = f[i].type;
        c.is_unsigned = (f[i].flags & UNSIGNED_FLAG) != 0;
        c.binary = c.type == MYSQL_TYPE_BIT || c.type == MYSQL_TYPE_GEOMETRY ||
                   (f[i].charsetnr == 63 &&
                    (c.type == MYSQL_TYPE_BLOB || c.type == MYSQL_TYPE_TINY_BLOB ||
                     c.type == MYSQL_TYPE_MEDIUM_BLOB || c.type == MYSQL_TYPE_LONG_BLOB ||
                     c.type == MYSQL_TYPE_STRING || c.type == MYSQL_TYPE_VAR_STRING));
        MARIADB_CONST_STRING format{};
        c.json = mariadb_field_attr(&format, &f[i], MARIADB_FIELD_ATTR_FORMAT_NAME) == 0 &&
                 std::string_view(format.str, format.length) == "json";
        c.decimals = f[i].decimals;
        c.field = is_out ? nullptr : t.Field(c.name);
        if (is_out && i < out_names.size()) {
          c.name = out_names[i];
          c.field = t.Field(c.name);
        }
        MYSQL_BIND& b = rb[i];
        b.is_null = &c.is_null;
        b.error = &c.error;
        b.length = &c.length;
        if (IsIntegerType(c.type)) {
          b.buffer_type = MYSQL_TYPE_LONGLONG;
          b.buffer = &c.i;
          b.is_unsigned = c.is_unsigned;
        } else if (c.type == MYSQL_TYPE_FLOAT || c.type == MYSQL_TYPE_DOUBLE) {
          b.buffer_type = MYSQL_TYPE_DOUBLE;
          b.buffer = &c.f;
        } else if (IsTimeType(c.type)) {
          b.buffer_type = c.type == MYSQL_TYPE_TIME || c.type == MYSQL_TYPE_TIME2 ? MYSQL_TYPE_TIME
                          : c.type == MYSQL_TYPE_DATE || c.type == MYSQL_TYPE_NEWDATE
                              ? MYSQL_TYPE_DATE
                              : MYSQL_TYPE_DATETIME;
          if (c.type == MYSQL_TYPE_TIME2) c.type = MYSQL_TYPE_TIME;
          if (c.type == MYSQL_TYPE_DATETIME2 || c.type == MYSQL_TYPE_TIMESTAMP2)
            c.type = MYSQL_TYPE_DATETIME;
          b.buffer = &c.t;
        } else {
          c.text.resize(kInitialColumnBuffer);
          b.buffer_type = MYSQL_TYPE_STRING;
          b.buffer = c.text.data();
          b.buffer_length = c.text.size();
        }
      }
      mysql_free_result(meta);
      if (mysql_stmt_bind_result(stmt, rb.data()) != 0) return std::unexpected(StmtError(stmt));
      json::array rows;
      while (true) {
        const int rc = mysql_stmt_fetch(stmt);
        if (rc == MYSQL_NO_DATA) break;
        if (rc == 1) return std::unexpected(StmtError(stmt));
        json::object row;
        for (unsigned i = 0; i < fields; ++i) {
          Column& c = cols[i];
          if (!c.is_null && rb[i].buffer_type == MYSQL_TYPE_STRING && c.length > c.text.size()) {
            // Longer than the buffer: fetch the column again into one that fits.
            std::string big(c.length, '\0');
            MYSQL_BIND again = rb[i];
            again.buffer = big.data();
            again.buffer_length = big.size();
            if (mysql_stmt_fetch_column(stmt, &again, i, 0) != 0)
              return std::unexpected(StmtError(stmt));
            std::swap(c.text, big);
            row[c.name] = ColumnValue(c);
            std::swap(c.text, big);
            continue;
          }
          row[c.name] = ColumnValue(c);
        }
        rows.push_back(std::move(row));
      }
      if (is_out) {
        if (!rows.empty()) produced.out = std::move(rows[0].as_object());
      } else {
        produced.sets.push_back(std::move(rows));
      }
    } else {
      const auto affected = mysql_stmt_affected_rows(stmt);
      if (affected != static_cast<my_ulonglong>(-1))
        produced.affected += static_cast<int64_t>(affected);
    }
    const int next = mysql_stmt_next_result(stmt);
    if (next == -1) break;
    if (next > 0) return std::unexpected(StmtError(stmt));
  }
  return produced;
}

// What a CALL produced, as the op's result: one result set is its rows; OUT parameters alone are
// their row; several sets (or sets and OUT parameters) are one array of rows per set, the OUT row
// last as a set of its own; no set at all is the rows affected.
OpResult Shape(Produced produced) {
  OpResult r;
  auto& sets = produced.sets;
  if (produced.out) {
    if (sets.empty()) {
      r.data.push_back(std::move(*produced.out));
      r.count = 1;
      return r;
    }
    sets.push_back(json::array{std::move(*produced.out)});
  }
  if (sets.size() == 1) {
    r.data = std::move(sets[0]);
    r.count = static_cast<int64_t>(r.data.size());
  } else if (sets.size() > 1) {
    for (auto& s : sets) r.data.push_back(std::move(s));
    r.count = static_cast<int64_t>(r.data.size());
  } else {
    r.count = produced.affected;
  }
  return r;
}

// A client-library error for an answer that could not be read (out of memory on a huge row).
constexpr unsigned kUnreadable = CR_UNKNOWN_ERROR;

// One statement on `conn`, without retrying: the exactly-once sequence decides about failures as
// a whole. After a server-side error the statement is made reusable, or the connection closed.
std::expected<Produced, DbError> Step(Connection& conn, const std::string& sql,
                                      std::vector<Value>& params, size_t out_count,
                                      const Template& t,
                                      const std::vector<std::string>& out_names) {
  auto stmt = conn.Prepare(sql);
  if (!stmt) {
    if (IsConnectionError(stmt.error().errnum)) conn.Close();
    if (stmt.error().errnum == ER_MAX_PREPARED_STMT_COUNT_REACHED) conn.Clear();
    return std::unexpected(stmt.error());
  }
  std::expected<Produced, DbError> produced;
  try {
    produced = Execute(conn, *stmt, params, out_count, t, out_names);
  } catch (const std::exception& ex) {
    conn.Close();  // unread results are left on it
    return std::unexpected(DbError{kUnreadable, "HY000", ex.what()});
  }
  if (!produced) {
    if (IsConnectionError(produced.error().errnum)) {
      conn.Close();
    } else if (mysql_stmt_free_result(*stmt) != 0 || mysql_stmt_reset(*stmt) != 0) {
      conn.Close();
    } else if (produced.error().errnum == CR_NEW_STMT_METADATA ||
               produced.error().errnum == ER_NEED_REPREPARE ||
               produced.error().errnum == ER_SP_DOES_NOT_EXIST) {
      conn.Forget(sql);
    }
  }
  return produced;
}

const char* FilterSql(Filter::Op op) {
  switch (op) {
    case Filter::Op::kEq:
      return " = ?";
    case Filter::Op::kGt:
      return " > ?";
    case Filter::Op::kGte:
      return " >= ?";
    case Filter::Op::kLt:
      return " < ?";
    case Filter::Op::kLte:
      return " <= ?";
    case Filter::Op::kIn:
      return " IN (";
  }
  return " = ?";
}

// "WHERE a = ? AND b IN (?, ?)" with the values in `params`, in placeholder order.
std::string WhereSql(const Query& q, std::vector<Value>& params) {
  std::string sql;
  for (const auto& f : q.filters) {
    sql += sql.empty() ? " WHERE " : " AND ";
    sql += Quote(f.field);
    sql += FilterSql(f.op);
    if (f.op == Filter::Op::kIn) {
      // Padded to a power of two by repeating the last value (which changes nothing), so that
      // lists of any length share a handful of prepared statements.
      size_t n = 1;
      while (n < f.values.size()) n *= 2;
      for (size_t i = 0; i < n; ++i) sql += i ? ", ?" : "?";
      sql += ")";
      params.insert(params.end(), f.values.begin(), f.values.end());
      for (size_t i = f.values.size(); i < n; ++i) params.push_back(f.values.back());
      continue;
    }
    params.insert(params.end(), f.values.begin(), f.values.end());
  }
  return sql;
}

enum class Access { kRead, kWrite };

class MariaDbCore : public NamasteCore {
 public:
  explicit MariaDbCore(const config::DatabaseSettings& s)
      : settings_(s),
        master_(settings_, s.host, s.port, "master"),
        writer_(settings_, s.host, s.port, "master") {
    for (size_t i = 0; i < s.secondaries.size(); ++i) {
      secondaries_.push_back(std::make_unique<Connection>(settings_, s.secondaries[i].host,
                                                          s.secondaries[i].port,
                                                          "secondary " + std::to_string(i)));
    }
    secondary_down_until_.resize(secondaries_.size());
  }

  Result<OpResult> Create(const Template& t, const OpSpec& op, const Payload& p) override {
    return CallProcedure(t, op, p, Access::kWrite, t.name + "/create");
  }
  Result<OpResult> Update(const Template& t, const OpSpec& op, const Payload& p) override {
    return CallProcedure(t, op, p, Access::kWrite, t.name + "/update");
  }
  Result<OpResult> Delete(const Template& t, const OpSpec& op, const Payload& p) override {
    return CallProcedure(t, op, p, Access::kWrite, t.name + "/delete");
  }
  Result<OpResult> Call(const Template& t, const OpSpec& op, const Payload& p) override {
    return CallProcedure(t, op, p, op.read ? Access::kRead : Access::kWrite,
                         t.name + "/call " + op.name);
  }

  Result<OpResult> Fetch(const Template& t, const OpSpec& op, const Query& q) override {
    std::vector<Value> params;
    std::string sql = "SELECT * FROM " + Quote(op.view) + WhereSql(q, params);
    for (size_t i = 0; i < q.order.size(); ++i) {
      sql += i ? ", " : " ORDER BY ";
      sql += Quote(q.order[i].first) + (q.order[i].second ? " DESC" : "");
    }
    sql += " LIMIT ? OFFSET ?";
    params.push_back(Value{FieldType::kInt, false, q.limit, 0, {}});
    params.push_back(Value{FieldType::kInt, false, q.offset, 0, {}});
    auto produced = Run(sql, params, 0, t, {}, Access::kRead, q.deadline_ms, t.name + "/fetch");
    if (!produced) return std::unexpected(produced.error());
    OpResult r;
    if (!produced->sets.empty()) r.data = std::move(produced->sets[0]);
    r.count = static_cast<int64_t>(r.data.size());
    return r;
  }

  Result<int64_t> SweepOnce(int64_t batch) override {
    static const Template kNoFields;
    std::vector<Value> params{Value{FieldType::kInt, false, batch, 0, {}}};
    auto produced = Run("CALL `beds_once_sweep`(?)", params, 0, kNoFields, {}, Access::kWrite, 0,
                        "exactly-once sweep");
    if (!produced) return std::unexpected(produced.error());
    if (produced->sets.empty() || produced->sets[0].empty()) return int64_t{0};
    const json::value* swept = produced->sets[0][0].as_object().if_contains("swept");
    return swept && swept->is_int64() ? swept->get_int64() : 0;
  }

  Result<OpResult> Count(const Template& t, const OpSpec& op, const Query& q) override {
    std::vector<Value> params;
    const std::string sql =
        "SELECT COUNT(*) AS `count` FROM " + Quote(op.view) + WhereSql(q, params);
    auto produced = Run(sql, params, 0, t, {}, Access::kRead, q.deadline_ms, t.name + "/count");
    if (!produced) return std::unexpected(produced.error());
    OpResult r;
    if (!produced->sets.empty() && !produced->sets[0].empty()) {
      const json::value& v = produced->sets[0][0].as_object().at("count");
      r.count = v.is_int64() ? v.get_int64() : 0;
    }
    r.data.push_back(json::object{{"count", r.count}});
    return r;
  }

  // A worker's cycle of writes. Consecutive exactly-once writes share one transaction: each
  // procedure runs in turn, then beds_once_commit_many records them all and commits, so n writes
  // cost n + 1 statements instead of 2n (and one commit instead of n). Each still answers as if
  // alone: nothing of the shared transaction commits unless every write in it succeeded, and
  // when one fails (its procedure's error, a repeat found by the record's key, a lost
  // connection) the transaction is rolled back and each write runs alone instead (RunOnce), in
  // order, so the failure is answered exactly as it would have been and the others still apply.
  // A write the broker says may have been seen (a redelivery or a retry) runs alone: it is
  // looked up first.
  std::vector<Result<OpResult>> ApplyWrites(std::vector<Write>& writes) override {
    std::vector<Result<OpResult>> results;
    results.reserve(writes.size());
    size_t next = 0;
    while (next < writes.size()) {
      size_t end = next;
      while (end < writes.size() && Chainable(writes[end])) ++end;
      if (end - next >= 2) {
        RunChain(writes, next, end, results);
        next = end;
        continue;
      }
      results.push_back(ApplyWrite(*this, writes[next]));
      ++next;
    }
    return results;
  }

  // An atomic batch: every write's procedure in one transaction, then one
  // beds_once_commit_many for their records (or a plain COMMIT when none has one). A failing
  // procedure rolls everything back and is answered with its index. A batch that may have been
  // applied before (redelivered, retried, its connection lost during the commit, or a record
  // found at the commit) is looked up first: every write recorded answers from the records;
  // some of them recorded means their keys were used by other requests (CONFLICT).
  std::expected<std::vector<OpResult>, WriteFailure> ApplyAtomically(
      std::vector<Write>& writes) override {
    static const std::string kCommitMany = "CALL `beds_once_commit_many`(?)";
    const std::string what = "atomic batch";
    int64_t deadline_ms = 0;
    bool look_first = false;
    for (const Write& w : writes) {
      const int64_t d = w.payload.deadline_ms;
      if (d != 0 && (deadline_ms == 0 || d < deadline_ms)) deadline_ms = d;
      look_first = look_first || (w.payload.once && w.payload.once->maybe_seen);
    }
    auto fail = [](size_t index, Error e) {
      return std::unexpected(WriteFailure{index, std::move(e)});
    };
    Patience patience(settings_.reconnect_wait_ms, deadline_ms);
    int again = 0;
    std::optional<DbError> last;
    while (true) {
      Connection& conn = writer_;
      if (conn.connected() && conn.LooksClosed()) conn.Close();
      if (!conn.connected()) {
        if (auto e = conn.Connect()) {
          last = e;
          if (!patience.WaitToRetry()) break;
          continue;
        }
      }
      std::optional<DbError> failed;
      size_t failed_at = 0;
      if (look_first) {
        std::vector<OpResult> replayed;
        for (size_t i = 0; i < writes.size() && !failed; ++i) {
          if (!writes[i].payload.once) continue;
          auto recorded = Lookup(conn, *writes[i].payload.once, what);
          if (!recorded) {
            failed = recorded.error();
            failed_at = i;
          } else if (*recorded) {
            if (!**recorded) return fail(i, (**recorded).error());
            replayed.push_back(std::move(***recorded));
          }
        }
        if (!failed && replayed.size() == writes.size()) return replayed;
        if (!failed && !replayed.empty()) {
          return fail(0, Error{Code::kConflict,
                               "part of this atomic batch was applied already, by requests that "
                               "used the same idempotency keys: nothing more was run"});
        }
      }
      if (!failed && !InTransaction(conn) && mysql_query(conn.handle(), "START TRANSACTION") != 0) {
        failed = ConnectionError(conn.handle());
      }
      std::vector<OpResult> applied;
      json::array records;
      for (size_t i = 0; i < writes.size() && !failed; ++i) {
        const Write& w = writes[i];
        std::vector<Value> params;
        const std::string sql = ProcedureCall(*w.t, *w.spec, w.payload, params);
        auto produced = Step(conn, sql, params, w.spec->out.size(), *w.t, w.spec->out);
        if (!produced) {
          failed = produced.error();
          failed_at = i;
          break;
        }
        applied.push_back(Shape(std::move(*produced)));
        if (const auto& once = w.payload.once) records.push_back(RecordOf(*once, applied.back()));
      }
      if (!failed) {
        if (records.empty()) {
          if (mysql_commit(conn.handle()) == 0) return applied;
          failed = ConnectionError(conn.handle());
        } else {
          std::vector<Value> record{
              Value{FieldType::kString, false, 0, 0, json::serialize(records)}};
          auto committed = Step(conn, kCommitMany, record, 0, kNoFields, kNoNames);
          if (committed) return applied;
          failed = committed.error();
          if (failed->errnum == ER_DUP_ENTRY) {
            // Recorded already: answered from the records (or CONFLICT) after the lookup.
            Rollback(conn);
            look_first = true;
            if (again++ < kDeadlockRetries) continue;
          }
        }
      }
      const DbError& e = *failed;
      if (IsConnectionError(e.errnum) || !conn.connected()) {
        // Rolled back by the server, or committed: the lookup on the next connection tells.
        conn.Close();
        if (e.errnum == kUnreadable) {
          // The same answer would be unreadable again: as for a single write, not retried.
          spdlog::error("{}: reading the database's answer failed: {}", what, e.text);
          return fail(failed_at, Error{Code::kInternal,
                                       what + ": the database's answer could not be read", false});
        }
        last = e;
        look_first = true;
        if (patience.Expired()) break;
        continue;
      }
      Rollback(conn);
      if ((e.errnum == ER_LOCK_DEADLOCK || e.errnum == CR_NEW_STMT_METADATA ||
           e.errnum == ER_NEED_REPREPARE) &&
          again++ < kDeadlockRetries) {
        continue;  // rolled back: safe to run again
      }
      if (!look_first && e.errnum != ER_SP_DOES_NOT_EXIST) {
        // A re-sent batch may fail in a procedure (a create's own unique key) before reaching
        // the records: the records answer it, not the error.
        look_first = true;
        continue;
      }
      return fail(failed_at, RolledBack(e, what));
    }
    return fail(0, patience.GaveUp(what, settings_.name, last,
                                   "try again later with the same idempotency keys: if the batch "
                                   "was applied, its records answer, else it is applied then",
                                   true));
  }

 private:
  // `CALL proc(?, …)` for an op, with its parameters' values in order (the out parameters'
  // placeholders last).
  static std::string ProcedureCall(const Template& t, const OpSpec& op, const Payload& p,
                                   std::vector<Value>& params) {
    params.reserve(op.params.size());
    for (const auto& name : op.params) {
      const FieldSpec* f = t.Field(name);
      params.push_back(p.Get(name, f ? f->type : FieldType::kString));
    }
    std::string sql = "CALL " + Quote(op.procedure) + "(";
    for (size_t i = 0; i < op.params.size() + op.out.size(); ++i) sql += i ? ", ?" : "?";
    sql += ")";
    return sql;
  }

  Result<OpResult> CallProcedure(const Template& t, const OpSpec& op, const Payload& p,
                                 Access access, const std::string& what) {
    std::vector<Value> params;
    std::string sql = ProcedureCall(t, op, p, params);
    if (access == Access::kWrite && p.once) {
      return RunOnce(sql, params, t, op, *p.once, p.deadline_ms, what);
    }
    auto produced = Run(sql, params, op.out.size(), t, op.out, access, p.deadline_ms, what);
    if (!produced) return std::unexpected(produced.error());
    return Shape(std::move(*produced));
  }

  static bool Chainable(const Write& w) {
    return w.payload.once && !w.payload.once->maybe_seen && !w.spec->read;
  }

  // writes[begin, end), all Chainable, in one transaction; their results appended in order.
  void RunChain(std::vector<Write>& writes, size_t begin, size_t end,
                std::vector<Result<OpResult>>& results) {
    static const std::string kCommitMany = "CALL `beds_once_commit_many`(?)";
    // Each alone, in order. `looked_up`: the chain's commit may have landed (its connection
    // broke during it), so each is looked up first and answered from its record if so.
    auto alone = [&](bool looked_up) {
      for (size_t i = begin; i < end; ++i) {
        if (looked_up) writes[i].payload.once->maybe_seen = true;
        results.push_back(ApplyWrite(*this, writes[i]));
      }
    };
    Connection& conn = writer_;
    if (conn.connected() && conn.LooksClosed()) conn.Close();
    if (!conn.connected() && conn.Connect()) return alone(false);  // RunOnce waits for it
    if (!InTransaction(conn) && mysql_query(conn.handle(), "START TRANSACTION") != 0) {
      conn.Close();
      return alone(false);
    }
    std::vector<OpResult> applied;
    applied.reserve(end - begin);
    json::array records;
    for (size_t i = begin; i < end; ++i) {
      const Write& w = writes[i];
      std::vector<Value> params;
      const std::string sql = ProcedureCall(*w.t, *w.spec, w.payload, params);
      auto produced = Step(conn, sql, params, w.spec->out.size(), *w.t, w.spec->out);
      if (!produced) {
        // Nothing of the chain committed (a lost connection rolled it back on the server).
        Rollback(conn);
        return alone(false);
      }
      applied.push_back(Shape(std::move(*produced)));
      records.push_back(RecordOf(*w.payload.once, applied.back()));
    }
    std::vector<Value> record{Value{FieldType::kString, false, 0, 0, json::serialize(records)}};
    auto committed = Step(conn, kCommitMany, record, 0, kNoFields, kNoNames);
    if (committed) {
      for (OpResult& r : applied) results.push_back(std::move(r));
      return;
    }
    const DbError& e = committed.error();
    const bool lost = IsConnectionError(e.errnum) || !conn.connected();
    if (e.errnum == ER_SP_DOES_NOT_EXIST) {
      // Objects from before beds_once_commit_many: correct, one write at a time.
      spdlog::warn(
          "database {}: {}: reload schema/mariadb/000_beds_idempotency.sql for writes "
          "that share a transaction",
          settings_.name, e.text);
    } else if (e.errnum != ER_DUP_ENTRY && !lost) {
      spdlog::warn("database {}: recording {} writes together failed: {} ({}); each runs alone",
                   settings_.name, end - begin, e.text, e.errnum);
    }
    Rollback(conn);
    alone(lost);
  }

  // A write applied exactly once: run and recorded in one transaction on the master
  // (000_beds_idempotency.sql describes the objects), on a connection kept for these writes.
  //
  // The record's primary key decides: the write's procedure runs, then beds_once_commit inserts
  // the record and commits both. If the identity is recorded already (a repeat), that insert fails,
  // everything is rolled back, and the recorded reply answers (or CONFLICT, for another digest):
  // the repeat's effect never commits. Looking the identity up first would cost every write a
  // round trip for the rare repeat, so it is done first only for a message the broker says may
  // have been handled before (a redelivery or a retry), and after a procedure's error (a repeat of
  // a create may fail on its own unique key before reaching the record).
  //
  // beds_once_commit opens the next write's transaction after its COMMIT, so a write costs two
  // statements: its procedure and the commit. The server's status flags say whether a transaction
  // is open; when none is (the first write, or after a rollback) one is started.
  //
  // A connection lost at any point is reopened and the write looked up afresh: answered from its
  // record if the commit got through, applied now if it did not.
  Result<OpResult> RunOnce(const std::string& sql, std::vector<Value>& params, const Template& t,
                           const OpSpec& op, const WriteOnce& once, int64_t deadline_ms,
                           const std::string& what) {
    static const std::string kCommit = "CALL `beds_once_commit`(?, ?, ?, ?)";
    Patience patience(settings_.reconnect_wait_ms, deadline_ms);
    int again = 0;  // runs repeated after a deadlock, a lost race or a changed procedure
    bool look_first = once.maybe_seen;
    std::optional<DbError> last;
    while (true) {
      Connection& conn = writer_;
      if (conn.connected() && conn.LooksClosed()) conn.Close();
      if (!conn.connected()) {
        if (auto e = conn.Connect()) {
          last = e;
          if (!patience.WaitToRetry()) break;
          continue;
        }
      }
      std::optional<DbError> failed;
      if (look_first) {
        auto recorded = Lookup(conn, once, what);
        if (!recorded) {
          failed = recorded.error();
        } else if (*recorded) {
          return std::move(**recorded);
        }
      }
      if (!failed && !InTransaction(conn) && mysql_query(conn.handle(), "START TRANSACTION") != 0) {
        failed = ConnectionError(conn.handle());
      }
      if (!failed) {
        auto produced = Step(conn, sql, params, op.out.size(), t, op.out);
        if (!produced) {
          failed = produced.error();
          if (!IsConnectionError(failed->errnum) && conn.connected() && !look_first) {
            // A repeat may fail in its procedure (a create's own unique key) before reaching the
            // record: the record answers it, not the error.
            Rollback(conn);
            auto recorded = Lookup(conn, once, what);
            if (recorded && *recorded) return std::move(**recorded);
          }
        } else {
          OpResult result = Shape(std::move(*produced));
          std::vector<Value> record{
              Value{FieldType::kBytes, false, 0, 0, once.identity},
              Value{FieldType::kBytes, false, 0, 0, once.digest},
              Value{FieldType::kString, false, 0, 0, EncodeRecordedReply(result)},
              Value{FieldType::kInt, false, once.ttl_s, 0, {}}};
          auto committed = Step(conn, kCommit, record, 0, kNoFields, kNoNames);
          if (committed) return result;
          failed = committed.error();
          if (failed->errnum == ER_DUP_ENTRY) {
            // Recorded already (a repeat, or the same write applied meanwhile): undo this run
            // and answer the record.
            Rollback(conn);
            look_first = true;
            if (again++ < kDeadlockRetries) continue;
          }
        }
      }
      const DbError& e = *failed;
      if (IsConnectionError(e.errnum) || !conn.connected()) {
        // The server rolls an open transaction back when its connection goes, and a commit that
        // got through is found by the lookup on the next connection.
        conn.Close();
        if (e.errnum == kUnreadable) {
          spdlog::error("{}: reading the database's answer failed: {}", what, e.text);
          return std::unexpected(
              Error{Code::kInternal, what + ": the database's answer could not be read", false});
        }
        last = e;
        look_first = true;
        if (patience.Expired()) break;
        continue;
      }
      Rollback(conn);
      if ((e.errnum == ER_LOCK_DEADLOCK || e.errnum == CR_NEW_STMT_METADATA ||
           e.errnum == ER_NEED_REPREPARE) &&
          again++ < kDeadlockRetries) {
        continue;  // rolled back: safe to run again
      }
      if (e.errnum == ER_SP_DOES_NOT_EXIST || e.errnum == ER_NO_SUCH_TABLE) conn.Forget(sql);
      return std::unexpected(RolledBack(e, what));
    }
    return std::unexpected(patience.GaveUp(what, settings_.name, last,
                                           "try again later with the same idempotency key: if "
                                           "this write was applied, its record answers, else it "
                                           "is applied then",
                                           true));
  }

  // The write's record, read in a transaction of its own that is then ended: the reply it
  // recorded (replayed), CONFLICT for another digest, or nullopt when it has none.
  std::expected<std::optional<Result<OpResult>>, DbError> Lookup(Connection& conn,
                                                                 const WriteOnce& once,
                                                                 const std::string& what) {
    static const std::string kBegin = "CALL `beds_once_begin`(?)";
    std::vector<Value> id{Value{FieldType::kBytes, false, 0, 0, once.identity}};
    auto found = Step(conn, kBegin, id, 0, kNoFields, kNoNames);
    if (!found) return std::unexpected(found.error());
    // Ended either way: a transaction left open here would hold this read's snapshot, and the
    // next write's procedure would read from it.
    Rollback(conn);
    if (found->sets.empty() || found->sets[0].empty()) return std::nullopt;
    const json::object& row = found->sets[0][0].as_object();
    const json::value* digest = row.if_contains("digest");
    const json::value* reply = row.if_contains("reply");
    if (!digest || !digest->is_string() || digest->get_string() != Hex(once.digest)) {
      return std::optional<Result<OpResult>>(std::unexpected(KeyReusedError()));
    }
    if (!reply || !reply->is_string()) {
      return std::optional<Result<OpResult>>(
          std::unexpected(Error{Code::kInternal, what + ": its record has no reply"}));
    }
    return std::optional<Result<OpResult>>(DecodeRecordedReply(reply->get_string()));
  }

  // The record of an exactly-once write for beds_once_commit_many: [identity hex, digest hex,
  // reply, ttl_s].
  static json::array RecordOf(const WriteOnce& once, const OpResult& result) {
    return json::array{json::string(Hex(once.identity)), json::string(Hex(once.digest)),
                       json::string(EncodeRecordedReply(result)), once.ttl_s};
  }

  // The answer to an exactly-once write (or atomic batch) that failed on the server and was
  // rolled back: whatever the code says, nothing of it remains, so a database that was merely
  // busy or away is retryable, and the client is told that sending it again is safe.
  static Error RolledBack(const DbError& e, const std::string& what) {
    auto nothing_applied = [&](const std::string& why) {
      return Error{Code::kUnavailable,
                   what + ": " + why +
                       "; nothing was applied, and sending it again (with its idempotency key) "
                       "is safe",
                   true};
    };
    if (e.errnum == ER_LOCK_DEADLOCK) return nothing_applied("it was stopped in a deadlock");
    if (e.errnum == ER_LOCK_WAIT_TIMEOUT) return nothing_applied("it waited too long for a lock");
    if (e.errnum == ER_STATEMENT_TIMEOUT)
      return nothing_applied("it ran longer than query_timeout_ms");
    if (e.errnum == ER_SP_DOES_NOT_EXIST && e.text.find("beds_once_") != std::string::npos) {
      spdlog::error("{}: {}: install schema/mariadb/000_beds_idempotency.sql", what, e.text);
      return Error{Code::kUnavailable, what +
                                           ": the database has no exactly-once record "
                                           "(schema/mariadb/000_beds_idempotency.sql); an "
                                           "operator has been told"};
    }
    if (e.errnum != ER_SIGNAL_EXCEPTION && e.errnum != ER_SIGNAL_NOT_FOUND &&
        e.errnum != ER_DUP_ENTRY) {
      spdlog::warn("{}: {} ({} {})", what, e.text, e.errnum, e.sqlstate);
    }
    Error mapped = MapError(e, what);
    if (mapped.code == Code::kUnavailable) mapped.retry = true;
    return mapped;
  }

  // Whether the connection is inside a transaction, as the server's last status said.
  static bool InTransaction(const Connection& conn) {
    return (conn.handle()->server_status & SERVER_STATUS_IN_TRANS) != 0;
  }

  static inline const Template kNoFields{};  // the record's columns are read as they come
  static inline const std::vector<std::string> kNoNames{};

  // Ends the open transaction, undoing it. A connection that cannot even do that is closed, which
  // rolls the transaction back on the server.
  static void Rollback(Connection& conn) {
    if (conn.connected() && mysql_rollback(conn.handle()) != 0) conn.Close();
  }

  // The connection a statement runs on: a secondary for reads when one is up, else the master.
  // One the server has closed is closed here too, so Run() knows to reopen it.
  Connection* Pick(Access access) {
    if (access == Access::kRead) {
      const auto now = std::chrono::steady_clock::now();
      for (size_t i = 0; i < secondaries_.size(); ++i) {
        if (now < secondary_down_until_[i]) continue;
        Connection& c = *secondaries_[i];
        if (c.connected() && !c.LooksClosed()) return &c;
        if (auto e = c.Connect(); !e)
          return &c;
        else
          spdlog::warn("database {} {}: {} (reads go to the master for {} s)", settings_.name,
                       c.label(), e->text, kSecondaryCooldown.count());
        secondary_down_until_[i] = now + kSecondaryCooldown;
      }
    }
    if (master_.connected() && master_.LooksClosed()) master_.Close();
    return &master_;
  }

  void MarkSecondaryDown(Connection* c) {
    for (size_t i = 0; i < secondaries_.size(); ++i) {
      if (secondaries_[i].get() == c)
        secondary_down_until_[i] = std::chrono::steady_clock::now() + kSecondaryCooldown;
    }
  }

  // Runs one statement, reconnecting while the server is away (until reconnect_wait_ms or the
  // request's deadline). Reads are simply rerun on a new connection. A write is rerun only if it
  // cannot have started: a connection lost while the write ran leaves its outcome unknown, and
  // resending it could apply it twice.
  std::expected<Produced, Error> Run(const std::string& sql, std::vector<Value>& params,
                                     size_t out_count, const Template& t,
                                     const std::vector<std::string>& out_names, Access access,
                                     int64_t deadline_ms, const std::string& what) {
    Patience patience(settings_.reconnect_wait_ms, deadline_ms);
    int deadlocks = 0;
    bool reprepared = false;
    std::optional<DbError> last;
    while (true) {
      Connection* conn = Pick(access);
      if (!conn->connected()) {
        if (auto e = conn->Connect()) {
          last = e;
          if (!patience.WaitToRetry()) break;
          continue;
        }
      }
      auto stmt = conn->Prepare(sql);
      if (!stmt) {
        if (IsConnectionError(stmt.error().errnum)) {
          // Nothing ran: a prepare only parses.
          last = stmt.error();
          conn->Close();
          if (conn != &master_) MarkSecondaryDown(conn);
          if (patience.Expired()) break;
          continue;
        }
        if (stmt.error().errnum == ER_MAX_PREPARED_STMT_COUNT_REACHED) conn->Clear();
        spdlog::warn("{}: prepare failed: {} ({})", what, stmt.error().text, stmt.error().errnum);
        return std::unexpected(MapError(stmt.error(), what));
      }
      std::expected<Produced, DbError> produced;
      try {
        produced = Execute(*conn, *stmt, params, out_count, t, out_names);
      } catch (const std::exception& ex) {
        // Out of memory on a huge row, say. The connection has unread results: drop it. Never
        // let this reach the broker's retry path, which would run a write again.
        conn->Close();
        spdlog::error("{}: reading the database's answer failed: {}", what, ex.what());
        if (access == Access::kWrite)
          return std::unexpected(OutcomeUnknownError(what, "its answer could not be read"));
        return std::unexpected(
            Error{Code::kInternal, what + ": the database's answer could not be read", false});
      }
      if (produced) return std::move(*produced);
      const DbError& e = produced.error();
      if (IsConnectionError(e.errnum)) {
        conn->Close();
        if (conn != &master_) MarkSecondaryDown(conn);
        if (access == Access::kWrite) {
          spdlog::error("{}: connection lost while the write ran ({}): outcome unknown", what,
                        e.text);
          return std::unexpected(
              OutcomeUnknownError(what, "the database connection was lost while the write ran"));
        }
        last = e;
        if (patience.Expired()) break;
        continue;
      }
      // The statement stays usable after a server-side error once whatever it holds is dropped;
      // if even that fails, so has the connection.
      if (mysql_stmt_free_result(*stmt) != 0 || mysql_stmt_reset(*stmt) != 0) conn->Close();
      if (e.errnum == CR_NEW_STMT_METADATA || e.errnum == ER_NEED_REPREPARE) {
        // The DBA changed the object (a view gained a column): prepare it afresh. A read reruns
        // once; a write may have run, so it is not resent.
        conn->Forget(sql);
        if (access == Access::kRead && !reprepared) {
          reprepared = true;
          continue;
        }
      }
      if (access == Access::kWrite) {
        // Statements inside a procedure commit one by one (autocommit): a write stopped half-way
        // may have applied its first part, so none of these is resent or called retryable.
        if (e.errnum == ER_LOCK_DEADLOCK)
          return std::unexpected(
              OutcomeUnknownError(what, "the database stopped it in a deadlock"));
        if (e.errnum == ER_LOCK_WAIT_TIMEOUT)
          return std::unexpected(OutcomeUnknownError(what, "it waited too long for a lock"));
        if (e.errnum == ER_STATEMENT_TIMEOUT)
          return std::unexpected(OutcomeUnknownError(what, "it ran longer than query_timeout_ms"));
        if (IsPassingServerError(e.errnum))
          return std::unexpected(OutcomeUnknownError(what, "the database stopped it part-way"));
      } else if (e.errnum == ER_LOCK_DEADLOCK && deadlocks++ < kDeadlockRetries) {
        continue;  // a read: safe to run again
      }
      if (e.errnum == ER_SP_DOES_NOT_EXIST || e.errnum == ER_NO_SUCH_TABLE) conn->Forget(sql);
      if (e.errnum != ER_SIGNAL_EXCEPTION && e.errnum != ER_SIGNAL_NOT_FOUND &&
          e.errnum != ER_DUP_ENTRY) {
        spdlog::warn("{}: {} ({} {})", what, e.text, e.errnum, e.sqlstate);
      }
      return std::unexpected(MapError(e, what));
    }
    return std::unexpected(patience.GaveUp(what, settings_.name, last, "try again later"));
  }

  const config::DatabaseSettings settings_;  // before the connections, which refer to it
  Connection master_;
  // Exactly-once writes only: between two of them it holds the next write's open transaction,
  // which no read may share (a read would pin its snapshot for the next write).
  Connection writer_;
  std::vector<std::unique_ptr<Connection>> secondaries_;
  std::vector<std::chrono::steady_clock::time_point> secondary_down_until_;
};

}  // namespace

std::unique_ptr<NamasteCore> MakeCore(const config::DatabaseSettings& settings) {
  return std::make_unique<MariaDbCore>(settings);
}

std::string ClientVersion() { return mysql_get_client_info(); }

Result<Schema> ReadSchema(const config::DatabaseSettings& settings) {
  Connection conn(settings, settings.host, settings.port, "master");
  if (auto e = conn.Connect()) {
    return Fail(Code::kUnavailable, "database " + settings.name + ": " + e->text);
  }
  MYSQL* m = conn.handle();
  Schema schema;
  auto query = [&](const char* sql, auto&& each) -> Result<void> {
    if (mysql_query(m, sql) != 0) {
      return Fail(Code::kUnavailable,
                  "database " + settings.name + ": reading information_schema: " + mysql_error(m));
    }
    MYSQL_RES* res = mysql_store_result(m);
    if (!res) return Fail(Code::kUnavailable, "database " + settings.name + ": " + mysql_error(m));
    while (MYSQL_ROW row = mysql_fetch_row(res)) each(row);
    mysql_free_result(res);
    return Ok();
  };
  auto str = [](const char* s) { return std::string(s ? s : ""); };
  if (auto r = query("SELECT ROUTINE_NAME, SQL_DATA_ACCESS, ROUTINE_DEFINITION "
                     "FROM information_schema.ROUTINES "
                     "WHERE ROUTINE_SCHEMA = DATABASE() AND ROUTINE_TYPE = 'PROCEDURE'",
                     [&](MYSQL_ROW row) {
                       auto& p = schema.procedures[str(row[0])];
                       p.name = str(row[0]);
                       p.data_access = str(row[1]);
                       p.definition = str(row[2]);
                     });
      !r)
    return std::unexpected(r.error());
  if (auto r = query("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
                     "DATABASE() AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
                     [&](MYSQL_ROW row) { schema.tables.push_back(str(row[0])); });
      !r)
    return std::unexpected(r.error());
  if (auto r = query("SELECT SPECIFIC_NAME, PARAMETER_NAME, PARAMETER_MODE, DATA_TYPE, "
                     "NUMERIC_SCALE FROM information_schema.PARAMETERS "
                     "WHERE SPECIFIC_SCHEMA = DATABASE() AND ROUTINE_TYPE = 'PROCEDURE' "
                     "ORDER BY SPECIFIC_NAME, ORDINAL_POSITION",
                     [&](MYSQL_ROW row) {
                       auto& p = schema.procedures[str(row[0])];
                       p.name = str(row[0]);
                       SchemaParam param{str(row[1]), str(row[2]), str(row[3])};
                       if (row[4]) param.scale = std::atoi(row[4]);
                       p.params.push_back(std::move(param));
                     });
      !r)
    return std::unexpected(r.error());
  if (auto r =
          query("SELECT c.TABLE_NAME, c.COLUMN_NAME, c.DATA_TYPE, c.IS_NULLABLE "
                "FROM information_schema.COLUMNS c JOIN information_schema.VIEWS v "
                "ON v.TABLE_SCHEMA = c.TABLE_SCHEMA AND v.TABLE_NAME = c.TABLE_NAME "
                "WHERE c.TABLE_SCHEMA = DATABASE() ORDER BY c.TABLE_NAME, c.ORDINAL_POSITION",
                [&](MYSQL_ROW row) {
                  auto& v = schema.views[str(row[0])];
                  v.name = str(row[0]);
                  v.columns.push_back(SchemaColumn{str(row[1]), str(row[2]), str(row[3]) == "YES"});
                });
      !r)
    return std::unexpected(r.error());
  // A JSON column is LONGTEXT in the catalogue; only the server's extended metadata of a result
  // says JSON. Views are the DBA's objects and a LIMIT 0 select reads no rows.
  for (auto& [name, view] : schema.views) {
    if (std::none_of(view.columns.begin(), view.columns.end(),
                     [](const SchemaColumn& c) { return c.data_type == "longtext"; }))
      continue;
    const std::string sql = "SELECT * FROM " + Quote(name) + " LIMIT 0";
    if (mysql_query(m, sql.c_str()) != 0) continue;  // an invalid view: the bind-check says so
    MYSQL_RES* res = mysql_store_result(m);
    if (!res) continue;
    const unsigned n = mysql_num_fields(res);
    MYSQL_FIELD* fields = mysql_fetch_fields(res);
    for (unsigned i = 0; i < n && i < view.columns.size(); ++i) {
      MARIADB_CONST_STRING format{};
      view.columns[i].json =
          mariadb_field_attr(&format, &fields[i], MARIADB_FIELD_ATTR_FORMAT_NAME) == 0 &&
          std::string_view(format.str, format.length) == "json";
    }
    mysql_free_result(res);
  }
  return schema;
}

}  // namespace beds::adapters::mariadb
