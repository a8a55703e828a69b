#include "templates/templates.hpp"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/request.hpp"

namespace beds::templates {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMaxLimitCeiling = 100000;

// Every problem found, one per line.
std::string JoinLines(const std::vector<std::string>& lines) {
  std::string all;
  for (const auto& line : lines) all += (all.empty() ? "" : "\n") + line;
  return all;
}

bool IsIdentifier(std::string_view s, size_t max = 64) {
  if (s.empty() || s.size() > max) return false;
  if (!(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_';
  });
}

// Reads one TOML table, reporting wrong types and, on Finish(), every key it was not asked for.
class Reader {
 public:
  Reader(const toml::table& table, std::string path, const std::string& file,
         std::vector<std::string>& errors)
      : table_(table), path_(std::move(path)), file_(file), errors_(errors) {}

  std::string Key(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }

  void Error(const toml::node* at, std::string_view key, const std::string& what) {
    const auto line = at ? at->source().begin.line : table_.source().begin.line;
    errors_.push_back(file_ + ":" + std::to_string(line) + ": key '" + Key(key) + "': " + what);
  }

  const toml::node* Take(std::string_view key) {
    taken_.insert(std::string(key));
    return table_.get(key);
  }

  bool String(std::string_view key, std::string& out, bool required = false) {
    const toml::node* n = Take(key);
    if (!n) {
      if (required) Error(nullptr, key, "is required");
      return false;
    }
    if (!n->is_string()) {
      Error(n, key, "expected a string");
      return false;
    }
    out = n->as_string()->get();
    return true;
  }

  void Bool(std::string_view key, bool& out) {
    const toml::node* n = Take(key);
    if (!n) return;
    if (!n->is_boolean()) return Error(n, key, "expected true or false");
    out = n->as_boolean()->get();
  }

  void Integer(std::string_view key, int64_t& out, int64_t min, int64_t max) {
    const toml::node* n = Take(key);
    if (!n) return;
    if (!n->is_integer() || n->as_integer()->get() < min || n->as_integer()->get() > max) {
      return Error(
          n, key,
          "expected an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
    }
    out = n->as_integer()->get();
  }

  void Names(std::string_view key, std::vector<std::string>& out) {
    const toml::node* n = Take(key);
    if (!n) return;
    const auto* array = n->as_array();
    if (!array) return Error(n, key, "expected an array of names");
    for (const auto& item : *array) {
      if (!item.is_string() || !IsIdentifier(item.as_string()->get())) {
        return Error(&item, key, "expected an array of names ([A-Za-z_][A-Za-z0-9_]*)");
      }
      out.push_back(item.as_string()->get());
    }
  }

  const toml::table* Table(std::string_view key) {
    const toml::node* n = Take(key);
    if (!n) return nullptr;
    if (!n->is_table()) {
      Error(n, key, "expected a table");
      return nullptr;
    }
    return n->as_table();
  }

  void Finish() {
    for (const auto& [k, v] : table_) {
      if (!taken_.contains(std::string(k.str()))) Error(&v, k.str(), "unknown key");
    }
  }

 private:
  const toml::table& table_;
  std::string path_;
  const std::string& file_;
  std::vector<std::string>& errors_;
  std::set<std::string> taken_;
};

struct OpRules {
  bool procedure = false;  // REL: names a procedure
  bool view = false;       // REL: names a view
  bool query = false;      // where / order / max_limit
  bool call = false;       // out / kind; params need not be fields
};

OpRules RulesFor(std::string_view op, bool rel) {
  const Op kind = OpNamed(op);
  if (kind == Op::kFetch || kind == Op::kCount) return {false, rel, true, false};
  return {rel, false, false, false};  // create, update, delete
}

constexpr OpRules kCallRules{true, false, false, true};  // every [ops.calls.*], whatever its name

void ReadOp(const toml::table& table, const std::string& path, const std::string& op_name,
            const OpRules& rules, Template& t, const std::string& file,
            std::vector<std::string>& errors, OpSpec& op) {
  Reader r(table, path, file, errors);
  op.name = op_name;
  const bool rel = t.template_class == TemplateClass::kRel;
  const std::string prefix = t.tla + "_";
  auto check_object = [&](std::string_view key, const std::string& name) {
    if (!IsIdentifier(name)) {
      r.Error(table.get(key), key, "expected a database object name ([A-Za-z0-9_])");
    } else if (!name.starts_with(prefix)) {
      r.Error(table.get(key), key,
              "\"" + name + "\" does not start with the template's TLA prefix \"" + prefix + "\"");
    }
  };
  if (rules.procedure) {
    if (r.String("procedure", op.procedure, true)) check_object("procedure", op.procedure);
    r.Names("params", op.params);
    r.Names("out", op.out);
  } else if (!rel) {
    // REC ops name no database objects; create/update/delete take the document as `data`.
  } else {
    r.Names("params", op.params);
  }
  if (rules.view) {
    if (r.String("view", op.view, true)) check_object("view", op.view);
  }
  if (rules.query) {
    r.Names("where", op.where);
    r.Names("order", op.order);
    r.Integer("max_limit", op.max_limit, 1, kMaxLimitCeiling);
    op.read = true;
  }
  if (rules.call) {
    std::string kind = "write";
    if (r.String("kind", kind) && kind != "read" && kind != "write" && kind != "job") {
      r.Error(table.get("kind"), "kind", "expected \"read\", \"write\" or \"job\"");
    }
    op.read = kind == "read";
    op.job = kind == "job";
  }
  r.Finish();

  // Names an op uses must be declared fields (a call's parameters are its own).
  auto declared = [&](std::string_view key, const std::vector<std::string>& names) {
    for (const auto& n : names) {
      if (!t.Field(n)) r.Error(table.get(key), key, "\"" + n + "\" is not a declared field");
    }
  };
  if (!rules.call) declared("params", op.params);
  declared("where", op.where);
  declared("order", op.order);
}

// A REC document always has an id: the declared key field, or an implicit string field `id`
// (a generated UUIDv7 unless the client gives one). create and update take any declared field as
// `data`; delete takes the key. json and bytes fields cannot be filtered, ordered or indexed on:
// the two engines would compare them differently.
void FinishRec(Template& t, const std::string& file, std::vector<std::string>& errors) {
  if (!t.Key() && t.Field("id")) {
    errors.push_back(file +
                     ": key 'fields.id': a REC template without a key field gets an "
                     "implicit key \"id\"; mark this field key = true or rename it");
  }
  const FieldSpec* key = t.Key();
  if (key && key->type != FieldType::kString && key->type != FieldType::kInt) {
    errors.push_back(file + ": key 'fields." + key->name + "': a REC key is a string or an int");
  }
  std::vector<std::string> all;
  for (const auto& f : t.fields) all.push_back(f.name);
  for (auto& [name, op] : t.ops) {
    if (name == "create" || name == "update") op.params = all;
    if (name == "delete" && key) op.params = {key->name};
  }
  auto comparable = [&](const std::string& where, const std::string& field) {
    const std::string bare = field.starts_with('-') ? field.substr(1) : field;
    const FieldSpec* f = t.Field(bare);
    if (f && (f->type == FieldType::kJson || f->type == FieldType::kBytes)) {
      errors.push_back(file + ": key '" + where + "': \"" + bare + "\" is a " +
                       std::string(FieldTypeName(f->type)) +
                       " field; REC filters, order and indexes take scalar fields only");
    }
  };
  for (const auto& [name, op] : t.ops) {
    for (const auto& f : op.where) comparable("ops." + name + ".where", f);
    for (const auto& f : op.order) comparable("ops." + name + ".order", f);
  }
  for (const auto& index : t.indexes) {
    for (const auto& f : index.fields) comparable("indexes." + index.name + ".fields", f);
    if (index.expire_after_s) {
      const FieldSpec* f = index.fields.size() == 1 ? t.Field(index.fields[0]) : nullptr;
      if (!f || f->type != FieldType::kDatetime) {
        errors.push_back(file + ": key 'indexes." + index.name +
                         ".expire_after_s': a TTL index has exactly one datetime field");
      }
    }
  }
}

}  // namespace

bool IsSystemTemplate(std::string_view name) {
  return name == "sys" || name == "calgon" || name == "lineage" || name == "admin";
}

const Template* Snapshot::Find(std::string_view name) const {
  auto it = by_name.find(name);
  return it == by_name.end() ? nullptr : &it->second;
}

Result<Template> Parse(std::string_view text, const std::string& file) {
  toml::table root;
  try {
    root = toml::parse(text, file);
  } catch (const toml::parse_error& e) {
    return Fail(Code::kValidation, file + ":" + std::to_string(e.source().begin.line) + ": " +
                                       std::string(e.description()));
  }
  std::vector<std::string> errors;
  Template t;
  t.file = file;
  Reader r(root, "", file, errors);
  if (r.String("name", t.name, true) && !IsIdentifier(t.name)) {
    r.Error(root.get("name"), "name",
            "expected 1-64 characters of [A-Za-z0-9_], not starting with a digit");
  }
  if (IsSystemTemplate(t.name)) r.Error(root.get("name"), "name", "\"" + t.name + "\" is reserved");
  if (std::string cls; r.String("class", cls, true)) {
    if (auto named = ClassNamed(cls)) {
      t.template_class = *named;
    } else {
      r.Error(root.get("class"), "class", "expected \"rel\" or \"rec\"");
    }
  }
  if (r.String("tla", t.tla, true)) {
    const bool three = t.tla.size() == 3 && std::all_of(t.tla.begin(), t.tla.end(), [](char c) {
                         return c >= 'a' && c <= 'z';
                       });
    if (!three) r.Error(root.get("tla"), "tla", "expected three lowercase letters");
    const std::string stem = fs::path(file).filename().string();
    // example_*.toml files document the format (docs/templates.md names example_rec.toml) and are
    // the one exception to the file-name rule.
    if (three && !stem.starts_with(t.tla + "_") && !stem.starts_with("example_")) {
      r.Error(root.get("tla"), "tla",
              "the file name must start with \"" + t.tla + "_\" (TLA convention), not \"" + stem +
                  "\"");
    }
  }
  t.route = std::string(ClassName(t.template_class));
  if (r.String("route", t.route) && !IsIdentifier(t.route)) {
    r.Error(root.get("route"), "route", "expected [A-Za-z0-9_]");
  }
  r.String("database", t.database, true);
  if (t.template_class == TemplateClass::kRec) {
    if (r.String("collection", t.collection, true) && !IsIdentifier(t.collection)) {
      r.Error(root.get("collection"), "collection", "expected [A-Za-z0-9_]");
    }
  }

  if (const toml::table* fields = r.Table("fields")) {
    for (const auto& [k, v] : *fields) {
      const std::string name(k.str());
      const std::string path = "fields." + name;
      if (!IsIdentifier(name)) {
        r.Error(&v, path, "field names are [A-Za-z_][A-Za-z0-9_]*");
        continue;
      }
      if (!v.is_table()) {
        r.Error(&v, path, "expected a table such as { type = \"string\" }");
        continue;
      }
      Reader fr(*v.as_table(), path, file, errors);
      FieldSpec f;
      f.name = name;
      std::string type;
      if (fr.String("type", type, true)) {
        if (auto ft = FieldTypeFromName(type)) {
          f.type = *ft;
        } else {
          fr.Error(v.as_table()->get("type"), "type",
                   "unknown type \"" + type +
                       "\" (int, float, decimal, bool, string, date, datetime, json, bytes)");
        }
      }
      fr.Bool("key", f.key);
      fr.Bool("required", f.required);
      fr.Integer("max", f.max, 1, int64_t{1} << 30);
      fr.Finish();
      t.fields.push_back(std::move(f));
    }
    if (std::count_if(t.fields.begin(), t.fields.end(), [](const FieldSpec& f) { return f.key; }) >
        1) {
      r.Error(root.get("fields"), "fields", "at most one field may be the key");
    }
  } else {
    r.Error(nullptr, "fields", "is required");
  }

  if (t.template_class == TemplateClass::kRec && !t.Key() && !t.Field("id")) {
    // The implicit key, declared before the ops and indexes that may name it.
    t.fields.insert(
        t.fields.begin(),
        FieldSpec{
            .name = "id", .type = FieldType::kString, .key = true, .required = false, .max = 64});
  }
  if (t.template_class == TemplateClass::kRec) {
    if (const toml::table* indexes = r.Table("indexes")) {
      for (const auto& [k, v] : *indexes) {
        const std::string path = "indexes." + std::string(k.str());
        if (!v.is_table()) {
          r.Error(&v, path, "expected a table such as { fields = [\"a\"] }");
          continue;
        }
        Reader ir(*v.as_table(), path, file, errors);
        IndexSpec index;
        index.name = std::string(k.str());
        if (const toml::node* n = ir.Take("fields"); n && n->is_array()) {
          for (const auto& item : *n->as_array()) {
            std::string field = item.is_string() ? item.as_string()->get() : "";
            const std::string bare = field.starts_with('-') ? field.substr(1) : field;
            if (!t.Field(bare))
              ir.Error(&item, "fields", "\"" + field + "\" is not a declared field");
            index.fields.push_back(field);
          }
        } else {
          ir.Error(n, "fields", "expected an array of field names");
        }
        int64_t expire = -1;
        ir.Integer("expire_after_s", expire, 0, int64_t{1} << 40);
        if (expire >= 0) index.expire_after_s = expire;
        ir.Finish();
        t.indexes.push_back(std::move(index));
      }
    }
  }

  const bool rel = t.template_class == TemplateClass::kRel;
  if (const toml::table* ops = r.Table("ops")) {
    for (const auto& [k, v] : *ops) {
      const std::string op_name(k.str());
      if (op_name == "calls") {
        if (!rel) {
          r.Error(&v, "ops.calls",
                  "REC templates have no calls (create fetch count update delete)");
          continue;
        }
        if (!v.is_table()) {
          r.Error(&v, "ops.calls", "expected a table of named calls");
          continue;
        }
        for (const auto& [ck, cv] : *v.as_table()) {
          const std::string call(ck.str());
          const std::string path = "ops.calls." + call;
          if (!IsIdentifier(call) || !cv.is_table()) {
            r.Error(&cv, path, "expected a table named [A-Za-z0-9_]");
            continue;
          }
          OpSpec op;
          ReadOp(*cv.as_table(), path, call, kCallRules, t, file, errors, op);
          t.calls[call] = std::move(op);
        }
        continue;
      }
      const std::string path = "ops." + op_name;
      static const std::set<std::string> kOps = {"create", "fetch", "count", "update", "delete"};
      if (!kOps.contains(op_name)) {
        r.Error(&v, path, "unknown op (create, fetch, count, update, delete, calls)");
        continue;
      }
      if (!v.is_table()) {
        r.Error(&v, path, "expected a table");
        continue;
      }
      OpSpec op;
      ReadOp(*v.as_table(), path, op_name, RulesFor(op_name, rel), t, file, errors, op);
      t.ops[op_name] = std::move(op);
    }
  }
  r.Finish();

  if (!rel) FinishRec(t, file, errors);

  // Fetch by id and update/delete need a key; count defaults to fetch's view and filters.
  const FieldSpec* key = t.Key();
  if (!key && (t.Op("update") || t.Op("delete"))) {
    errors.push_back(file + ": key 'fields': update and delete need a field with key = true");
  }
  if (key && rel) {
    for (const char* op : {"update", "delete"}) {
      const OpSpec* spec = t.Op(op);
      if (spec &&
          std::find(spec->params.begin(), spec->params.end(), key->name) == spec->params.end()) {
        errors.push_back(file + ": key 'ops." + op + ".params': must include the key field \"" +
                         key->name + "\"");
      }
    }
  }
  if (const OpSpec* create = t.Op("create"); create && rel) {
    for (const auto& f : t.fields) {
      if (f.required &&
          std::find(create->params.begin(), create->params.end(), f.name) == create->params.end()) {
        errors.push_back(file + ": key 'fields." + f.name +
                         "': required, but not a parameter of ops.create, so no create could pass");
      }
    }
  }
  if (!t.Op("count")) {
    if (const OpSpec* fetch = t.Op("fetch")) {
      OpSpec count = *fetch;
      count.name = "count";
      t.ops["count"] = std::move(count);
    }
  }

  if (!errors.empty()) {
    return Fail(Code::kValidation, JoinLines(errors));
  }
  return t;
}

Result<std::vector<Template>> LoadDir(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Fail(Code::kValidation, "templates dir \"" + dir + "\" is not a directory");
  }
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().extension() == ".toml")
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  std::vector<Template> out;
  std::vector<std::string> errors;
  std::map<std::string, std::string> names;
  for (const auto& path : files) {
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) {
      errors.push_back(path.string() + ": cannot be read");
      continue;
    }
    auto t = Parse(text.str(), path.string());
    if (!t) {
      errors.push_back(t.error().message);
      continue;
    }
    if (auto [it, fresh] = names.emplace(t->name, path.string()); !fresh) {
      errors.push_back(path.string() + ": key 'name': \"" + t->name + "\" is already defined in " +
                       it->second);
      continue;
    }
    out.push_back(std::move(*t));
  }
  if (!errors.empty()) {
    return Fail(Code::kValidation, JoinLines(errors));
  }
  return out;
}

std::string FieldOfParameter(const std::string& parameter) {
  for (const char* prefix : {"p_", "in_", "out_", "i_", "o_"}) {
    const size_t n = std::strlen(prefix);
    if (parameter.starts_with(prefix) && parameter.size() > n) return parameter.substr(n);
  }
  return parameter;
}

namespace {

// The parameters a procedure takes in `mode` ("IN", or anything else for OUT/INOUT), in order.
std::vector<const SchemaParam*> ParamsOf(const SchemaRoutine& p, bool in) {
  std::vector<const SchemaParam*> out;
  for (const auto& param : p.params) {
    if ((param.mode == "IN") == in) out.push_back(&param);
  }
  return out;
}

std::string QuotedList(const std::vector<std::string>& names) {
  std::string out = "[";
  for (const auto& n : names) out += (out.size() > 1 ? ", \"" : "\"") + n + "\"";
  return out + "]";
}

// Fields passed where the procedure takes a parameter named after another of the op's fields:
// the values would be stored in each other's columns. "" when there are none.
std::string MisplacedParameters(const OpSpec& op, const SchemaRoutine& proc) {
  auto check = [&](const std::vector<std::string>& declared, bool in) -> std::string {
    const auto params = ParamsOf(proc, in);
    // The declared name each parameter is named for ("" when it is named for none of them).
    auto named_for = [&](const SchemaParam& p) -> std::string {
      for (const auto& name : declared) {
        if (name == p.name || name == FieldOfParameter(p.name)) return name;
      }
      return "";
    };
    bool misplaced = false;
    const size_t n = std::min(params.size(), declared.size());
    for (size_t i = 0; i < n; ++i) {
      const std::string name = named_for(*params[i]);
      if (!name.empty() && name != declared[i]) misplaced = true;
    }
    // The suggestion: each parameter's own name where it has one, the rest in their order.
    std::vector<std::string> wanted(n);
    std::vector<std::string> rest;
    for (size_t i = 0; i < n; ++i) wanted[i] = named_for(*params[i]);
    for (const auto& name : declared) {
      if (std::find(wanted.begin(), wanted.end(), name) == wanted.end()) rest.push_back(name);
    }
    auto next = rest.begin();
    for (auto& w : wanted) {
      if (w.empty() && next != rest.end()) w = *next++;
    }
    if (!misplaced) return "";
    std::string order;
    for (const auto* p : params) order += (order.empty() ? "" : ", ") + p->name;
    return "procedure " + op.procedure + " takes its " + (in ? "IN" : "OUT") +
           " parameters in the order (" + order + "), but the template's " +
           (in ? "params" : "out") + " are " + QuotedList(declared) +
           ": values would land in the wrong parameters; list them as " + QuotedList(wanted);
  };
  std::string in = check(op.params, true);
  std::string out = check(op.out, false);
  return in.empty() ? out : out.empty() ? in : in + "; " + out;
}

// Broad families of types: a field and its parameter should be of the same one.
enum class TypeFamily { kNumber, kText, kTime, kBinary, kUnknown };

TypeFamily FamilyOf(FieldType t) {
  switch (t) {
    case FieldType::kInt:
    case FieldType::kFloat:
    case FieldType::kDecimal:
    case FieldType::kBool:
      return TypeFamily::kNumber;
    case FieldType::kString:
    case FieldType::kJson:
      return TypeFamily::kText;
    case FieldType::kDate:
    case FieldType::kDatetime:
      return TypeFamily::kTime;
    case FieldType::kBytes:
      return TypeFamily::kBinary;
  }
  return TypeFamily::kUnknown;
}

TypeFamily FamilyOfSql(std::string_view t) {
  if (t.ends_with("char") || t.ends_with("text") || t == "enum" || t == "set" || t == "json")
    return TypeFamily::kText;
  if (t == "date" || t == "datetime" || t == "timestamp" || t == "time") return TypeFamily::kTime;
  if (t.ends_with("blob") || t == "binary" || t == "varbinary") return TypeFamily::kBinary;
  if (t.ends_with("int") || t == "decimal" || t == "numeric" || t == "float" || t == "double" ||
      t == "real" || t == "bit" || t == "year")
    return TypeFamily::kNumber;
  return TypeFamily::kUnknown;
}

// Each op and call that names a procedure, with its label for messages.
template <typename F>
void ForEachProcedure(const Template& t, F&& each) {
  for (const auto& [name, op] : t.ops) {
    if (!op.procedure.empty()) each(op, t.name + "/" + name);
  }
  for (const auto& [name, op] : t.calls) {
    if (!op.procedure.empty()) each(op, t.name + "/call " + name);
  }
}

}  // namespace

std::vector<std::string> BindWarnings(const Template& t, const Schema& schema) {
  std::vector<std::string> warnings;
  if (t.template_class != TemplateClass::kRel) return warnings;
  ForEachProcedure(t, [&](const OpSpec& op, const std::string& label) {
    auto it = schema.procedures.find(op.procedure);
    if (it == schema.procedures.end()) return;
    const SchemaRoutine& proc = it->second;
    if (op.read && proc.data_access == "MODIFIES SQL DATA") {
      warnings.push_back(label + " is declared kind = \"read\", but procedure " + op.procedure +
                         " is declared MODIFIES SQL DATA: reads run on the read pool and may go "
                         "to a secondary; declare the call kind = \"write\" if it changes data");
    }
    const auto params = ParamsOf(proc, true);
    // A count mismatch or misplaced parameters are BindCheck problems already.
    if (params.size() != op.params.size() || !MisplacedParameters(op, proc).empty()) return;
    for (size_t i = 0; i < params.size(); ++i) {
      const SchemaParam& param = *params[i];
      const std::string& field_name = op.params[i];
      if (FieldOfParameter(param.name) != field_name && param.name != field_name) {
        warnings.push_back(label + ": procedure " + op.procedure + "'s IN parameter " +
                           std::to_string(i + 1) + " is named " + param.name +
                           ", and the template passes field '" + field_name +
                           "' there: if that is not what " + param.name +
                           " stands for, fix the order of params (a parameter named p_" +
                           field_name + " or " + field_name + " would say so)");
      }
      const FieldSpec* field = t.Field(field_name);
      if (!field) continue;
      const TypeFamily want = FamilyOfSql(param.data_type);
      const TypeFamily have = FamilyOf(field->type);
      if (field->type == FieldType::kFloat &&
          (param.data_type == "decimal" || param.data_type == "numeric")) {
        warnings.push_back(label + ": field '" + field_name + "' is float, but procedure " +
                           op.procedure + "'s parameter " + param.name +
                           " is decimal: a double cannot hold every decimal exactly; type the "
                           "field decimal (sent as a string such as \"12.50\")");
      } else if (want != TypeFamily::kUnknown && want != have) {
        warnings.push_back(label + ": field '" + field_name + "' is " +
                           std::string(FieldTypeName(field->type)) + ", but procedure " +
                           op.procedure + "'s parameter " + param.name + " is " + param.data_type);
      }
    }
  });
  return warnings;
}

bool EndsTransaction(std::string_view sql) {
  // The words of the body in order, upper-cased, skipping comments and quoted text.
  std::vector<std::string> words;
  for (size_t i = 0; i < sql.size();) {
    const char c = sql[i];
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      i = sql.find('\n', i);
    } else if (c == '#') {
      i = sql.find('\n', i);
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      i = sql.find("*/", i + 2);
      if (i != std::string_view::npos) i += 2;
    } else if (c == '\'' || c == '"' || c == '`') {
      size_t j = i + 1;
      while (j < sql.size() && sql[j] != c) j += sql[j] == '\\' ? 2 : 1;
      i = j + 1;
    } else if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < sql.size() &&
             (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_' || sql[j] == '$'))
        ++j;
      std::string w(sql.substr(i, j - i));
      for (char& ch : w) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      words.push_back(std::move(w));
      i = j;
    } else {
      ++i;
    }
    if (i == std::string_view::npos) break;
  }
  for (size_t k = 0; k < words.size(); ++k) {
    const std::string next = k + 1 < words.size() ? words[k + 1] : "";
    if (words[k] == "COMMIT") return true;
    if (words[k] == "ROLLBACK" && next != "TO") return true;
    if (words[k] == "START" && next == "TRANSACTION") return true;
    if (words[k] == "BEGIN" && next == "WORK") return true;
  }
  return false;
}

OnceProblems OnceCheck(const Template& t, const Schema& schema) {
  OnceProblems out;
  if (t.template_class != TemplateClass::kRel) return out;
  bool writes = false;
  ForEachProcedure(t, [&](const OpSpec& op, const std::string& label) {
    if (op.read) return;
    writes = true;
    auto it = schema.procedures.find(op.procedure);
    if (it != schema.procedures.end() && EndsTransaction(it->second.definition)) {
      out.ends_transaction.push_back(label + ": procedure " + op.procedure +
                                     " ends or starts a transaction itself (COMMIT, ROLLBACK or "
                                     "START TRANSACTION): its effect would not commit with the "
                                     "write's exactly-once record; remove those statements "
                                     "(BEDS commits the write)");
    }
  });
  if (!writes) return out;
  if (!std::binary_search(schema.tables.begin(), schema.tables.end(), "beds_idempotency"))
    out.missing.push_back("table beds_idempotency");
  for (const char* proc :
       {"beds_once_begin", "beds_once_commit", "beds_once_commit_many", "beds_once_sweep"}) {
    if (!schema.procedures.contains(proc)) out.missing.push_back(std::string("procedure ") + proc);
  }
  return out;
}

void Annotate(Template& t, const Schema& schema) {
  if (t.template_class != TemplateClass::kRel) return;
  auto annotate = [&](OpSpec& op) {
    if (op.procedure.empty()) return;
    auto it = schema.procedures.find(op.procedure);
    if (it == schema.procedures.end()) return;
    const auto params = ParamsOf(it->second, true);
    for (size_t i = 0; i < params.size() && i < op.params.size(); ++i) {
      if (params[i]->scale >= 0 &&
          (params[i]->data_type == "decimal" || params[i]->data_type == "numeric")) {
        op.decimal_scale[op.params[i]] = params[i]->scale;
      }
    }
  };
  for (auto& [name, op] : t.ops) annotate(op);
  for (auto& [name, op] : t.calls) annotate(op);
}

std::vector<std::string> BindCheck(const Template& t, const Schema& schema) {
  std::vector<std::string> problems;
  if (t.template_class != TemplateClass::kRel) return problems;
  auto check_op = [&](const OpSpec& op, const std::string& label) {
    if (!op.procedure.empty()) {
      auto it = schema.procedures.find(op.procedure);
      if (it == schema.procedures.end()) {
        problems.push_back(label + ": procedure " + op.procedure + " does not exist");
      } else {
        size_t in = 0, out = 0;
        bool ordered = true;  // BEDS binds the IN values first, then the OUT placeholders
        for (const auto& p : it->second.params) {
          if (p.mode == "IN") {
            ordered = ordered && out == 0;
            ++in;
          } else {
            ++out;
          }
          if (p.mode == "INOUT") {
            problems.push_back(label + ": procedure " + op.procedure + " has an INOUT parameter (" +
                               p.name + "), which templates do not support");
          }
        }
        if (!ordered) {
          problems.push_back(label + ": procedure " + op.procedure +
                             " must take its IN parameters before its OUT parameters");
        }
        if (in != op.params.size() || out != op.out.size()) {
          problems.push_back(
              label + ": procedure " + op.procedure + " takes " + std::to_string(in) + " IN and " +
              std::to_string(out) + " OUT/INOUT parameters; the template declares " +
              std::to_string(op.params.size()) + " and " + std::to_string(op.out.size()));
        } else if (auto misplaced = MisplacedParameters(op, it->second); !misplaced.empty()) {
          problems.push_back(label + ": " + misplaced);
        }
      }
    }
    if (!op.view.empty()) {
      auto it = schema.views.find(op.view);
      if (it == schema.views.end()) {
        problems.push_back(label + ": view " + op.view + " does not exist");
        return;
      }
      std::vector<std::string> needed = op.where;
      needed.insert(needed.end(), op.order.begin(), op.order.end());
      if (const FieldSpec* key = t.Key()) needed.push_back(key->name);
      for (const auto& column : needed) {
        const auto& cols = it->second.columns;
        if (std::none_of(cols.begin(), cols.end(),
                         [&](const SchemaColumn& c) { return c.name == column; })) {
          problems.push_back(label + ": view " + op.view + " has no column " + column);
        }
      }
    }
  };
  const OpSpec* fetch = t.Op("fetch");
  for (const auto& [name, op] : t.ops) {
    if (name == "count" && fetch && op.view == fetch->view && op.where == fetch->where &&
        op.order == fetch->order) {
      continue;  // derived from fetch, and checked as fetch
    }
    check_op(op, t.name + "/" + name);
  }
  for (const auto& [name, op] : t.calls) check_op(op, t.name + "/call " + name);
  // The same object named by two ops is reported twice; once is enough.
  std::sort(problems.begin(), problems.end());
  problems.erase(std::unique(problems.begin(), problems.end()), problems.end());
  return problems;
}

Result<std::string> Scaffold(std::string_view tla, const std::string& database,
                             const Schema& schema) {
  const std::string prefix = std::string(tla) + "_";
  const SchemaView* view = nullptr;
  for (const auto& [name, v] : schema.views) {
    if (name.starts_with(prefix)) {
      view = &v;
      break;
    }
  }
  std::vector<const SchemaRoutine*> procs;
  for (const auto& [name, p] : schema.procedures) {
    if (name.starts_with(prefix)) procs.push_back(&p);
  }
  if (!view && procs.empty()) {
    return Fail(Code::kNotFound, "no view or procedure starts with \"" + prefix + "\"");
  }
  auto proc = [&](std::string_view suffix) -> const SchemaRoutine* {
    for (const auto* p : procs) {
      if (p->name == prefix + std::string(suffix)) return p;
    }
    return nullptr;
  };

  // Fields: the view's columns, then any write parameter the view does not show.
  std::vector<std::pair<std::string, FieldType>> fields;
  auto add_field = [&](const std::string& name, const std::string& type, bool json) {
    for (const auto& f : fields) {
      if (f.first == name) return;
    }
    fields.emplace_back(name, json ? FieldType::kJson : FieldTypeForSql(type));
  };
  if (view) {
    for (const auto& c : view->columns) add_field(c.name, c.data_type, c.json);
  }
  for (const char* op : {"create", "update", "delete"}) {
    if (const auto* p = proc(op)) {
      for (const auto& param : p->params) {
        if (param.mode == "IN") add_field(FieldOfParameter(param.name), param.data_type, false);
      }
    }
  }
  std::string key;
  if (const auto* del = proc("delete"); del && !del->params.empty())
    key = FieldOfParameter(del->params[0].name);
  if (key.empty()) {
    for (const auto& f : fields) {
      if (f.first == "id") key = "id";
    }
  }

  std::ostringstream out;
  std::string name(tla);
  name[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(name[0])));
  out << "# Scaffolded by `beds template scaffold --tla " << tla
      << "`: review the types, mark the\n"
      << "# required fields and set max lengths, then rename the file to " << tla
      << "_<domain>_rel.toml.\n";
  out << "name     = \"" << name << "\"\n"
      << "class    = \"rel\"\n"
      << "tla      = \"" << tla << "\"\n"
      << "database = \"" << database << "\"\n\n[fields]\n";
  for (const auto& [field, type] : fields) {
    out << field << " = { type = \"" << FieldTypeName(type) << "\""
        << (field == key ? ", key = true" : "") << " }\n";
  }
  auto write_params = [&](const SchemaRoutine& p) {
    std::string in_list, out_list;
    for (const auto& param : p.params) {
      std::string& list = param.mode == "IN" ? in_list : out_list;
      list += (list.empty() ? "\"" : ", \"") + FieldOfParameter(param.name) + "\"";
    }
    out << "params    = [" << in_list << "]\n";
    if (!out_list.empty()) out << "out       = [" << out_list << "]\n";
  };
  if (view) {
    // JSON documents and raw bytes are neither compared nor sorted on.
    std::string cols;
    for (const auto& c : view->columns) {
      const FieldType type = c.json ? FieldType::kJson : FieldTypeForSql(c.data_type);
      if (type == FieldType::kJson || type == FieldType::kBytes) continue;
      cols += (cols.empty() ? "\"" : ", \"") + c.name + "\"";
    }
    out << "\n[ops.fetch]\nview      = \"" << view->name << "\"\nwhere     = [" << cols
        << "]\norder     = [" << cols << "]\nmax_limit = 500\n";
  }
  for (const char* op : {"create", "update", "delete"}) {
    if (const auto* p = proc(op)) {
      out << "\n[ops." << op << "]\nprocedure = \"" << p->name << "\"\n";
      write_params(*p);
    }
  }
  for (const auto* p : procs) {
    const std::string call = p->name.substr(prefix.size());
    if (call == "create" || call == "update" || call == "delete") continue;
    if (!IsIdentifier(call)) continue;
    out << "\n[ops.calls." << call << "]\nprocedure = \"" << p->name << "\"\n";
    write_params(*p);
    // The DBA's declaration says whether it changes data; undeclared (CONTAINS SQL) may.
    if (p->data_access == "READS SQL DATA" || p->data_access == "NO SQL") {
      out << "kind      = \"read\"    # " << p->name << " is declared " << p->data_access
          << ": routes to the read brokers\n";
    } else if (p->data_access == "MODIFIES SQL DATA") {
      out << "kind      = \"write\"   # " << p->name << " is declared MODIFIES SQL DATA\n";
    } else {
      out << "kind      = \"write\"   # " << p->name
          << " does not declare READS SQL DATA; \"read\" if it only reads\n";
    }
  }
  return out.str();
}

}  // namespace beds::templates
