#include "crypto/error.h"

#include <openssl/err.h>

#include <string>

namespace devid::crypto {

Error OpenSslError(std::string_view what, ErrorCode code) {
  std::string message(what);
  std::string reasons;
  unsigned long err = 0;
  const char* data = nullptr;
  int flags = 0;
  while ((err = ERR_get_error_all(nullptr, nullptr, nullptr, &data, &flags)) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!reasons.empty()) reasons += "; ";
    // Keep the reason string only ("error:0A000086:SSL routines::reason" -> reason).
    std::string s(buf);
    auto pos = s.rfind(':');
    reasons += pos == std::string::npos ? s : s.substr(pos + 1);
    if (data != nullptr && (flags & ERR_TXT_STRING) != 0 && *data != '\0') {
      reasons += " (";
      reasons += data;
      reasons += ")";
    }
  }
  if (!reasons.empty()) message += ": " + reasons;
  return Error{code, message};
}

void ClearOpenSslErrors() { ERR_clear_error(); }

}  // namespace devid::crypto
