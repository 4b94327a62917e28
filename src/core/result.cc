#include "core/result.h"

namespace devid {

const char* ErrorCodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidInput:
      return "invalid_input";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kAlreadyExists:
      return "already_exists";
    case ErrorCode::kPolicy:
      return "policy";
    case ErrorCode::kCrypto:
      return "crypto";
    case ErrorCode::kVerification:
      return "verification";
    case ErrorCode::kStorage:
      return "storage";
    case ErrorCode::kAuth:
      return "auth";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kTamper:
      return "tamper";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

}  // namespace devid
