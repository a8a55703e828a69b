#include "adapters/mongodb/mongodb.hpp"

#include <bson/bson.h>
#include <mongoc/mongoc.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "adapters/docstore/docstore.hpp"
#include "core/lineage.hpp"
#include "core/once.hpp"
#include "core/validate.hpp"

namespace beds::adapters::mongodb {
namespace json = boost::json;
using docstore::DocFilter;
using docstore::DocQuery;
using docstore::Document;

namespace {

// mongoc_init once per process, before the first pool; mongoc_cleanup at exit.
void InitDriver() {
  static struct Driver {
    Driver() { mongoc_init(); }
    ~Driver() { mongoc_cleanup(); }
  } driver;
}

// Owned BSON document on the stack.
struct Bson {
  bson_t b;
  Bson() { bson_init(&b); }
  ~Bson() { bson_destroy(&b); }
  Bson(const Bson&) = delete;
  Bson& operator=(const Bson&) = delete;
  bson_t* get() { return &b; }
};

// True when an insert's reply lists write errors and every one is a duplicate key (11000), with
// no write concern error.
bool OnlyDuplicateKeys(const bson_t* reply) {
  bson_iter_t it, errors;
  if (bson_iter_init_find(&it, reply, "writeConcernErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
      bson_iter_recurse(&it, &errors) && bson_iter_next(&errors)) {
    return false;
  }
  if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
      !bson_iter_recurse(&it, &errors)) {
    return false;
  }
  bool any = false;
  while (bson_iter_next(&errors)) {
    bson_iter_t e;
    if (!BSON_ITER_HOLDS_DOCUMENT(&errors) || !bson_iter_recurse(&errors, &e) ||
        !bson_iter_find(&e, "code") || bson_iter_as_int64(&e) != 11000) {
      return false;
    }
    any = true;
  }
  return any;
}

// ---- client form ↔ BSON ----

void AppendJson(bson_t* b, const std::string& key, const json::value& v) {
  const char* k = key.c_str();
  const int n = static_cast<int>(key.size());
  switch (v.kind()) {
    case json::kind::null:
      bson_append_null(b, k, n);
      break;
    case json::kind::bool_:
      bson_append_bool(b, k, n, v.get_bool());
      break;
    case json::kind::int64:
      bson_append_int64(b, k, n, v.get_int64());
      break;
    case json::kind::uint64:
      // Above INT64_MAX there is no BSON integer; keep the value as a double.
      bson_append_double(b, k, n, static_cast<double>(v.get_uint64()));
      break;
    case json::kind::double_:
      bson_append_double(b, k, n, v.get_double());
      break;
    case json::kind::string: {
      const auto& s = v.get_string();
      bson_append_utf8(b, k, n, s.data(), static_cast<int>(s.size()));
      break;
    }
    case json::kind::array: {
      bson_t child;
      bson_append_array_begin(b, k, n, &child);
      size_t i = 0;
      for (const auto& item : v.get_array()) AppendJson(&child, std::to_string(i++), item);
      bson_append_array_end(b, &child);
      break;
    }
    case json::kind::object: {
      bson_t child;
      bson_append_document_begin(b, k, n, &child);
      for (const auto& [ck, cv] : v.get_object()) AppendJson(&child, std::string(ck), cv);
      bson_append_document_end(b, &child);
      break;
    }
  }
}

// A field's client-form value in its native BSON type.
void AppendField(bson_t* b, const std::string& key, const FieldSpec& f, const json::value& v) {
  const int n = static_cast<int>(key.size());
  if (v.is_string()) {
    const std::string s(v.get_string());
    switch (f.type) {
      case FieldType::kDatetime:
        if (auto ms = docstore::DatetimeToUnixMs(s)) {
          bson_append_date_time(b, key.c_str(), n, *ms);
          return;
        }
        break;
      case FieldType::kDecimal: {
        bson_decimal128_t d;
        if (bson_decimal128_from_string(s.c_str(), &d)) {
          bson_append_decimal128(b, key.c_str(), n, &d);
          return;
        }
        break;
      }
      case FieldType::kBytes:
        if (auto raw = Base64Decode(s)) {
          bson_append_binary(b, key.c_str(), n, BSON_SUBTYPE_BINARY,
                             reinterpret_cast<const uint8_t*>(raw->data()),
                             static_cast<uint32_t>(raw->size()));
          return;
        }
        break;
      default:
        break;
    }
  }
  AppendJson(b, key, v);
}

json::value ToJson(bson_iter_t* it);

json::object ObjectFromIter(bson_iter_t* child) {
  json::object o;
  while (bson_iter_next(child)) o[bson_iter_key(child)] = ToJson(child);
  return o;
}

json::value ToJson(bson_iter_t* it) {
  switch (bson_iter_type(it)) {
    case BSON_TYPE_DOUBLE:
      return bson_iter_double(it);
    case BSON_TYPE_UTF8: {
      uint32_t len = 0;
      const char* s = bson_iter_utf8(it, &len);
      return json::string(std::string_view(s, len));
    }
    case BSON_TYPE_DOCUMENT: {
      bson_iter_t child;
      if (!bson_iter_recurse(it, &child)) return nullptr;
      return ObjectFromIter(&child);
    }
    case BSON_TYPE_ARRAY: {
      bson_iter_t child;
      json::array a;
      if (bson_iter_recurse(it, &child)) {
        while (bson_iter_next(&child)) a.push_back(ToJson(&child));
      }
      return a;
    }
    case BSON_TYPE_BINARY: {
      bson_subtype_t subtype;
      uint32_t len = 0;
      const uint8_t* data = nullptr;
      bson_iter_binary(it, &subtype, &len, &data);
      return json::string(Base64Encode(std::string_view(reinterpret_cast<const char*>(data), len)));
    }
    case BSON_TYPE_OID: {
      char hex[25];
      bson_oid_to_string(bson_iter_oid(it), hex);
      return json::string(hex);
    }
    case BSON_TYPE_BOOL:
      return bson_iter_bool(it);
    case BSON_TYPE_DATE_TIME:
      return json::string(IsoTimeMs(bson_iter_date_time(it)));
    case BSON_TYPE_INT32:
      return static_cast<int64_t>(bson_iter_int32(it));
    case BSON_TYPE_INT64:
      return bson_iter_int64(it);
    case BSON_TYPE_DECIMAL128: {
      bson_decimal128_t d;
      char text[BSON_DECIMAL128_STRING];
      bson_iter_decimal128(it, &d);
      bson_decimal128_to_string(&d, text);
      return json::string(text);
    }
    default:
      return nullptr;  // engine types with no JSON form never reach a client
  }
}

// A stored document in client form: the declared fields only, `_id` as the key field.
Document FromBson(const Template& t, const bson_t* doc) {
  std::map<std::string, json::value, std::less<>> present;
  bson_iter_t it;
  if (bson_iter_init(&it, doc)) {
    while (bson_iter_next(&it)) present[bson_iter_key(&it)] = ToJson(&it);
  }
  Document out;
  for (const auto& f : t.fields) {
    auto p = present.find(f.key ? "_id" : f.name);
    if (p != present.end()) out[f.name] = std::move(p->second);
  }
  return out;
}

std::string FieldKey(const FieldSpec& f) { return f.key ? "_id" : f.name; }

// {"_id": {"$eq": key}}: like every filter, the value under an explicit operator.
void AppendKeyMatch(bson_t* b, const Template& t, const json::value& key) {
  bson_t eq;
  bson_append_document_begin(b, "_id", 3, &eq);
  AppendField(&eq, "$eq", *t.Key(), key);
  bson_append_document_end(b, &eq);
}

const char* OpName(Filter::Op op) {
  switch (op) {
    case Filter::Op::kGt:
      return "$gt";
    case Filter::Op::kGte:
      return "$gte";
    case Filter::Op::kLt:
      return "$lt";
    case Filter::Op::kLte:
      return "$lte";
    case Filter::Op::kIn:
      return "$in";
    case Filter::Op::kEq:
      break;
  }
  return "$eq";
}

// {"field": {"$op": value, …}, …}: one entry per field, every value under an explicit operator.
void AppendFilter(bson_t* filter, const DocQuery& q) {
  std::vector<const FieldSpec*> fields;
  for (const auto& f : q.filters) {
    if (std::find(fields.begin(), fields.end(), f.field) == fields.end()) fields.push_back(f.field);
  }
  for (const FieldSpec* field : fields) {
    const std::string key = FieldKey(*field);
    bson_t ops;
    bson_append_document_begin(filter, key.c_str(), static_cast<int>(key.size()), &ops);
    for (const DocFilter& f : q.filters) {
      if (f.field != field) continue;
      if (f.op == Filter::Op::kIn) {
        bson_t list;
        bson_append_array_begin(&ops, "$in", 3, &list);
        size_t i = 0;
        for (const auto& v : f.values) AppendField(&list, std::to_string(i++), *field, v);
        bson_append_array_end(&ops, &list);
      } else {
        AppendField(&ops, OpName(f.op), *field, f.values[0]);
      }
    }
    bson_append_document_end(filter, &ops);
  }
}

}  // namespace

class Store {
 public:
  Store(config::DatabaseSettings s, int pool_size) : settings_(std::move(s)) {
    InitDriver();
    bson_error_t error;
    mongoc_uri_t* uri = mongoc_uri_new_with_error(settings_.uri.c_str(), &error);
    if (!uri) {
      problem_ = "database '" + settings_.name + "': the uri is not valid: " + error.message;
      return;
    }
    // Defaults from our settings unless the URI sets them: how long to look for a server, how
    // long a connection may take, how long a socket may stay silent.
    auto set_default = [&](const char* option, int64_t ms) {
      if (!mongoc_uri_has_option(uri, option)) {
        mongoc_uri_set_option_as_int32(uri, option, static_cast<int32_t>(ms));
      }
    };
    set_default(MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
                std::max<int64_t>(settings_.reconnect_wait_ms, 1));
    set_default(MONGOC_URI_CONNECTTIMEOUTMS,
                std::clamp<int64_t>(settings_.reconnect_wait_ms, 1, 10000));
    // maxTimeMS ends a slow operation on the server; the socket timeout only covers a server
    // gone silent, and the driver retries a read once, so the margin stays small.
    set_default(MONGOC_URI_SOCKETTIMEOUTMS, settings_.query_timeout_ms + 1000);
    const char* db = mongoc_uri_get_database(uri);
    database_ = db && *db ? db : "beds";
    pool_ = mongoc_client_pool_new_with_error(uri, &error);
    mongoc_uri_destroy(uri);
    if (!pool_) {
      problem_ = "database '" + settings_.name + "': " + error.message;
      return;
    }
    mongoc_client_pool_set_error_api(pool_, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_set_appname(pool_, "beds");
    mongoc_client_pool_max_size(pool_, static_cast<uint32_t>(std::max(pool_size, 1)));
    write_concern_ = mongoc_write_concern_new();
    if (settings_.write_concern == "majority") {
      mongoc_write_concern_set_wmajority(write_concern_,
                                         static_cast<int32_t>(settings_.query_timeout_ms));
    } else {
      mongoc_write_concern_set_w(write_concern_, std::stoi(settings_.write_concern));
      mongoc_write_concern_set_wtimeout_int64(write_concern_, settings_.query_timeout_ms);
    }
  }
  ~Store() {
    if (write_concern_) mongoc_write_concern_destroy(write_concern_);
    if (pool_) mongoc_client_pool_destroy(pool_);
  }
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const config::DatabaseSettings& settings() const { return settings_; }
  const std::string& problem() const { return problem_; }
  const std::string& database() const { return database_; }
  mongoc_client_pool_t* pool() const { return pool_; }
  const mongoc_write_concern_t* write_concern() const { return write_concern_; }

  // The exactly-once records' collection has its expiry index (created by the first write that
  // needs it, then never asked again).
  std::atomic<bool> records_indexed{false};
  // Told once: this deployment has no transactions (see MongoEngine::ApplyClaimed).
  std::atomic<bool> told_no_transactions{false};

 private:
  config::DatabaseSettings settings_;
  std::string problem_;  // non-empty: no pool (bad URI)
  std::string database_;
  mongoc_client_pool_t* pool_ = nullptr;
  mongoc_write_concern_t* write_concern_ = nullptr;
};

namespace {

// A client for one operation, and a collection on it: taken from the pool and given back, or
// borrowed (the client of the exactly-once transaction the operation joins).
class Lease {
 public:
  Lease(const Store& store, const std::string& collection, mongoc_client_t* borrowed = nullptr)
      : pool_(borrowed ? nullptr : store.pool()),
        client_(borrowed ? borrowed : mongoc_client_pool_pop(pool_)) {
    collection_ =
        mongoc_client_get_collection(client_, store.database().c_str(), collection.c_str());
  }
  ~Lease() {
    mongoc_collection_destroy(collection_);
    if (pool_) mongoc_client_pool_push(pool_, client_);
  }
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;
  mongoc_collection_t* collection() { return collection_; }
  mongoc_client_t* client() { return client_; }

 private:
  mongoc_client_pool_t* pool_;
  mongoc_client_t* client_;
  mongoc_collection_t* collection_ = nullptr;
};

bool IsNotPrimary(uint32_t code) {
  switch (code) {
    case 91:     // ShutdownInProgress
    case 189:    // PrimarySteppedDown
    case 10107:  // NotWritablePrimary
    case 11600:  // InterruptedAtShutdown
    case 11602:  // InterruptedDueToReplStateChange
    case 13435:  // NotPrimaryNoSecondaryOk
    case 13436:  // NotPrimaryOrSecondary
      return true;
    default:
      return false;
  }
}

class MongoEngine final : public docstore::Engine {
 public:
  explicit MongoEngine(std::shared_ptr<Store> store) : store_(std::move(store)) {}

  Result<void> Ensure(const Template& t) override {
    if (auto r = Usable(); !r) return r;
    Lease lease(*store_, t.collection);
    Bson cmd, opts, reply;
    bson_error_t error;
    mongoc_write_concern_append(const_cast<mongoc_write_concern_t*>(store_->write_concern()),
                                opts.get());
    if (t.indexes.empty()) {
      BSON_APPEND_UTF8(cmd.get(), "create", t.collection.c_str());
    } else {
      BSON_APPEND_UTF8(cmd.get(), "createIndexes", t.collection.c_str());
      bson_t list;
      BSON_APPEND_ARRAY_BEGIN(cmd.get(), "indexes", &list);
      size_t i = 0;
      for (const auto& index : t.indexes) {
        bson_t spec, keys;
        const std::string n = std::to_string(i++);
        BSON_APPEND_DOCUMENT_BEGIN(&list, n.c_str(), &spec);
        BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &keys);
        for (const auto& name : index.fields) {
          const bool desc = name.starts_with('-');
          const std::string key = FieldKey(*t.Field(desc ? name.substr(1) : name));
          BSON_APPEND_INT32(&keys, key.c_str(), desc ? -1 : 1);
        }
        bson_append_document_end(&spec, &keys);
        BSON_APPEND_UTF8(&spec, "name", index.name.c_str());
        if (index.expire_after_s) {
          BSON_APPEND_INT64(&spec, "expireAfterSeconds", *index.expire_after_s);
        }
        bson_append_document_end(&list, &spec);
      }
      bson_append_array_end(cmd.get(), &list);
    }
    mongoc_database_t* db = mongoc_client_get_database(lease.client(), store_->database().c_str());
    const bool ok =
        mongoc_database_write_command_with_opts(db, cmd.get(), opts.get(), reply.get(), &error);
    mongoc_database_destroy(db);
    constexpr uint32_t kNamespaceExists = 48;
    if (!ok && !(t.indexes.empty() && error.code == kNamespaceExists)) {
      return std::unexpected(Classify(error, "ensure of collection " + t.collection, false, 0));
    }
    return Ok();
  }

  // The document as stored: its declared fields, the key as _id.
  static void AppendDocument(bson_t* b, const Template& t, const json::value& key,
                             const Document& doc) {
    for (const auto& f : t.fields) {
      auto it = doc.find(f.name);
      if (it == doc.end()) continue;
      AppendField(b, FieldKey(f), f, f.key ? key : it->value());
    }
  }

  Result<void> Insert(const Template& t, const json::value& key, const Document& doc,
                      int64_t deadline_ms) override {
    if (auto r = Ready(deadline_ms); !r) return std::unexpected(r.error());
    Bson bdoc, opts, reply;
    AppendDocument(bdoc.get(), t, key, doc);
    if (auto joined = WriteOptions(opts.get()); !joined) return std::unexpected(joined.error());
    Lease lease(*store_, t.collection, Borrowed());
    bson_error_t error;
    if (!mongoc_collection_insert_one(lease.collection(), bdoc.get(), opts.get(), reply.get(),
                                      &error)) {
      NoteTransient(reply.get());
      NoteTransient(reply.get());
      return std::unexpected(Classify(error, "create", true, deadline_ms, &t));
    }
    return Ok();
  }

  // One unordered insert command for the batch (the log store's), with the write concern; a
  // document whose key is stored already (a redelivered batch) fails alone with a duplicate key
  // error, which is what "skipped" means here. Any other write error fails the batch.
  Result<int64_t> InsertMany(const Template& t, const std::vector<Keyed>& docs,
                             int64_t deadline_ms) override {
    if (docs.empty()) return 0;
    if (auto r = Ready(deadline_ms); !r) return std::unexpected(r.error());
    std::vector<std::unique_ptr<Bson>> bdocs;
    bdocs.reserve(docs.size());
    // (A plain array: bson_t's alignment attribute would be dropped as a template argument.)
    const std::unique_ptr<void, decltype(&bson_free)> array(
        bson_malloc0(docs.size() * sizeof(const bson_t*)), &bson_free);
    auto** ptrs = static_cast<const bson_t**>(array.get());
    for (const Keyed& d : docs) {
      auto bdoc = std::make_unique<Bson>();
      AppendDocument(bdoc->get(), t, d.key, d.doc);
      ptrs[bdocs.size()] = bdoc->get();
      bdocs.push_back(std::move(bdoc));
    }
    Bson opts, reply;
    BSON_APPEND_BOOL(opts.get(), "ordered", false);
    if (auto joined = WriteOptions(opts.get()); !joined) return std::unexpected(joined.error());
    Lease lease(*store_, t.collection, Borrowed());
    bson_error_t error;
    const bool ok = mongoc_collection_insert_many(lease.collection(), ptrs, docs.size(), opts.get(),
                                                  reply.get(), &error);
    bson_iter_t it;
    const int64_t inserted =
        bson_iter_init_find(&it, reply.get(), "insertedCount") && BSON_ITER_HOLDS_NUMBER(&it)
            ? bson_iter_as_int64(&it)
            : 0;
    if (ok) return inserted;
    if (OnlyDuplicateKeys(reply.get())) return inserted;
    return std::unexpected(Classify(error, "create", true, deadline_ms, &t));
  }

  Result<std::vector<Document>> Find(const Template& t, const DocQuery& q) override {
    auto max_ms = Ready(q.deadline_ms);
    if (!max_ms) return std::unexpected(max_ms.error());
    Bson filter, opts;
    AppendFilter(filter.get(), q);
    bson_t sort;
    BSON_APPEND_DOCUMENT_BEGIN(opts.get(), "sort", &sort);
    for (const auto& [f, desc] : q.order) {
      const std::string key = FieldKey(*f);
      BSON_APPEND_INT32(&sort, key.c_str(), desc ? -1 : 1);
    }
    bson_append_document_end(opts.get(), &sort);
    if (q.limit > 0) BSON_APPEND_INT64(opts.get(), "limit", q.limit);
    if (q.offset > 0) BSON_APPEND_INT64(opts.get(), "skip", q.offset);
    BSON_APPEND_INT64(opts.get(), "maxTimeMS", *max_ms);
    Lease lease(*store_, t.collection);
    mongoc_cursor_t* cursor =
        mongoc_collection_find_with_opts(lease.collection(), filter.get(), opts.get(), nullptr);
    std::vector<Document> docs;
    const bson_t* doc = nullptr;
    while (mongoc_cursor_next(cursor, &doc)) docs.push_back(FromBson(t, doc));
    bson_error_t error;
    const bool failed = mongoc_cursor_error(cursor, &error);
    mongoc_cursor_destroy(cursor);
    if (failed) return std::unexpected(Classify(error, "fetch", false, q.deadline_ms));
    return docs;
  }

  Result<int64_t> Count(const Template& t, const DocQuery& q) override {
    auto max_ms = Ready(q.deadline_ms);
    if (!max_ms) return std::unexpected(max_ms.error());
    Bson filter, opts, reply;
    AppendFilter(filter.get(), q);
    BSON_APPEND_INT64(opts.get(), "maxTimeMS", *max_ms);
    Lease lease(*store_, t.collection);
    bson_error_t error;
    const int64_t n = mongoc_collection_count_documents(lease.collection(), filter.get(),
                                                        opts.get(), nullptr, reply.get(), &error);
    if (n < 0) return std::unexpected(Classify(error, "count", false, q.deadline_ms));
    return n;
  }

  Result<Document> Update(const Template& t, const json::value& key, const Document& set,
                          int64_t deadline_ms) override {
    auto max_ms = Ready(deadline_ms);
    if (!max_ms) return std::unexpected(max_ms.error());
    Bson query, update, extra, reply;
    AppendKeyMatch(query.get(), t, key);
    bson_t fields;
    BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$set", &fields);
    for (const auto& [name, v] : set) {
      const std::string n(name);
      AppendField(&fields, n, *t.Field(n), v);
    }
    bson_append_document_end(update.get(), &fields);
    if (auto joined = WriteOptions(extra.get()); !joined) return std::unexpected(joined.error());
    BSON_APPEND_INT64(extra.get(), "maxTimeMS", *max_ms);
    mongoc_find_and_modify_opts_t* opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(opts, update.get());
    mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    mongoc_find_and_modify_opts_append(opts, extra.get());
    Lease lease(*store_, t.collection, Borrowed());
    bson_error_t error;
    const bool ok = mongoc_collection_find_and_modify_with_opts(lease.collection(), query.get(),
                                                                opts, reply.get(), &error);
    mongoc_find_and_modify_opts_destroy(opts);
    if (!ok) {
      NoteTransient(reply.get());
      return std::unexpected(Classify(error, "update", true, deadline_ms));
    }
    bson_iter_t it;
    if (!bson_iter_init_find(&it, reply.get(), "value") || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
      return Fail(Code::kNotFound, "no " + t.name + " document has this " + t.Key()->name);
    }
    uint32_t len = 0;
    const uint8_t* data = nullptr;
    bson_iter_document(&it, &len, &data);
    bson_t value;
    if (!bson_init_static(&value, data, len)) {
      return Fail(Code::kInternal, "the update's reply could not be read");
    }
    return FromBson(t, &value);
  }

  Result<void> Remove(const Template& t, const json::value& key, int64_t deadline_ms) override {
    if (auto r = Ready(deadline_ms); !r) return std::unexpected(r.error());
    Bson selector, opts, reply;
    AppendKeyMatch(selector.get(), t, key);
    if (auto joined = WriteOptions(opts.get()); !joined) return std::unexpected(joined.error());
    Lease lease(*store_, t.collection, Borrowed());
    bson_error_t error;
    if (!mongoc_collection_delete_one(lease.collection(), selector.get(), opts.get(), reply.get(),
                                      &error)) {
      NoteTransient(reply.get());
      return std::unexpected(Classify(error, "delete", true, deadline_ms));
    }
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply.get(), "deletedCount") && bson_iter_as_int64(&it) == 0) {
      return Fail(Code::kNotFound, "no " + t.name + " document has this " + t.Key()->name);
    }
    return Ok();
  }

  // Exactly-once (docs/templates.md "Writes apply exactly once"). Each write's record is a
  // document of the store's `beds_idempotency` collection: _id = the identity (binary), digest,
  // state ("pending" or "done"), the recorded reply, claimed_at, and expires_at, which a TTL
  // index makes MongoDB delete after [idempotency] ttl_s (so SweepOnce has nothing to do). On a
  // replica set or mongos the record and the effect commit in one transaction; a standalone
  // server has none, so the record is claimed before the effect and completed after it.
  bool AppliesOnce() const override { return true; }

  Result<OpResult> ApplyOnce(const WriteOnce& once, int64_t deadline_ms,
                             const std::function<Result<OpResult>()>& apply) override {
    if (auto r = Ready(deadline_ms); !r) return std::unexpected(r.error());
    if (auto r = IndexRecords(); !r) return std::unexpected(r.error());
    auto transactions = HasTransactions();
    if (!transactions) return std::unexpected(transactions.error());
    if (*transactions) return ApplyInTransaction(once, deadline_ms, apply);
    if (!store_->told_no_transactions.exchange(true)) {
      spdlog::warn(
          "MongoDB database '{}' is a standalone server (no transactions): exactly-once writes "
          "claim their record before the effect and complete it after, so a node that dies "
          "between the two leaves the write pending; after {} ms a repeat applies it again",
          store_->settings().name, ClaimLeaseMs());
    }
    return ApplyClaimed(once, deadline_ms, apply);
  }

 private:
  static constexpr const char* kRecords = "beds_idempotency";

  // The client and session of the transaction a write joins (ApplyInTransaction), and whether
  // an error inside it was one that a new attempt of the whole transaction may not meet.
  struct Txn {
    mongoc_client_t* client = nullptr;
    mongoc_client_session_t* session = nullptr;
    bool transient = false;
  };
  Txn* txn_ = nullptr;

  mongoc_client_t* Borrowed() const { return txn_ ? txn_->client : nullptr; }

  // Inside the exactly-once transaction, an error the server labels TransientTransactionError
  // ends only this attempt (Classify then says nothing was applied).
  void NoteTransient(const bson_t* reply) const {
    if (txn_ && reply && mongoc_error_has_label(reply, "TransientTransactionError")) {
      txn_->transient = true;
    }
  }

  // A write's options: its session inside the exactly-once transaction (whose commit carries
  // the write concern), else the write concern. A write that cannot join its transaction is not
  // sent at all (outside it, it would apply whatever became of the transaction).
  Result<void> WriteOptions(bson_t* opts) const {
    if (txn_) {
      bson_error_t error;
      if (mongoc_client_session_append(txn_->session, opts, &error)) return Ok();
      spdlog::error("MongoDB: a write could not join its transaction: {}", error.message);
      return Fail(Code::kInternal, "the write could not join its transaction; nothing was applied");
    }
    mongoc_write_concern_append(const_cast<mongoc_write_concern_t*>(store_->write_concern()), opts);
    return Ok();
  }

  // How long a standalone server's pending record belongs to the attempt that claimed it: the
  // longest an attempt can take (a server selection and a write, twice over).
  int64_t ClaimLeaseMs() const {
    const auto& s = store_->settings();
    // (The driver's socket timeout is query_timeout_ms + 1 s, and it retries a write once.)
    return 2 * (s.reconnect_wait_ms + s.query_timeout_ms + 1000);
  }

  Result<void> IndexRecords() {
    if (store_->records_indexed.load()) return Ok();
    Lease lease(*store_, kRecords);
    Bson cmd, opts, reply;
    BSON_APPEND_UTF8(cmd.get(), "createIndexes", kRecords);
    bson_t list, spec, keys;
    BSON_APPEND_ARRAY_BEGIN(cmd.get(), "indexes", &list);
    BSON_APPEND_DOCUMENT_BEGIN(&list, "0", &spec);
    BSON_APPEND_DOCUMENT_BEGIN(&spec, "key", &keys);
    BSON_APPEND_INT32(&keys, "expires_at", 1);
    bson_append_document_end(&spec, &keys);
    BSON_APPEND_UTF8(&spec, "name", "beds_expires");
    BSON_APPEND_INT64(&spec, "expireAfterSeconds", 0);
    bson_append_document_end(&list, &spec);
    bson_append_array_end(cmd.get(), &list);
    mongoc_write_concern_append(const_cast<mongoc_write_concern_t*>(store_->write_concern()),
                                opts.get());
    mongoc_database_t* db = mongoc_client_get_database(lease.client(), store_->database().c_str());
    bson_error_t error;
    const bool ok =
        mongoc_database_write_command_with_opts(db, cmd.get(), opts.get(), reply.get(), &error);
    mongoc_database_destroy(db);
    if (!ok) return std::unexpected(Classify(error, "exactly-once record's index", false, 0));
    store_->records_indexed = true;
    return Ok();
  }

  // Transactions need sessions (logicalSessionTimeoutMinutes in the server's hello) and a
  // replica-set primary of wire version 7 (MongoDB 4.0) or a mongos of 8 (4.2). Read from the
  // driver's view of the topology: no command is sent for it.
  Result<bool> HasTransactions() {
    Lease lease(*store_, kRecords);
    bson_error_t error;
    mongoc_server_description_t* sd =
        mongoc_client_select_server(lease.client(), true, nullptr, &error);
    if (!sd) return std::unexpected(Classify(error, "exactly-once write", false, 0));
    const std::string type = mongoc_server_description_type(sd);
    const bson_t* hello = mongoc_server_description_hello_response(sd);
    bson_iter_t it;
    const int64_t wire =
        bson_iter_init_find(&it, hello, "maxWireVersion") ? bson_iter_as_int64(&it) : 0;
    const bool sessions = bson_iter_init_find(&it, hello, "logicalSessionTimeoutMinutes");
    mongoc_server_description_destroy(sd);
    return sessions && ((type == "RSPrimary" && wire >= 7) || (type == "Mongos" && wire >= 8));
  }

  struct Record {
    std::string digest;
    std::string state;
    std::string reply;
    int64_t claimed_at = 0;  // Unix ms
  };

  static void AppendIdentity(bson_t* b, const char* key, const std::string& bytes) {
    bson_append_binary(b, key, -1, BSON_SUBTYPE_BINARY,
                       reinterpret_cast<const uint8_t*>(bytes.data()),
                       static_cast<uint32_t>(bytes.size()));
  }

  static std::string BinaryOf(bson_iter_t* it) {
    if (!BSON_ITER_HOLDS_BINARY(it)) return {};
    bson_subtype_t subtype;
    uint32_t len = 0;
    const uint8_t* data = nullptr;
    bson_iter_binary(it, &subtype, &len, &data);
    return std::string(reinterpret_cast<const char*>(data), len);
  }

  // The record of `once`, read in `session` when given.
  Result<std::optional<Record>> FindRecord(mongoc_client_t* client, const WriteOnce& once,
                                           mongoc_client_session_t* session, int64_t deadline_ms) {
    auto max_ms = Ready(deadline_ms);
    if (!max_ms) return std::unexpected(max_ms.error());
    Bson filter, opts;
    bson_t eq;
    BSON_APPEND_DOCUMENT_BEGIN(filter.get(), "_id", &eq);
    AppendIdentity(&eq, "$eq", once.identity);
    bson_append_document_end(filter.get(), &eq);
    BSON_APPEND_INT64(opts.get(), "limit", 1);
    BSON_APPEND_INT64(opts.get(), "maxTimeMS", *max_ms);
    bson_error_t error;
    if (session && !mongoc_client_session_append(session, opts.get(), &error)) {
      return std::unexpected(Classify(error, "exactly-once lookup", false, deadline_ms));
    }
    Lease lease(*store_, kRecords, client);
    mongoc_cursor_t* cursor =
        mongoc_collection_find_with_opts(lease.collection(), filter.get(), opts.get(), nullptr);
    std::optional<Record> found;
    const bson_t* doc = nullptr;
    if (mongoc_cursor_next(cursor, &doc)) {
      Record r;
      bson_iter_t it;
      if (bson_iter_init_find(&it, doc, "digest")) r.digest = BinaryOf(&it);
      if (bson_iter_init_find(&it, doc, "state") && BSON_ITER_HOLDS_UTF8(&it)) {
        r.state = bson_iter_utf8(&it, nullptr);
      }
      if (bson_iter_init_find(&it, doc, "reply") && BSON_ITER_HOLDS_UTF8(&it)) {
        r.reply = bson_iter_utf8(&it, nullptr);
      }
      if (bson_iter_init_find(&it, doc, "claimed_at") && BSON_ITER_HOLDS_DATE_TIME(&it)) {
        r.claimed_at = bson_iter_date_time(&it);
      }
      found = std::move(r);
    }
    const bool failed = mongoc_cursor_error(cursor, &error);
    mongoc_cursor_destroy(cursor);
    if (failed) return std::unexpected(Classify(error, "exactly-once lookup", false, deadline_ms));
    return found;
  }

  // A recorded write's answer: its reply (replayed), or CONFLICT for another request.
  static Result<OpResult> Answer(const Record& r, const WriteOnce& once) {
    if (r.digest != once.digest) return std::unexpected(KeyReusedError());
    return DecodeRecordedReply(r.reply);
  }

  static Error BeingApplied() {
    return Error{Code::kUnavailable,
                 "this write is being applied by an earlier delivery of it; ask again (with its "
                 "idempotency key) for its reply",
                 true};
  }

  // Deletes the pending record of `once` inside the transaction of `session`.
  Result<void> RemoveClaim(mongoc_client_t* client, const WriteOnce& once,
                           mongoc_client_session_t* session, int64_t deadline_ms) {
    Bson selector, opts, reply;
    AppendIdentity(selector.get(), "_id", once.identity);
    BSON_APPEND_UTF8(selector.get(), "state", "pending");
    bson_error_t error;
    if (!mongoc_client_session_append(session, opts.get(), &error)) {
      return Fail(Code::kInternal, "the exactly-once record could not join its transaction");
    }
    Lease lease(*store_, kRecords, client);
    if (!mongoc_collection_delete_one(lease.collection(), selector.get(), opts.get(), reply.get(),
                                      &error)) {
      return std::unexpected(Classify(error, "exactly-once record", true, deadline_ms));
    }
    return Ok();
  }

  static Error NothingApplied(const std::string& why) {
    return Error{Code::kUnavailable,
                 "the write " + why +
                     "; nothing was applied, and sending it again (with its idempotency key) is "
                     "safe",
                 true};
  }

  // Lookup, effect and record in one transaction on one session. A transaction that meets a
  // write conflict (another attempt of the same write, or of another touching the same
  // document) is run again whole, a few times.
  Result<OpResult> ApplyInTransaction(const WriteOnce& once, int64_t deadline_ms,
                                      const std::function<Result<OpResult>()>& apply) {
    Lease lease(*store_, kRecords);
    for (int attempt = 0;; ++attempt) {
      bson_error_t error;
      std::unique_ptr<mongoc_client_session_t, decltype(&mongoc_client_session_destroy)> session(
          mongoc_client_start_session(lease.client(), nullptr, &error),
          &mongoc_client_session_destroy);  // aborts a transaction still open
      if (!session) return std::unexpected(Classify(error, "exactly-once write", false, 0));
      mongoc_transaction_opt_t* topts = mongoc_transaction_opts_new();
      mongoc_transaction_opts_set_write_concern(topts, store_->write_concern());
      const bool started = mongoc_client_session_start_transaction(session.get(), topts, &error);
      mongoc_transaction_opts_destroy(topts);
      if (!started) return std::unexpected(Classify(error, "exactly-once write", false, 0));

      Txn txn{lease.client(), session.get(), false};
      txn_ = &txn;
      struct Leave {
        Txn*& txn;
        ~Leave() { txn = nullptr; }
      } leave{txn_};
      std::optional<Result<OpResult>> answer;
      auto found = FindRecord(lease.client(), once, session.get(), deadline_ms);
      if (found && *found && (*found)->state == "pending") {
        // Claimed while this store had no transactions (it has become a replica set since): the
        // standalone rules hold for it, and a stale claim is removed here and the write applied.
        const Record& r = **found;
        if (r.digest != once.digest) {
          answer = std::unexpected(KeyReusedError());
        } else if (NowUnixMs() - r.claimed_at < ClaimLeaseMs()) {
          answer = std::unexpected(BeingApplied());
        } else if (auto removed = RemoveClaim(lease.client(), once, session.get(), deadline_ms);
                   !removed) {
          answer = std::unexpected(removed.error());
        } else {
          found = std::optional<Record>{};
        }
      }
      if (answer) {
        // decided above
      } else if (!found) {
        answer = std::unexpected(found.error());
      } else if (*found) {
        answer = Answer(**found, once);
      } else if (Result<OpResult> applied = apply(); !applied) {
        answer = std::move(applied);
      } else {
        Bson doc, opts, reply;
        AppendIdentity(doc.get(), "_id", once.identity);
        AppendIdentity(doc.get(), "digest", once.digest);
        BSON_APPEND_UTF8(doc.get(), "state", "done");
        const std::string recorded = EncodeRecordedReply(*applied);
        bson_append_utf8(doc.get(), "reply", 5, recorded.data(), static_cast<int>(recorded.size()));
        const int64_t now = NowUnixMs();
        BSON_APPEND_DATE_TIME(doc.get(), "claimed_at", now);
        BSON_APPEND_DATE_TIME(doc.get(), "expires_at", now + once.ttl_s * 1000);
        Lease records(*store_, kRecords, lease.client());
        if (auto joined = WriteOptions(opts.get()); !joined) {
          answer = std::unexpected(joined.error());
        } else if (!mongoc_collection_insert_one(records.collection(), doc.get(), opts.get(),
                                                 reply.get(), &error)) {
          answer = std::unexpected(Classify(error, "exactly-once record", true, deadline_ms));
        } else {
          Bson committed;
          if (mongoc_client_session_commit_transaction(session.get(), committed.get(), &error)) {
            return std::move(*applied);
          }
          if (mongoc_error_has_label(committed.get(), "TransientTransactionError")) {
            txn.transient = true;
            answer = std::unexpected(NothingApplied("met a conflicting write at its commit"));
          } else {
            // The commit's outcome is unknown (the driver has already tried it twice); the
            // record commits with the effect, so a repeat of this write finds out which.
            spdlog::warn("MongoDB database '{}': commit of an exactly-once write: {}",
                         store_->settings().name, error.message);
            return std::unexpected(
                Error{Code::kUnavailable,
                      "the write's commit was not confirmed (" + std::string(error.message) +
                          "); send it again with its idempotency key: its record answers if it "
                          "was applied, else it is applied then",
                      true});
          }
        }
      }
      if (txn.transient && attempt < 3) {
        // The session's end aborts this attempt; the next waits a little longer each time, so
        // repeats of one write racing each other do not meet again at once.
        std::this_thread::sleep_for(std::chrono::milliseconds(5 << attempt));
        continue;
      }
      return std::move(*answer);
    }
  }

  // No transactions: claim the record ("pending"), apply, complete it ("done" with the reply).
  // A repeat finds the record: done answers it; pending is another attempt under way (UNAVAILABLE,
  // retryable) until the claim is older than ClaimLeaseMs, when the attempt that claimed it is
  // taken to have died and the write is applied again. That is the window docs/templates.md
  // names: a node dying between its effect and completing the record.
  Result<OpResult> ApplyClaimed(const WriteOnce& once, int64_t deadline_ms,
                                const std::function<Result<OpResult>()>& apply) {
    const int64_t claimed_at = NowUnixMs();
    Bson claim, opts, reply;
    AppendIdentity(claim.get(), "_id", once.identity);
    AppendIdentity(claim.get(), "digest", once.digest);
    BSON_APPEND_UTF8(claim.get(), "state", "pending");
    BSON_APPEND_DATE_TIME(claim.get(), "claimed_at", claimed_at);
    BSON_APPEND_DATE_TIME(claim.get(), "expires_at", claimed_at + once.ttl_s * 1000);
    (void)WriteOptions(opts.get());  // no transaction here: the write concern
    bson_error_t error;
    bool claimed = false;
    {
      // Given back before the effect: the pool may have no second client for it.
      Lease lease(*store_, kRecords);
      claimed = mongoc_collection_insert_one(lease.collection(), claim.get(), opts.get(),
                                             reply.get(), &error);
    }
    if (!claimed) {
      if (error.code != 11000) {
        return std::unexpected(Classify(error, "exactly-once record", true, deadline_ms));
      }
      auto found = FindRecord(nullptr, once, nullptr, deadline_ms);
      if (!found) return std::unexpected(found.error());
      if (!*found) return std::unexpected(NothingApplied("met its record being removed"));
      const Record& r = **found;
      if (r.digest != once.digest || r.state == "done") return Answer(r, once);
      if (claimed_at - r.claimed_at < ClaimLeaseMs()) return std::unexpected(BeingApplied());
      // Take the stale claim over, unless another repeat did so first.
      if (auto took = SetRecord(once, r.claimed_at, claimed_at, nullptr, deadline_ms);
          !took || !*took) {
        return std::unexpected(NothingApplied("was taken over by another repeat of it"));
      }
      spdlog::warn(
          "MongoDB database '{}': an exactly-once write's record ({}) was left pending "
          "by an attempt that did not finish; applying it again",
          store_->settings().name, Hex(once.identity).substr(0, 16));
    }
    Result<OpResult> applied = apply();
    if (!applied) {
      // Nothing was applied (unless the outcome is unknown): let a repeat apply it.
      if (applied.error().retryable() || applied.error().code != Code::kUnavailable) {
        Bson selector, dopts, dreply;
        AppendClaimMatch(selector.get(), once, claimed_at);
        (void)WriteOptions(dopts.get());  // no transaction here: the write concern
        Lease lease(*store_, kRecords);
        if (!mongoc_collection_delete_one(lease.collection(), selector.get(), dopts.get(),
                                          dreply.get(), &error)) {
          spdlog::warn("MongoDB database '{}': an exactly-once claim was not released: {}",
                       store_->settings().name, error.message);
        }
      }
      return applied;
    }
    const std::string recorded = EncodeRecordedReply(*applied);
    // The effect is applied: completing its record is worth a few tries (without the request's
    // deadline, which must not leave the record pending).
    Result<bool> done = false;
    for (int attempt = 0; attempt < 3; ++attempt) {
      done = SetRecord(once, claimed_at, claimed_at, &recorded, 0);
      if (done) break;
    }
    if (!done || !*done) {
      // Applied, but a repeat within the lease is told to wait and one after it applies again.
      spdlog::warn("MongoDB database '{}': an applied write's record was not completed: {}",
                   store_->settings().name, done ? "it was taken over" : done.error().message);
    }
    return applied;
  }

  static void AppendClaimMatch(bson_t* b, const WriteOnce& once, int64_t claimed_at) {
    AppendIdentity(b, "_id", once.identity);
    BSON_APPEND_UTF8(b, "state", "pending");
    BSON_APPEND_DATE_TIME(b, "claimed_at", claimed_at);
  }

  // The pending record claimed at `was`: claimed again at `now`, or completed with `reply`.
  // False when it is no longer so (another attempt took it).
  Result<bool> SetRecord(const WriteOnce& once, int64_t was, int64_t now, const std::string* reply,
                         int64_t deadline_ms) {
    Bson selector, update, opts, result;
    AppendClaimMatch(selector.get(), once, was);
    bson_t set;
    BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$set", &set);
    if (reply) {
      BSON_APPEND_UTF8(&set, "state", "done");
      bson_append_utf8(&set, "reply", 5, reply->data(), static_cast<int>(reply->size()));
    } else {
      BSON_APPEND_DATE_TIME(&set, "claimed_at", now);
    }
    bson_append_document_end(update.get(), &set);
    (void)WriteOptions(opts.get());  // no transaction here: the write concern
    bson_error_t error;
    Lease lease(*store_, kRecords);
    if (!mongoc_collection_update_one(lease.collection(), selector.get(), update.get(), opts.get(),
                                      result.get(), &error)) {
      return std::unexpected(Classify(error, "exactly-once record", true, deadline_ms));
    }
    bson_iter_t it;
    return bson_iter_init_find(&it, result.get(), "matchedCount") && bson_iter_as_int64(&it) == 1;
  }

  Result<void> Usable() const {
    if (!store_->problem().empty()) return Fail(Code::kUnavailable, store_->problem());
    return Ok();
  }

  // The time the server may spend: the request's deadline or query_timeout_ms, whichever is
  // first. TIMEOUT when the deadline has already passed.
  Result<int64_t> Ready(int64_t deadline_ms) const {
    if (auto r = Usable(); !r) return std::unexpected(r.error());
    int64_t ms = store_->settings().query_timeout_ms;
    if (deadline_ms > 0) {
      const int64_t left = deadline_ms - NowUnixMs();
      if (left <= 0) return Fail(Code::kTimeout, "the request's deadline passed");
      ms = std::min(ms, left);
    }
    return ms;
  }

  // A driver or server error as the client's error. Messages hold no URI or credentials.
  Error Classify(const bson_error_t& e, const std::string& what, bool write, int64_t deadline_ms,
                 const Template* t = nullptr) const {
    if (txn_) {
      // In the exactly-once transaction nothing is applied until the commit, so a conflict, a
      // lost connection or a stepped-down primary only ends this attempt: ApplyInTransaction
      // runs the whole again.
      constexpr uint32_t kWriteConflict = 112, kNoSuchTransaction = 251;
      if (txn_->transient || e.code == kWriteConflict || e.code == kNoSuchTransaction ||
          e.domain == MONGOC_ERROR_STREAM || IsNotPrimary(e.code)) {
        txn_->transient = true;
        return NothingApplied("met a conflicting write or a lost connection (" +
                              std::string(e.message) + ")");
      }
    }
    const std::string db = "MongoDB database '" + store_->settings().name + "'";
    if (e.domain == MONGOC_ERROR_SERVER_SELECTION) {
      return Error{Code::kUnavailable, db + " is not reachable (no server could be selected)"};
    }
    if (e.domain == MONGOC_ERROR_STREAM || e.domain == MONGOC_ERROR_PROTOCOL) {
      if (write) return OutcomeUnknownError("the connection to " + db, "broke during the " + what);
      return Error{Code::kUnavailable, "the connection to " + db + " broke during the " + what};
    }
    if (e.domain == MONGOC_ERROR_WRITE_CONCERN) {
      return OutcomeUnknownError("the " + what, "not confirmed by the write concern (" +
                                                    store_->settings().write_concern + ")");
    }
    if (e.domain == MONGOC_ERROR_SERVER || e.domain == MONGOC_ERROR_QUERY ||
        e.domain == MONGOC_ERROR_COMMAND) {
      if (e.code == 11000 && t) {
        return Error{Code::kConflict,
                     "a " + t->name + " document with this " + t->Key()->name + " exists"};
      }
      if (e.code == 50) {  // MaxTimeMSExpired
        if (deadline_ms > 0 && NowUnixMs() >= deadline_ms) {
          return Error{Code::kTimeout, "the request's deadline passed during the " + what};
        }
        return Error{Code::kUnavailable, "the " + what + " ran longer than query_timeout_ms"};
      }
      if (IsNotPrimary(e.code)) {
        return Error{Code::kUnavailable,
                     db + " has no primary to serve the " + what + " right now"};
      }
      if (e.code == 13 || e.code == 18) {  // Unauthorized, AuthenticationFailed
        spdlog::error("{}: {}", db, e.message);
        return Error{Code::kUnavailable, db + " refused BEDS's credentials"};
      }
    }
    if (e.domain == MONGOC_ERROR_CLIENT) {
      spdlog::error("{}: {}", db, e.message);
      return Error{Code::kUnavailable, db + ": " + e.message};
    }
    spdlog::warn("{} {} failed: {} (domain {}, code {})", db, what, e.message, e.domain, e.code);
    std::string msg = e.message;
    if (msg.size() > 200) msg.resize(200);
    return Error{Code::kInternal, "the " + what + " was refused by " + db + ": " + msg};
  }

  std::shared_ptr<Store> store_;
};

}  // namespace

std::shared_ptr<Store> OpenStore(const config::DatabaseSettings& settings, int pool_size) {
  return std::make_shared<Store>(settings, pool_size);
}

std::unique_ptr<NamasteCore> MakeCore(const std::shared_ptr<Store>& store) {
  return docstore::MakeCore(std::make_unique<MongoEngine>(store),
                            docstore::Limits{store->settings().max_document_bytes});
}

std::string DriverVersion() { return MONGOC_VERSION_S; }

}  // namespace beds::adapters::mongodb
