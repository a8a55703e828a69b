#include "core/error.hpp"

namespace beds {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kBadRequest:
      return "BAD_REQUEST";
    case Code::kUnknownTemplate:
      return "UNKNOWN_TEMPLATE";
    case Code::kUnknownOp:
      return "UNKNOWN_OP";
    case Code::kValidation:
      return "VALIDATION";
    case Code::kNotFound:
      return "NOT_FOUND";
    case Code::kConflict:
      return "CONFLICT";
    case Code::kForbidden:
      return "FORBIDDEN";
    case Code::kUnauthenticated:
      return "UNAUTHENTICATED";
    case Code::kTooLarge:
      return "TOO_LARGE";
    case Code::kTimeout:
      return "TIMEOUT";
    case Code::kUnavailable:
      return "UNAVAILABLE";
    case Code::kInternal:
      return "INTERNAL";
  }
  return "INTERNAL";
}

bool IsRetryable(Code code) {
  return code == Code::kUnavailable || code == Code::kTimeout || code == Code::kInternal;
}

Error OutcomeUnknownError(const std::string& what, const std::string& why) {
  return Error{Code::kUnavailable, what + ": " + why + "; it may or may not have been applied",
               false};
}

std::string Excerpt(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t end = max_bytes;
  // Step back over continuation bytes (10xxxxxx) so the cut lands before a lead byte.
  while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  return std::string(text.substr(0, end)) + "…";
}

}  // namespace beds
