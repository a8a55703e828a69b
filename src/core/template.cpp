#include "core/template.hpp"

#include <array>
#include <utility>

namespace beds {

std::string_view ClassName(TemplateClass c) { return c == TemplateClass::kRel ? "rel" : "rec"; }

std::optional<TemplateClass> ClassNamed(std::string_view name) {
  if (name == "rel") return TemplateClass::kRel;
  if (name == "rec") return TemplateClass::kRec;
  return std::nullopt;
}
namespace {

constexpr std::array<std::pair<FieldType, std::string_view>, 9> kTypeNames = {{
    {FieldType::kInt, "int"},
    {FieldType::kFloat, "float"},
    {FieldType::kDecimal, "decimal"},
    {FieldType::kBool, "bool"},
    {FieldType::kString, "string"},
    {FieldType::kDate, "date"},
    {FieldType::kDatetime, "datetime"},
    {FieldType::kJson, "json"},
    {FieldType::kBytes, "bytes"},
}};

}  // namespace

std::string_view FieldTypeName(FieldType type) {
  for (const auto& [t, name] : kTypeNames) {
    if (t == type) return name;
  }
  return "?";
}

std::optional<FieldType> FieldTypeFromName(std::string_view name) {
  for (const auto& [t, n] : kTypeNames) {
    if (n == name) return t;
  }
  return std::nullopt;
}

const FieldSpec* Template::Field(std::string_view field) const {
  for (const auto& f : fields) {
    if (f.name == field) return &f;
  }
  return nullptr;
}

const FieldSpec* Template::Key() const {
  for (const auto& f : fields) {
    if (f.key) return &f;
  }
  return nullptr;
}

const OpSpec* Template::Op(std::string_view op) const {
  auto it = ops.find(op);
  return it == ops.end() ? nullptr : &it->second;
}

const OpSpec* Template::Call(std::string_view call) const {
  auto it = calls.find(call);
  return it == calls.end() ? nullptr : &it->second;
}

FieldType FieldTypeForSql(std::string_view t, std::string_view column_type) {
  if (t == "tinyint" && column_type.starts_with("tinyint(1)")) return FieldType::kBool;
  if (t == "tinyint" || t == "smallint" || t == "mediumint" || t == "int" || t == "bigint" ||
      t == "year")
    return FieldType::kInt;
  if (t == "float" || t == "double" || t == "real") return FieldType::kFloat;
  if (t == "decimal" || t == "numeric") return FieldType::kDecimal;
  if (t == "date") return FieldType::kDate;
  if (t == "datetime" || t == "timestamp") return FieldType::kDatetime;
  if (t == "json") return FieldType::kJson;
  if (t == "blob" || t == "tinyblob" || t == "mediumblob" || t == "longblob" || t == "binary" ||
      t == "varbinary")
    return FieldType::kBytes;
  return FieldType::kString;
}

}  // namespace beds

namespace beds {

bool Template::HasWrites() const {
  if (Op("create") || Op("update") || Op("delete")) return true;
  for (const auto& [name, call] : calls) {
    if (!call.read) return true;
  }
  return false;
}

}  // namespace beds
