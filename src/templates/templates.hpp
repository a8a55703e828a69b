// Templates (docs/templates.md): load every *.toml of [templates] dir into validated Template
// values, check them against a database's catalogue (bind-check), and write a starting template
// from a catalogue (scaffold). Loading happens once at IPL; the resulting Snapshot is immutable and
// shared by every worker through a shared_ptr, so reading it needs no lock. This part never opens a
// database connection: the adapter reads the catalogue (core::Schema) and hands it in.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/template.hpp"

namespace beds::templates {

// One template from TOML text. Every problem is reported, one per line, as
// "{file}:{line}: key '{key}': {what}" (error code VALIDATION).
Result<Template> Parse(std::string_view toml_text, const std::string& file);

// Every *.toml in `dir`, sorted by file name; names must be unique and not a system template's.
Result<std::vector<Template>> LoadDir(const std::string& dir);

// The problems binding `t` to `schema` (empty = bound): every procedure and view must exist,
// procedures with the declared numbers of IN and OUT parameters, views with every field the op
// filters, orders or fetches by id on.
std::vector<std::string> BindCheck(const Template& t, const Schema& schema);

// What binds but looks wrong, for an operator to read (IPL logs them, `template check` prints
// them): a procedure parameter whose name matches no field passed in its position (the `p_`
// convention: p_isbn takes field isbn), a field whose type does not fit its parameter's, a
// `read` call whose procedure is declared MODIFIES SQL DATA. A field passed where the procedure
// takes a parameter named after another field is a BindCheck problem, not a warning: the
// values would land in the wrong columns.
std::vector<std::string> BindWarnings(const Template& t, const Schema& schema);

// Exactly-once writes on a REL template (docs/templates.md "Writes apply exactly once").
struct OnceProblems {
  // The objects of schema/mariadb/000_beds_idempotency.sql the database lacks, when the template
  // has a write: without them its writes cannot run.
  std::vector<std::string> missing;
  // Each write procedure whose body COMMITs, ROLLBACKs or starts a transaction of its own: its
  // effect would not commit or roll back together with the write's record.
  std::vector<std::string> ends_transaction;
};
OnceProblems OnceCheck(const Template& t, const Schema& schema);

// True when a procedure body (as information_schema holds it) ends or starts a transaction:
// COMMIT, ROLLBACK (not ROLLBACK TO a savepoint), START TRANSACTION or BEGIN WORK, outside
// comments and quoted text.
bool EndsTransaction(std::string_view definition);

// Records in `t` what requests are checked against once it is bound: each DECIMAL parameter's
// scale (OpSpec::decimal_scale).
void Annotate(Template& t, const Schema& schema);

// The field a procedure parameter is named after: "p_isbn" → "isbn" (also in_, out_, i_, o_).
std::string FieldOfParameter(const std::string& parameter);

// A REL template for the objects whose names start with "{tla}_": the first view becomes fetch,
// {tla}_create/_update/_delete the write ops, every other procedure a call.
Result<std::string> Scaffold(std::string_view tla, const std::string& database,
                             const Schema& schema);

// What the workers read: the templates by name, and those that failed to bind (dev mode) with
// the reason, which then answer UNAVAILABLE.
struct Snapshot {
  std::map<std::string, Template, std::less<>> by_name;
  std::map<std::string, std::string, std::less<>> unavailable;

  const Template* Find(std::string_view name) const;
};

// Names the system reserves (sys, calgon, lineage, admin).
bool IsSystemTemplate(std::string_view name);

}  // namespace beds::templates
