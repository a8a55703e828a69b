#include "adapters/docstore/docstore.hpp"

#include <chrono>
#include <cstdio>

#include "core/lineage.hpp"
#include "core/validate.hpp"

namespace beds::adapters::docstore {
namespace json = boost::json;

namespace {

std::string Quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// Keys a document store would read as operators or paths: MongoDB treats '$' prefixes and dots
// specially, and BSON keys cannot hold NUL. Refused in both engines so a template behaves alike.
Result<void> CheckKeys(const json::value& v, std::string_view field) {
  if (v.is_object()) {
    for (const auto& [k, sub] : v.get_object()) {
      if (k.empty() || k.starts_with('$') || k.find('.') != json::string_view::npos ||
          k.find('\0') != json::string_view::npos) {
        return Fail(Code::kValidation, "field " + Quoted(field) + ": key " +
                                           Quoted(std::string(k.substr(0, 64))) +
                                           " is not allowed (keys may not be empty, start with "
                                           "'$' or contain '.')");
      }
      if (auto r = CheckKeys(sub, field); !r) return r;
    }
  } else if (v.is_array()) {
    for (const auto& sub : v.get_array()) {
      if (auto r = CheckKeys(sub, field); !r) return r;
    }
  }
  return Ok();
}

}  // namespace

Result<OpResult> Engine::ApplyOnce(const WriteOnce&, int64_t,
                                   const std::function<Result<OpResult>()>& apply) {
  return apply();
}

namespace {

class RecCore final : public NamasteCore {
 public:
  RecCore(std::unique_ptr<Engine> engine, Limits limits)
      : engine_(std::move(engine)), limits_(limits) {}

  Result<OpResult> Create(const Template& t, const OpSpec&, const Payload& p) override {
    return Once(p, [&] { return CreateDocument(t, p); });
  }
  Result<OpResult> Update(const Template& t, const OpSpec&, const Payload& p) override {
    return Once(p, [&] { return UpdateDocument(t, p); });
  }
  Result<OpResult> Delete(const Template& t, const OpSpec&, const Payload& p) override {
    return Once(p, [&] { return DeleteDocument(t, p); });
  }
  Result<int64_t> SweepOnce(int64_t batch) override { return engine_->SweepOnce(batch); }

  Result<OpResult> CreateMany(const Template& t, const OpSpec&,
                              const std::vector<Payload>& payloads) override {
    std::vector<Engine::Keyed> docs;
    docs.reserve(payloads.size());
    int64_t deadline_ms = 0;
    for (const Payload& p : payloads) {
      auto keyed = ToKeyed(t, ToDocument(t, p, nullptr));
      if (!keyed) return std::unexpected(keyed.error());
      docs.push_back(std::move(*keyed));
      if (p.deadline_ms != 0 && (deadline_ms == 0 || p.deadline_ms < deadline_ms)) {
        deadline_ms = p.deadline_ms;
      }
    }
    return InsertMany(t, docs, deadline_ms);
  }

  Result<OpResult> CreateDocuments(const Template& t, const OpSpec&,
                                   std::vector<Document> documents) override {
    std::vector<Engine::Keyed> docs;
    docs.reserve(documents.size());
    for (Document& doc : documents) {
      auto keyed = ToKeyed(t, std::move(doc));
      if (!keyed) return std::unexpected(keyed.error());
      docs.push_back(std::move(*keyed));
    }
    return InsertMany(t, docs, 0);
  }

  Result<OpResult> Fetch(const Template& t, const OpSpec&, const Query& q) override {
    auto docs = engine_->Find(t, ToDocQuery(t, q));
    if (!docs) return std::unexpected(docs.error());
    OpResult out;
    for (auto& d : *docs) out.data.push_back(std::move(d));
    out.count = static_cast<int64_t>(out.data.size());
    return out;
  }

  Result<OpResult> Count(const Template& t, const OpSpec&, const Query& q) override {
    DocQuery dq = ToDocQuery(t, q);
    dq.order.clear();
    dq.limit = 0;
    dq.offset = 0;
    auto n = engine_->Count(t, dq);
    if (!n) return std::unexpected(n.error());
    OpResult out;
    out.data.push_back(json::object{{"count", *n}});
    out.count = *n;
    return out;
  }

  Result<OpResult> Call(const Template& t, const OpSpec& op, const Payload&) override {
    return Fail(Code::kUnknownOp, "REC template '" + t.name + "' has no call '" + op.name + "'");
  }

  Result<void> Prepare(const Template& t) override { return engine_->Ensure(t); }

 private:
  // A write applied exactly once when the dispatcher asked for it (core/once.hpp).
  template <typename F>
  Result<OpResult> Once(const Payload& p, F&& apply) {
    if (!p.once) return apply();
    return engine_->ApplyOnce(*p.once, p.deadline_ms, apply);
  }

  Result<OpResult> CreateDocument(const Template& t, const Payload& p) {
    const FieldSpec* key = t.Key();
    Document doc = ToDocument(t, p, nullptr);
    json::value& id = doc[key->name];
    if (id.is_null()) {
      if (key->type != FieldType::kString) {
        return Fail(Code::kValidation,
                    "field " + Quoted(key->name) + " is required (only string keys are generated)");
      }
      id = NewDocumentId();
    }
    if (auto r = Check(doc); !r) return std::unexpected(r.error());
    if (auto r = engine_->Insert(t, id, doc, p.deadline_ms); !r) return std::unexpected(r.error());
    OpResult out;
    out.data.push_back(std::move(doc));
    out.count = 1;
    return out;
  }

  Result<OpResult> UpdateDocument(const Template& t, const Payload& p) {
    const FieldSpec* key = t.Key();
    auto it = p.values.find(key->name);
    const json::value id = ClientValue(it->second);  // validation made sure it is there
    Document set = ToDocument(t, p, key);
    if (set.empty())
      return Fail(Code::kValidation, "update needs at least one field besides the key");
    if (auto r = Check(set); !r) return std::unexpected(r.error());
    auto doc = engine_->Update(t, id, set, p.deadline_ms);
    if (!doc) return std::unexpected(doc.error());
    OpResult out;
    out.data.push_back(std::move(*doc));
    out.count = 1;
    return out;
  }

  Result<OpResult> DeleteDocument(const Template& t, const Payload& p) {
    const FieldSpec* key = t.Key();
    auto it = p.values.find(key->name);
    json::value id = ClientValue(it->second);
    if (auto r = engine_->Remove(t, id, p.deadline_ms); !r) {
      return std::unexpected(r.error());
    }
    // The key of what was deleted, as the example REL procedures answer (`SELECT p_id AS id`), so
    // a client reads a delete's reply the same way for both classes.
    OpResult out;
    out.data.push_back(json::object{{key->name, std::move(id)}});
    out.count = 1;
    return out;
  }

  // The payload's declared fields in client form, in declaration order, `skip` left out.
  static Document ToDocument(const Template& t, const Payload& p, const FieldSpec* skip) {
    Document doc;
    doc.reserve(t.fields.size());
    for (const auto& f : t.fields) {
      if (&f == skip) continue;
      auto it = p.values.find(f.name);
      if (it != p.values.end()) {
        doc[f.name] = ClientValue(it->second);
      } else if (f.key && !skip) {
        doc[f.name] = nullptr;  // filled by Create
      }
    }
    return doc;
  }

  // A document to insert: its key (generated when left out) and its checked text.
  Result<Engine::Keyed> ToKeyed(const Template& t, Document doc) const {
    const FieldSpec* key = t.Key();
    json::value id = doc[key->name];
    if (id.is_null()) {
      if (key->type != FieldType::kString) {
        return Fail(Code::kValidation,
                    "field " + Quoted(key->name) + " is required (only string keys are generated)");
      }
      id = NewDocumentId();
      doc[key->name] = id;
    }
    std::string text;
    if (auto r = Check(doc, &text); !r) return std::unexpected(r.error());
    return Engine::Keyed{std::move(id), std::move(doc), std::move(text)};
  }

  Result<OpResult> InsertMany(const Template& t, const std::vector<Engine::Keyed>& docs,
                              int64_t deadline_ms) {
    auto n = engine_->InsertMany(t, docs, deadline_ms);
    if (!n) return std::unexpected(n.error());
    OpResult out;
    out.count = *n;
    return out;
  }

  // `text`, when given, receives the serialized document (it is measured anyway).
  Result<void> Check(const Document& doc, std::string* text = nullptr) const {
    for (const auto& [name, v] : doc) {
      if (auto r = CheckKeys(v, name); !r) return r;
    }
    std::string serialized = json::serialize(doc);
    const size_t size = serialized.size();
    if (text) *text = std::move(serialized);
    if (static_cast<int64_t>(size) > limits_.max_document_bytes) {
      return Fail(Code::kTooLarge, "the document is " + std::to_string(size) +
                                       " bytes, over the limit of " +
                                       std::to_string(limits_.max_document_bytes));
    }
    return Ok();
  }

  static DocQuery ToDocQuery(const Template& t, const Query& q) {
    DocQuery dq;
    const FieldSpec* key = t.Key();
    for (const auto& f : q.filters) {
      DocFilter df;
      df.field = t.Field(f.field);
      df.is_key = df.field == key;
      df.op = f.op;
      for (const auto& v : f.values) df.values.push_back(ClientValue(v));
      dq.filters.push_back(std::move(df));
    }
    bool key_ordered = false;
    for (const auto& [name, desc] : q.order) {
      const FieldSpec* f = t.Field(name);
      key_ordered = key_ordered || f == key;
      dq.order.emplace_back(f, desc);
    }
    if (!key_ordered) dq.order.emplace_back(key, false);
    dq.limit = q.limit;
    dq.offset = q.offset;
    dq.deadline_ms = q.deadline_ms;
    return dq;
  }

  std::unique_ptr<Engine> engine_;
  Limits limits_;
};

}  // namespace

Result<int64_t> Engine::InsertMany(const Template& t, const std::vector<Keyed>& docs,
                                   int64_t deadline_ms) {
  int64_t inserted = 0;
  for (const Keyed& d : docs) {
    auto r = Insert(t, d.key, d.doc, deadline_ms);
    if (r) {
      ++inserted;
    } else if (r.error().code != Code::kConflict) {
      return std::unexpected(r.error());
    }
  }
  return inserted;
}

std::unique_ptr<NamasteCore> MakeCore(std::unique_ptr<Engine> engine, Limits limits) {
  return std::make_unique<RecCore>(std::move(engine), limits);
}

json::value ClientValue(const Value& v) {
  if (v.null) return nullptr;
  switch (v.type) {
    case FieldType::kInt:
      return v.i;
    case FieldType::kFloat:
      return v.f;
    case FieldType::kBool:
      return v.i != 0;
    case FieldType::kDatetime:
      return json::string(CanonicalDatetime(v.text));
    case FieldType::kJson: {
      std::error_code ec;
      json::value parsed = json::parse(v.text, ec);
      return ec ? json::value(nullptr) : parsed;
    }
    case FieldType::kBytes:
      return json::string(Base64Encode(v.text));
    case FieldType::kDecimal:
    case FieldType::kString:
    case FieldType::kDate:
      break;
  }
  return json::string(v.text);
}

std::string CanonicalDatetime(std::string_view n) {
  // "YYYY-MM-DD HH:MM:SS[.f…]" → "YYYY-MM-DDTHH:MM:SS.fffZ"
  std::string out(n.substr(0, 10));
  out += 'T';
  out += n.substr(11, 8);
  std::string frac = n.size() > 20 ? std::string(n.substr(20)) : "";
  frac.resize(3, '0');
  return out + "." + frac + "Z";
}

std::optional<int64_t> DatetimeToUnixMs(std::string_view s) {
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, ms = 0;
  const std::string text(s);
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &y, &mo, &d, &h, &mi, &sec, &ms) != 7) {
    return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)},
                           day{static_cast<unsigned>(d)}};
  if (!ymd.ok()) return std::nullopt;
  const auto t = sys_days{ymd} + hours{h} + minutes{mi} + seconds{sec} + milliseconds{ms};
  return duration_cast<milliseconds>(t.time_since_epoch()).count();
}

std::string NewDocumentId() {
  const std::string g = NewGuid();
  return g.substr(0, 8) + "-" + g.substr(8, 4) + "-" + g.substr(12, 4) + "-" + g.substr(16, 4) +
         "-" + g.substr(20);
}

}  // namespace beds::adapters::docstore
