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

}  // namespace beds
