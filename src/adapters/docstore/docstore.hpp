// The REC data path: NamasteCore over a document-store Engine. The engines (adapters/sqlite,
// adapters/mongodb) store and query documents; everything they must agree on lives here, so one
// template behaves the same on both:
//  - a document is the template's declared fields in client form (JSON types only: datetimes as
//    ISO 8601 "2026-11-24T17:07:20.123Z" with millisecond precision, decimals as strings, bytes as
//    base64), keyed by the key field;
//  - create takes the key from the client or generates a UUIDv7; a duplicate is CONFLICT;
//  - update sets only the fields given (null stores null) and answers the document after it;
//  - update and delete of a missing id are NOT_FOUND;
//  - fetch orders by the requested fields, then by the key, so paging is stable;
//  - json values may not hold keys that start with '$' or contain '.', and a document over
//    max_document_bytes is TOO_LARGE, before any engine is called.
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "core/namaste.hpp"
#include "core/template.hpp"

namespace beds::adapters::docstore {

// A document in client form: field name → JSON value, key field included.
using Document = boost::json::object;

// One filter with its values in client form (see ClientValue).
struct DocFilter {
  const FieldSpec* field = nullptr;
  bool is_key = false;
  Filter::Op op = Filter::Op::kEq;
  std::vector<boost::json::value> values;
};

struct DocQuery {
  std::vector<DocFilter> filters;                        // ANDed
  std::vector<std::pair<const FieldSpec*, bool>> order;  // field, descending; the key comes last
  int64_t limit = 0;                                     // 0 = no limit (count)
  int64_t offset = 0;
  int64_t deadline_ms = 0;
};

// One worker's handle on a document store. Not thread-safe: each worker has its own.
class Engine {
 public:
  virtual ~Engine() = default;
  // Creates the collection and the declared indexes when missing; never drops anything.
  virtual Result<void> Ensure(const Template& t) = 0;
  // CONFLICT when a document with this key exists.
  virtual Result<void> Insert(const Template& t, const boost::json::value& key, const Document& doc,
                              int64_t deadline_ms) = 0;
  virtual Result<std::vector<Document>> Find(const Template& t, const DocQuery& q) = 0;
  virtual Result<int64_t> Count(const Template& t, const DocQuery& q) = 0;
  // Inserts every document whose key is not stored yet, in one transaction where the engine has
  // them; documents with a stored key are skipped (a redelivered batch stores nothing twice).
  // Returns how many were inserted. The default inserts one by one.
  struct Keyed {
    boost::json::value key;
    Document doc;
    std::string text;  // `doc` serialized, as the core measured it (an engine may store it)
  };
  virtual Result<int64_t> InsertMany(const Template& t, const std::vector<Keyed>& docs,
                                     int64_t deadline_ms);
  // Sets the fields of `set` (never the key); the document after the change, or NOT_FOUND.
  virtual Result<Document> Update(const Template& t, const boost::json::value& key,
                                  const Document& set, int64_t deadline_ms) = 0;
  // NOT_FOUND when no document has this key.
  virtual Result<void> Remove(const Template& t, const boost::json::value& key,
                              int64_t deadline_ms) = 0;

  // Exactly-once (core/once.hpp): the recorded reply of `once` (replayed), CONFLICT when it was
  // recorded with another digest, else `apply` (one Insert, Update or Remove) with the reply
  // recorded in the same transaction. The default applies without a record: at least once.
  virtual Result<OpResult> ApplyOnce(const WriteOnce& once, int64_t deadline_ms,
                                     const std::function<Result<OpResult>()>& apply);
  // Deletes up to `batch` expired records; how many went.
  virtual Result<int64_t> SweepOnce(int64_t /*batch*/) { return int64_t{0}; }
  // False: ApplyOnce is the default (writes apply at least once on this engine).
  virtual bool AppliesOnce() const { return false; }
};

struct Limits {
  int64_t max_document_bytes = 16 * 1024 * 1024;  // the serialized client-form document
};

// The NamasteCore a REC database's workers use.
std::unique_ptr<NamasteCore> MakeCore(std::unique_ptr<Engine> engine, Limits limits);

// A validated Value in client form (null → JSON null).
boost::json::value ClientValue(const Value& v);

// "2026-11-24 17:07:20.123456" (NormalizeDatetime's form) → "2026-11-24T17:07:20.123Z".
std::string CanonicalDatetime(std::string_view normalized);

// Canonical datetime → Unix milliseconds (for engines with a native date type); back with
// IsoTimeMs (core/clock.hpp).
std::optional<int64_t> DatetimeToUnixMs(std::string_view canonical);

// A new UUIDv7 in its 36-character form, e.g. "0192f0c4-e1b8-7a3c-9d2e-4f60718293a4".
std::string NewDocumentId();

}  // namespace beds::adapters::docstore
