// The one error type that crosses part boundaries, and the codes of docs/protocol.md.
// A code says what the caller should do: answer the client, retry later, or give up.
// Plain values: safe to copy between threads.
#pragma once

#include <expected>
#include <optional>
#include <string>
#include <string_view>

namespace beds {

enum class Code {
  kBadRequest,       // not JSON, not an object, unknown field, wrong type
  kUnknownTemplate,  // no template of that name is registered
  kUnknownOp,        // the template has no such op (or call)
  kValidation,       // well-formed but breaks the template's rules
  kNotFound,
  kConflict,         // duplicate key, idempotency clash
  kForbidden,        // the caller may not do this
  kUnauthenticated,  // the gateway could not tell who the caller is (no or unknown credentials)
  kTooLarge,         // body over [protocol] max_body_bytes
  kTimeout,          // deadline passed before the work ran
  kUnavailable,      // a server is down or a template is not bound: retry later
  kInternal,         // a bug or an unexpected failure; the message is retried, then parked
};

// The wire name, e.g. "BAD_REQUEST".
std::string_view CodeName(Code code);

// True when the same request may succeed later without change (UNAVAILABLE, TIMEOUT, INTERNAL).
bool IsRetryable(Code code);

struct Error {
  Code code;
  std::string message;  // safe to show a user: no SQL, no stack, no credentials
  // Overrides the code's default: a write whose outcome is unknown is UNAVAILABLE but must not be
  // resent blindly (it may already have been applied).
  std::optional<bool> retry = std::nullopt;

  bool retryable() const { return retry.value_or(IsRetryable(code)); }
};

// A write that may or may not have been applied (its connection broke while it ran, or it was
// stopped part-way): UNAVAILABLE, and not retryable, since resending it could apply it twice.
Error OutcomeUnknownError(const std::string& what, const std::string& why);

// At most `max_bytes` of `text`, cut on a UTF-8 character boundary, with "…" when cut: for
// quoting client input in error messages without making the reply invalid UTF-8.
std::string Excerpt(std::string_view text, size_t max_bytes = 64);

// A value or the Error that stopped it. Must be used: a dropped Result is a failure nobody saw
// (the compiler says so; `(void)` marks the rare result that is ignored on purpose, with a reason).
template <typename T>
class [[nodiscard]] Result : public std::expected<T, Error> {
 public:
  using std::expected<T, Error>::expected;
  Result(std::expected<T, Error> other) : std::expected<T, Error>(std::move(other)) {}
};

// Result<void> helpers: `return Ok();` and `return Fail(Code::kX, "...");`
inline Result<void> Ok() { return {}; }
inline std::unexpected<Error> Fail(Code code, std::string message) {
  return std::unexpected(Error{code, std::move(message)});
}

}  // namespace beds
