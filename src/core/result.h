// Result<T>: a value or an Error with a stable code and a human message.
// std::expected is C++23 and clang 14 (needed for libFuzzer) lacks it.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace devid {

enum class ErrorCode {
  kInvalidInput,   // malformed bytes or arguments
  kNotFound,       // an organization, CA, certificate... does not exist
  kAlreadyExists,  // a unique name or serial is taken
  kPolicy,         // a template or CA rule refuses the request
  kCrypto,         // OpenSSL refused (carries its error queue)
  kVerification,   // a signature or chain does not verify
  kStorage,        // the store failed
  kAuth,           // wrong passphrase, missing credentials
  kIo,             // files
  kTamper,         // stored state fails its integrity check (modified, truncated, rolled back)
  kInternal,       // a bug
};

const char* ErrorCodeName(ErrorCode code);

struct Error {
  ErrorCode code;
  std::string message;

  // Prefixes the message with what was being done: "loading CA key: <message>".
  Error Context(std::string_view what) const {
    return Error{code, std::string(what) + ": " + message};
  }
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }

  const Error& error() const {
    assert(!ok());
    return std::get<1>(v_);
  }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT: implicit by design

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const {
    assert(!ok_);
    return error_;
  }

 private:
  Error error_{ErrorCode::kInternal, {}};
  bool ok_ = true;
};

using Status = Result<void>;

inline Error MakeError(ErrorCode code, std::string message) {
  return Error{code, std::move(message)};
}

}  // namespace devid

#define DEVID_CONCAT_INNER_(a, b) a##b
#define DEVID_CONCAT_(a, b) DEVID_CONCAT_INNER_(a, b)

// Evaluates a Result-returning expression; on error returns the error from the enclosing function.
#define DEVID_TRY(expr)                 \
  do {                                  \
    auto devid_try_status_ = (expr);    \
    if (!devid_try_status_.ok()) {      \
      return devid_try_status_.error(); \
    }                                   \
  } while (false)

// Declares `lhs` from a Result-returning expression, or returns its error.
#define DEVID_ASSIGN_OR_RETURN(lhs, expr) \
  DEVID_ASSIGN_OR_RETURN_IMPL_(DEVID_CONCAT_(devid_result_, __LINE__), lhs, expr)
#define DEVID_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) {                                   \
    return tmp.error();                              \
  }                                                  \
  lhs = std::move(tmp).value()
