// The data model of a template (docs/templates.md): what NamasteCore and its adapters are told
// about a domain. The templates part loads and validates these from TOML; everything here is plain,
// immutable-after-load data, shared read-only between worker threads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace beds {

// A template's class (the TOML key `class`): REL (MariaDB procedures and views) or REC
// (documents in SQLite or MongoDB).
enum class TemplateClass { kRel, kRec };
// "rel" or "rec"; and back (nullopt for any other name).
std::string_view ClassName(TemplateClass c);
std::optional<TemplateClass> ClassNamed(std::string_view name);

enum class FieldType { kInt, kFloat, kDecimal, kBool, kString, kDate, kDatetime, kJson, kBytes };

// "int", "decimal", …; and back (nullopt for an unknown name).
std::string_view FieldTypeName(FieldType type);
std::optional<FieldType> FieldTypeFromName(std::string_view name);

struct FieldSpec {
  std::string name;
  FieldType type = FieldType::kString;
  bool key = false;       // the record's identity: `id` in the envelope
  bool required = false;  // must be present (and not null) on create
  int64_t max = 0;        // string: characters, bytes: decoded bytes; 0 = no limit
};

// One operation: create, fetch, count, update, delete, or a named call.
struct OpSpec {
  std::string name;                 // "create", …, or the call's name
  std::string procedure;            // REL: the stored procedure it CALLs
  std::string view;                 // REL fetch/count: the view it reads
  std::vector<std::string> params;  // IN parameters in signature order, taken from `data`
  std::vector<std::string> out;     // OUT parameters, after the IN ones in the signature
  std::vector<std::string> where;   // fields a client may filter on
  std::vector<std::string> order;   // fields a client may order by
  int64_t max_limit = 1000;         // fetch: the largest `limit` accepted (also the default)
  bool read = false;                // routing kind: read or write
  bool job = false;  // a call declared kind = "job": always run as a CALGON job (a write)
  // REL, filled in by the bind-check (templates::Annotate): the scale of each DECIMAL IN
  // parameter, by the name in `params`. A value with more decimal places is VALIDATION: MariaDB
  // would round it without a word.
  std::map<std::string, int, std::less<>> decimal_scale;
};

struct IndexSpec {  // REC
  std::string name;
  std::vector<std::string> fields;  // "-name" = descending
  std::optional<int64_t> expire_after_s;
};

struct Template {
  std::string name;                                    // what clients put in "template"
  TemplateClass template_class = TemplateClass::kRel;  // the TOML key `class`
  std::string tla;                 // three lowercase letters; REL objects start with "{tla}_"
  std::string route;               // routing-key prefix; default = the class's name
  std::string database;            // a [databases.*] entry
  std::string file;                // where it was loaded from, for messages
  std::string collection;          // REC
  std::vector<IndexSpec> indexes;  // REC
  std::vector<FieldSpec> fields;   // in declaration order
  std::map<std::string, OpSpec, std::less<>> ops;    // create fetch count update delete
  std::map<std::string, OpSpec, std::less<>> calls;  // op = "call", call = name

  const FieldSpec* Field(std::string_view field) const;
  const FieldSpec* Key() const;  // nullptr when no field is the key
  const OpSpec* Op(std::string_view op) const;
  const OpSpec* Call(std::string_view call) const;
  bool HasWrites() const;  // create, update, delete, or a call that is not a read
};

// What a database holds that templates can bind to, as read from its catalogue (MariaDB:
// information_schema) by the adapter. The templates part checks templates against it and writes
// scaffolds from it without opening a connection itself.
struct SchemaParam {
  std::string name;
  std::string mode;       // IN | OUT | INOUT
  std::string data_type;  // as the catalogue spells it: "int", "varchar", "decimal", …
  int scale = -1;         // DECIMAL: digits kept after the point; -1 for other types
};
struct SchemaColumn {
  std::string name;
  std::string data_type;
  bool nullable = true;
  bool json = false;  // a JSON column (MariaDB stores JSON as LONGTEXT checked by json_valid)
};
struct SchemaRoutine {
  std::string name;
  std::vector<SchemaParam> params;  // in signature order
  // SQL_DATA_ACCESS as declared: "READS SQL DATA", "MODIFIES SQL DATA", "NO SQL" or
  // "CONTAINS SQL" (the default when the DBA declared nothing).
  std::string data_access;
  std::string definition;  // the body as the catalogue holds it ("" when not readable)
};
struct SchemaView {
  std::string name;
  std::vector<SchemaColumn> columns;  // in ordinal order
};
struct Schema {
  std::map<std::string, SchemaRoutine, std::less<>> procedures;
  std::map<std::string, SchemaView, std::less<>> views;
  std::vector<std::string> tables;  // base tables, sorted
};

// The field type a catalogue data type maps to (scaffold); "" types map to string.
FieldType FieldTypeForSql(std::string_view data_type, std::string_view column_type = {});

}  // namespace beds
