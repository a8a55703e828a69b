// NamasteCore: the six data operations every engine adapter implements, and the typed values they
// take. The dispatcher validates a request against its template (core/validate.hpp) into a Payload
// or a Query, then calls the adapter that CoreFactory maps the template's database to.
// An adapter instance belongs to one worker thread (one database connection per worker, so the
// broker's `instances` bounds concurrent database work); it is not shared between threads.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "core/template.hpp"

namespace beds {

// One validated value of a declared type. `text` holds strings, DECIMAL digits, ISO dates
// ("2026-11-24", "2026-11-24 17:07:20.123456"), serialized JSON and raw (decoded) bytes.
struct Value {
  FieldType type = FieldType::kString;
  bool null = true;
  int64_t i = 0;  // int, bool (0/1)
  double f = 0;   // float
  std::string text;

  static Value Null(FieldType type) { return Value{type, true, 0, 0, {}}; }
};

// What makes a write apply exactly once (core/once.hpp): set by the dispatcher on every write
// when [idempotency] is enabled.
struct WriteOnce {
  std::string identity;  // 32 bytes: the key (scoped) or the message id, hashed
  std::string digest;    // 32 bytes: the validated request, hashed
  int64_t ttl_s = 86400;
  // The broker says the message may have been handled before (a redelivery or a retry): an
  // adapter that usually finds repeats by its record's key looks the identity up first.
  bool maybe_seen = false;
};

// The values of a write or call, by parameter name (the key field included when the op has it).
struct Payload {
  std::map<std::string, Value, std::less<>> values;
  int64_t deadline_ms = 0;        // the request's deadline (absolute Unix ms; 0 = none)
  std::optional<WriteOnce> once;  // a write to apply exactly once

  // The value for a parameter, or a NULL of the field's type when the client left it out.
  Value Get(const std::string& name, FieldType type) const;
};

struct Filter {
  enum class Op { kEq, kGt, kGte, kLt, kLte, kIn };
  std::string field;
  Op op = Op::kEq;
  std::vector<Value> values;  // one, or the members of `in`
};

struct Query {
  std::vector<Filter> filters;                      // ANDed; the key (`id`) is an kEq filter
  std::vector<std::pair<std::string, bool>> order;  // field, descending
  int64_t limit = 0;
  int64_t offset = 0;
  int64_t deadline_ms = 0;  // the request's deadline (absolute Unix ms; 0 = none)
};

// What an operation produced: `data` is an array of row objects (or, for a procedure returning
// several result sets, an array of such arrays); `count` is rows returned, rows affected or the
// counted total.
struct OpResult {
  boost::json::array data;
  int64_t count = 0;
  bool replayed = false;  // answered from the write's record: it was applied before
};

// A validated create, update, delete or call, ready to run: the op of a template and its values
// (with the WriteOnce that makes a write apply exactly once). A dispatch worker collects its
// cycle's exactly-once writes as these and applies them together (NamasteCore::ApplyWrites).
struct Write {
  enum class Kind { kCreate, kUpdate, kDelete, kCall };
  const Template* t = nullptr;
  const OpSpec* spec = nullptr;
  Kind kind = Kind::kCreate;
  Payload payload;
};

// Why an atomic batch applied nothing: its write at `index` failed with `error`.
struct WriteFailure {
  size_t index = 0;
  Error error;
};

class NamasteCore {
 public:
  virtual ~NamasteCore() = default;
  virtual Result<OpResult> Create(const Template& t, const OpSpec& op, const Payload& p) = 0;
  virtual Result<OpResult> Fetch(const Template& t, const OpSpec& op, const Query& q) = 0;
  virtual Result<OpResult> Count(const Template& t, const OpSpec& op, const Query& q) = 0;
  virtual Result<OpResult> Update(const Template& t, const OpSpec& op, const Payload& p) = 0;
  virtual Result<OpResult> Delete(const Template& t, const OpSpec& op, const Payload& p) = 0;
  virtual Result<OpResult> Call(const Template& t, const OpSpec& op, const Payload& p) = 0;
  // Creates every payload whose key is not stored yet and skips the others (CONFLICT is not an
  // error here), in one transaction where the engine has them: the log store's batch writes.
  // `count` = how many were created. The default calls Create for each.
  virtual Result<OpResult> CreateMany(const Template& t, const OpSpec& op,
                                      const std::vector<Payload>& payloads);
  // CreateMany for documents already in a REC template's client form (field → JSON value, the
  // key included, values of the declared types): the log store builds them straight from events,
  // without the Payload a client's create goes through. A REC core still refuses unsafe JSON keys
  // and oversized documents. The default validates each as a create payload, then CreateMany.
  virtual Result<OpResult> CreateDocuments(const Template& t, const OpSpec& op,
                                           std::vector<boost::json::object> documents);
  // Applies `writes` in order with one result each, every one as if it ran alone (its own answer,
  // its own exactly-once record), but committed together where the engine can: MariaDB runs
  // consecutive exactly-once writes in one transaction and records them all in one round trip.
  // The default runs each alone (ApplyWrite).
  virtual std::vector<Result<OpResult>> ApplyWrites(std::vector<Write>& writes);
  // Applies every write or none, in one transaction (an atomic batch), with one result each. The
  // writes' exactly-once records commit with them, so the batch applies exactly once as a whole:
  // sent again, it is answered from the records (every result replayed). The default refuses:
  // only the REL engine holds several writes in one transaction.
  virtual std::expected<std::vector<OpResult>, WriteFailure> ApplyAtomically(
      std::vector<Write>& writes);
  // Called once per template at IPL: a REC engine creates the collection and its indexes when
  // missing (never dropping anything). REL objects belong to the DBA; bind-checking is separate.
  virtual Result<void> Prepare(const Template&) { return Ok(); }
  // Deletes up to `batch` exactly-once records whose time is up; how many went. Engines without
  // records answer 0.
  virtual Result<int64_t> SweepOnce(int64_t /*batch*/) { return int64_t{0}; }
};

// Runs one write alone: Create, Update, Delete or Call, as its kind says.
Result<OpResult> ApplyWrite(NamasteCore& core, const Write& write);

// Maps a template's `database` to the adapter that serves it. The node registers one maker per
// configured database (the engine is chosen there, from config); each worker then holds a
// Session that creates its own adapter instances on first use. Makers are called from worker
// threads and must be thread-safe; registration happens before the workers start.
class CoreFactory {
 public:
  using Maker = std::function<std::unique_ptr<NamasteCore>()>;

  void Register(std::string database, Maker maker);

  // One worker's adapters, created lazily, owned by that worker's thread.
  class Session {
   public:
    explicit Session(std::shared_ptr<const CoreFactory> factory) : factory_(std::move(factory)) {}
    // nullptr when no maker is registered for the template's database.
    NamasteCore* For(const Template& t);

   private:
    std::shared_ptr<const CoreFactory> factory_;
    std::map<std::string, std::unique_ptr<NamasteCore>, std::less<>> cores_;
  };

 private:
  std::map<std::string, Maker, std::less<>> makers_;
};

}  // namespace beds
