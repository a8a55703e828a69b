#include "core/once.hpp"

#include <openssl/evp.h>

#include <bit>
#include <cstring>

namespace beds {
namespace json = boost::json;

namespace {

// SHA-256 over a sequence of parts, each prefixed with its length so that no two different
// sequences hash the same bytes ("ab","c" and "a","bc" differ).
class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
  ~Sha256() { EVP_MD_CTX_free(ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  Sha256& Part(std::string_view bytes) {
    const uint64_t n = bytes.size();
    EVP_DigestUpdate(ctx_, &n, sizeof n);
    EVP_DigestUpdate(ctx_, bytes.data(), bytes.size());
    return *this;
  }
  Sha256& Number(uint64_t n) {
    EVP_DigestUpdate(ctx_, &n, sizeof n);
    return *this;
  }
  std::string Done() {
    std::string out(32, '\0');
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx_, reinterpret_cast<unsigned char*>(out.data()), &len);
    out.resize(len);
    return out;
  }

 private:
  EVP_MD_CTX* ctx_;
};

}  // namespace

std::string OnceIdentityOfKey(std::string_view template_name, std::string_view user,
                              std::string_view key) {
  return Sha256().Part("key").Part(template_name).Part(user).Part(key).Done();
}

std::string OnceIdentityOfMessage(std::string_view message_id, std::string_view digest) {
  return Sha256().Part("message").Part(message_id).Part(digest).Done();
}

std::string OnceDigest(const Template& t, std::string_view op, const Payload& p) {
  Sha256 h;
  h.Part(t.name).Part(op).Number(p.values.size());
  for (const auto& [name, v] : p.values) {
    h.Part(name).Number(static_cast<uint64_t>(v.type)).Number(v.null ? 1 : 0);
    if (v.null) continue;
    h.Number(static_cast<uint64_t>(v.i)).Number(std::bit_cast<uint64_t>(v.f)).Part(v.text);
  }
  return h.Done();
}

std::string EncodeRecordedReply(const OpResult& result) {
  return json::serialize(json::object{{"data", result.data}, {"count", result.count}});
}

Result<OpResult> DecodeRecordedReply(std::string_view text) {
  std::error_code ec;
  json::value v = json::parse(text, ec);
  const json::object* o = ec ? nullptr : v.if_object();
  const json::value* data = o ? o->if_contains("data") : nullptr;
  const json::value* count = o ? o->if_contains("count") : nullptr;
  if (!data || !data->is_array() || !count || !count->is_int64()) {
    return Fail(Code::kInternal, "a recorded reply could not be read");
  }
  // Read before the move below: json::object::operator[] may rehash, which would free the node
  // `count` points into.
  OpResult r;
  r.count = count->get_int64();
  r.data = std::move(v.as_object().at("data").as_array());
  r.replayed = true;
  return r;
}

namespace {
constexpr std::string_view kKeyReused = "idempotency key reused with a different request";
}  // namespace

Error KeyReusedError() {
  return Error{Code::kConflict, std::string(kKeyReused) +
                                    ": nothing was run; a repeat must send the same request, and "
                                    "a new request needs a new key"};
}

bool IsKeyReused(const Error& error) {
  return error.code == Code::kConflict && error.message.starts_with(kKeyReused);
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

}  // namespace beds
