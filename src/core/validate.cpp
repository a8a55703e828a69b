#include "core/validate.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <charconv>
#include <limits>

namespace beds {
namespace {

namespace json = boost::json;

constexpr size_t kMaxInValues = 1000;
constexpr int64_t kMaxOffset = 1'000'000'000;

Result<Value> Invalid(std::string message) {
  return std::unexpected(Error{Code::kValidation, std::move(message)});
}

std::string Quoted(std::string_view name) { return "'" + std::string(name) + "'"; }

size_t Utf8Length(std::string_view s) {
  // Boost.JSON has already rejected invalid UTF-8: count the bytes that start a character.
  return static_cast<size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

bool AllDigits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int ToInt(std::string_view s) {
  int v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

bool ValidDate(int y, int m, int d) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (y < 1 || y > 9999 || m < 1 || m > 12 || d < 1) return false;
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return d <= kDays[m - 1] + (m == 2 && leap ? 1 : 0);
}

bool IsDecimal(std::string_view s) {
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  const size_t dot = s.find('.');
  if (dot == std::string_view::npos) return AllDigits(s) && s.size() <= 65;
  return AllDigits(s.substr(0, dot)) && AllDigits(s.substr(dot + 1)) && s.size() <= 66;
}

const char* JsonKind(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
      return "an integer";
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "?";
}

Result<Value> WrongType(std::string_view name, const FieldSpec& field, const json::value& v,
                        std::string_view expected) {
  return Invalid("field " + Quoted(name) + " must be " + std::string(expected) + " (" +
                 std::string(FieldTypeName(field.type)) + "), got " + JsonKind(v));
}

// "2026-02-30…": the shape of a date whose day the calendar does not have.
bool LooksLikeDate(std::string_view s) {
  return s.size() >= 10 && s[4] == '-' && s[7] == '-' && AllDigits(s.substr(0, 4)) &&
         AllDigits(s.substr(5, 2)) && AllDigits(s.substr(8, 2)) &&
         !ValidDate(ToInt(s.substr(0, 4)), ToInt(s.substr(5, 2)), ToInt(s.substr(8, 2)));
}

Result<Value> NoSuchDay(std::string_view name, const json::value& v) {
  return Invalid("field " + Quoted(name) + " must be a date that exists: " +
                 std::string(v.get_string().subview(0, 10)) + " is not a day of the calendar");
}

// Digits after the decimal point that matter ("9.990" has 2).
int DecimalPlaces(std::string_view text) {
  const size_t dot = text.find('.');
  if (dot == std::string_view::npos) return 0;
  std::string_view fraction = text.substr(dot + 1);
  while (!fraction.empty() && fraction.back() == '0') fraction.remove_suffix(1);
  return static_cast<int>(fraction.size());
}

// The key as it arrives in the envelope's `id` (always text): typed like the key field.
Result<Value> KeyFromId(const FieldSpec& key, std::string_view id) {
  if (key.type == FieldType::kInt) {
    std::string_view digits = id;
    if (!digits.empty() && digits[0] == '-') digits.remove_prefix(1);
    int64_t v = 0;
    auto [ptr, ec] = std::from_chars(id.data(), id.data() + id.size(), v);
    if (!AllDigits(digits) || ec != std::errc() || ptr != id.data() + id.size()) {
      return Invalid("id must be an integer for this template");
    }
    return Value{FieldType::kInt, false, v, 0, {}};
  }
  return ToValue("id", key, json::value(json::string(id)));
}

}  // namespace

std::optional<std::string> NormalizeDate(std::string_view s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  if (!AllDigits(s.substr(0, 4)) || !AllDigits(s.substr(5, 2)) || !AllDigits(s.substr(8, 2)))
    return std::nullopt;
  if (!ValidDate(ToInt(s.substr(0, 4)), ToInt(s.substr(5, 2)), ToInt(s.substr(8, 2))))
    return std::nullopt;
  return std::string(s);
}

std::optional<std::string> NormalizeDatetime(std::string_view s) {
  if (s.size() < 16) return std::nullopt;
  auto date = NormalizeDate(s.substr(0, 10));
  if (!date || (s[10] != 'T' && s[10] != ' ')) return std::nullopt;
  std::string_view rest = s.substr(11);
  // The zone: Z, +00:00 or nothing (UTC is the only zone BEDS stores).
  if (rest.ends_with('Z') || rest.ends_with('z')) {
    rest.remove_suffix(1);
  } else if (rest.ends_with("+00:00") || rest.ends_with("-00:00")) {
    rest.remove_suffix(6);
  }
  if (rest.size() < 5 || rest[2] != ':' || !AllDigits(rest.substr(0, 2)) ||
      !AllDigits(rest.substr(3, 2)))
    return std::nullopt;
  if (ToInt(rest.substr(0, 2)) > 23 || ToInt(rest.substr(3, 2)) > 59) return std::nullopt;
  std::string out = *date + " " + std::string(rest.substr(0, 5));
  rest.remove_prefix(5);
  if (rest.empty()) return out + ":00";
  if (rest.size() < 3 || rest[0] != ':' || !AllDigits(rest.substr(1, 2)) ||
      ToInt(rest.substr(1, 2)) > 59)
    return std::nullopt;
  out += rest.substr(0, 3);
  rest.remove_prefix(3);
  if (rest.empty()) return out;
  if (rest[0] != '.' || rest.size() < 2 || rest.size() > 7 || !AllDigits(rest.substr(1)))
    return std::nullopt;
  return out + std::string(rest);
}

std::string Base64Encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(std::max(n, 0)));
  return out;
}

std::optional<std::string> Base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  if (text.empty()) return std::string();
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    const bool pad =
        c == '=' && i >= text.size() - 2 && (i == text.size() - 1 || text.back() == '=');
    if (!alnum && c != '+' && c != '/' && !pad) return std::nullopt;
  }
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t len = static_cast<size_t>(n);
  if (text.ends_with("=="))
    len -= 2;
  else if (text.ends_with('='))
    len -= 1;
  out.resize(len);
  return out;
}

Result<Value> ToValue(std::string_view name, const FieldSpec& field, const json::value& v) {
  Value out{field.type, false, 0, 0, {}};
  if (v.is_null()) return Value::Null(field.type);
  switch (field.type) {
    case FieldType::kInt:
      if (v.is_int64()) {
        out.i = v.get_int64();
      } else if (v.is_uint64() && v.get_uint64() <= uint64_t(std::numeric_limits<int64_t>::max())) {
        out.i = static_cast<int64_t>(v.get_uint64());
      } else {
        return WrongType(name, field, v, "an integer");
      }
      return out;
    case FieldType::kFloat:
      if (!v.is_number()) return WrongType(name, field, v, "a number");
      out.f = v.to_number<double>();
      return out;
    case FieldType::kDecimal:
      if (v.is_int64()) {
        out.text = std::to_string(v.get_int64());
      } else if (v.is_uint64()) {
        out.text = std::to_string(v.get_uint64());
      } else if (v.is_string() && IsDecimal(v.get_string())) {
        out.text = v.get_string();
      } else {
        return WrongType(name, field, v, "a decimal as a string such as \"12.34\"");
      }
      return out;
    case FieldType::kBool:
      if (!v.is_bool()) return WrongType(name, field, v, "true or false");
      out.i = v.get_bool() ? 1 : 0;
      return out;
    case FieldType::kString:
      if (!v.is_string()) return WrongType(name, field, v, "a string");
      if (field.max > 0 && Utf8Length(v.get_string()) > static_cast<size_t>(field.max)) {
        return Invalid("field " + Quoted(name) + " is longer than " + std::to_string(field.max) +
                       " characters");
      }
      out.text = v.get_string();
      return out;
    case FieldType::kDate: {
      auto d = v.is_string() ? NormalizeDate(v.get_string()) : std::nullopt;
      if (!d && v.is_string() && LooksLikeDate(v.get_string())) return NoSuchDay(name, v);
      if (!d) return WrongType(name, field, v, "a date such as \"2026-11-24\"");
      out.text = std::move(*d);
      return out;
    }
    case FieldType::kDatetime: {
      auto d = v.is_string() ? NormalizeDatetime(v.get_string()) : std::nullopt;
      if (!d && v.is_string() && LooksLikeDate(v.get_string())) return NoSuchDay(name, v);
      if (!d)
        return WrongType(name, field, v, "an ISO 8601 UTC time such as \"2026-11-24T17:07:20Z\"");
      out.text = std::move(*d);
      return out;
    }
    case FieldType::kJson:
      out.text = json::serialize(v);
      if (field.max > 0 && out.text.size() > static_cast<size_t>(field.max)) {
        return Invalid("field " + Quoted(name) + " is larger than " + std::to_string(field.max) +
                       " bytes");
      }
      return out;
    case FieldType::kBytes: {
      auto bytes = v.is_string() ? Base64Decode(v.get_string()) : std::nullopt;
      if (!bytes) return WrongType(name, field, v, "base64 text");
      if (field.max > 0 && bytes->size() > static_cast<size_t>(field.max)) {
        return Invalid("field " + Quoted(name) + " is larger than " + std::to_string(field.max) +
                       " bytes");
      }
      out.text = std::move(*bytes);
      return out;
    }
  }
  return WrongType(name, field, v, "a known type");
}

Value InferValue(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return Value::Null(FieldType::kString);
    case json::kind::bool_:
      return Value{FieldType::kBool, false, v.get_bool() ? 1 : 0, 0, {}};
    case json::kind::int64:
      return Value{FieldType::kInt, false, v.get_int64(), 0, {}};
    case json::kind::uint64:
      return Value{FieldType::kDecimal, false, 0, 0, std::to_string(v.get_uint64())};
    case json::kind::double_:
      return Value{FieldType::kFloat, false, 0, v.get_double(), {}};
    case json::kind::string:
      return Value{FieldType::kString, false, 0, 0, std::string(v.get_string())};
    default:
      return Value{FieldType::kJson, false, 0, 0, json::serialize(v)};
  }
}

Result<Payload> ValidatePayload(const Template& t, const OpSpec& op, std::string_view op_name,
                                const json::object& data, std::string_view id) {
  Payload p;
  const bool is_call = op_name == "call";
  const std::string what = t.name + "/" + (is_call ? op.name : std::string(op_name));
  auto takes = [&](std::string_view name) {
    return std::find(op.params.begin(), op.params.end(), name) != op.params.end();
  };
  for (const auto& [name, v] : data) {
    const FieldSpec* field = t.Field(name);
    if (!takes(name)) {
      if (!field && !is_call)
        return std::unexpected(Error{Code::kValidation, "unknown field " + Quoted(name)});
      return std::unexpected(
          Error{Code::kValidation, "field " + Quoted(name) + " is not a parameter of " + what});
    }
    if (field) {
      auto value = ToValue(name, *field, v);
      if (!value) return std::unexpected(value.error());
      p.values[std::string(name)] = std::move(*value);
    } else {
      p.values[std::string(name)] = InferValue(v);
    }
  }
  // MariaDB rounds a DECIMAL parameter to its scale without a word: 9.999 would be stored as
  // 10.00. The bind-check recorded each parameter's scale, so such a value is refused instead.
  for (const auto& [name, scale] : op.decimal_scale) {
    auto it = p.values.find(name);
    if (it == p.values.end() || it->second.null) continue;
    const Value& v = it->second;
    std::string_view text = v.text;
    char buf[64];
    if (v.type == FieldType::kFloat) {
      // A JSON number (a float field, or a call parameter typed by its value): its shortest
      // exact form says how many places it has.
      const auto r = std::to_chars(buf, buf + sizeof buf, v.f, std::chars_format::fixed);
      text = std::string_view(buf, r.ec == std::errc() ? r.ptr : buf);
    } else if (v.type != FieldType::kDecimal && v.type != FieldType::kString) {
      continue;
    }
    if (const int places = DecimalPlaces(text); places > scale) {
      return std::unexpected(Error{
          Code::kValidation, "field " + Quoted(name) + " has " + std::to_string(places) +
                                 " decimal places; " + what + " keeps " + std::to_string(scale) +
                                 ": round the value (the database would round it silently)"});
    }
  }
  const FieldSpec* key = t.Key();
  if (key && takes(key->name) && !id.empty()) {
    auto value = KeyFromId(*key, id);
    if (!value) return std::unexpected(value.error());
    p.values[key->name] = std::move(*value);
  }
  const bool needs_key = op_name == "update" || op_name == "delete";
  if (needs_key && key && takes(key->name)) {
    auto it = p.values.find(key->name);
    if (it == p.values.end() || it->second.null) {
      return std::unexpected(
          Error{Code::kValidation, std::string(op_name) + " needs the record's id"});
    }
  }
  if (op_name == "create") {
    for (const auto& f : t.fields) {
      if (!f.required) continue;
      auto it = p.values.find(f.name);
      if (it == p.values.end() || it->second.null) {
        return std::unexpected(
            Error{Code::kValidation, "field " + Quoted(f.name) + " is required"});
      }
    }
  }
  return p;
}

Result<Query> ValidateQuery(const Template& t, const OpSpec& op, const QueryInput& in,
                            bool counting) {
  Query q;
  const std::string what = t.name + "/" + (counting ? "count" : "fetch");
  auto fail = [](std::string m) { return std::unexpected(Error{Code::kValidation, std::move(m)}); };
  if (!in.id.empty()) {
    const FieldSpec* key = t.Key();
    if (!key) return fail("template '" + t.name + "' has no key field to fetch by id");
    auto value = KeyFromId(*key, in.id);
    if (!value) return std::unexpected(value.error());
    q.filters.push_back(Filter{key->name, Filter::Op::kEq, {std::move(*value)}});
  }
  if (in.where) {
    for (const auto& [name, v] : *in.where) {
      const FieldSpec* field = t.Field(name);
      if (!field || std::find(op.where.begin(), op.where.end(), name) == op.where.end()) {
        return fail("field " + Quoted(name) + " is not a filter of " + what);
      }
      if (v.is_null()) return fail("filter " + Quoted(name) + " cannot be null");
      if (v.is_array()) return fail("filter " + Quoted(name) + ": use {\"in\": [...]} for a list");
      if (!v.is_object()) {
        auto value = ToValue(name, *field, v);
        if (!value) return std::unexpected(value.error());
        q.filters.push_back(Filter{std::string(name), Filter::Op::kEq, {std::move(*value)}});
        continue;
      }
      if (v.get_object().empty()) return fail("filter " + Quoted(name) + " has no operator");
      for (const auto& [oper, operand] : v.get_object()) {
        static const std::pair<std::string_view, Filter::Op> kOps[] = {
            {"gt", Filter::Op::kGt},   {"gte", Filter::Op::kGte}, {"lt", Filter::Op::kLt},
            {"lte", Filter::Op::kLte}, {"in", Filter::Op::kIn},   {"eq", Filter::Op::kEq}};
        auto found = std::find_if(std::begin(kOps), std::end(kOps),
                                  [&](const auto& o) { return o.first == oper; });
        if (found == std::end(kOps)) {
          return fail(
              "filter " + Quoted(name) + ": unknown operator " +
              Quoted(oper.size() > 16 ? std::string(oper.substr(0, 16)) + "…" : std::string(oper)) +
              " (use eq, gt, gte, lt, lte or in)");
        }
        Filter f{std::string(name), found->second, {}};
        if (f.op == Filter::Op::kIn) {
          if (!operand.is_array() || operand.get_array().empty() ||
              operand.get_array().size() > kMaxInValues) {
            return fail("filter " + Quoted(name) + ": in takes an array of 1 to " +
                        std::to_string(kMaxInValues) + " values");
          }
          for (const auto& item : operand.get_array()) {
            if (item.is_null()) return fail("filter " + Quoted(name) + " cannot be null");
            auto value = ToValue(name, *field, item);
            if (!value) return std::unexpected(value.error());
            f.values.push_back(std::move(*value));
          }
        } else {
          if (operand.is_null()) return fail("filter " + Quoted(name) + " cannot be null");
          auto value = ToValue(name, *field, operand);
          if (!value) return std::unexpected(value.error());
          f.values.push_back(std::move(*value));
        }
        q.filters.push_back(std::move(f));
      }
    }
  }
  if (counting) return q;  // order, limit and offset do not change a count

  std::string_view order = in.order;
  while (!order.empty()) {
    const size_t comma = order.find(',');
    std::string_view item = order.substr(0, comma);
    order = comma == std::string_view::npos ? std::string_view{} : order.substr(comma + 1);
    bool desc = false;
    if (!item.empty() && (item[0] == '-' || item[0] == '+')) {
      desc = item[0] == '-';
      item.remove_prefix(1);
    }
    if (std::find(op.order.begin(), op.order.end(), item) == op.order.end()) {
      return fail("cannot order " + what + " by " +
                  Quoted(item.size() > 32 ? item.substr(0, 32) : item));
    }
    q.order.emplace_back(std::string(item), desc);
  }
  q.limit = in.limit.value_or(op.max_limit);
  if (q.limit < 1 || q.limit > op.max_limit) {
    return fail("limit must be between 1 and " + std::to_string(op.max_limit) + " for " + what);
  }
  q.offset = in.offset.value_or(0);
  if (q.offset < 0 || q.offset > kMaxOffset) return fail("offset must be between 0 and 10^9");
  return q;
}

}  // namespace beds
