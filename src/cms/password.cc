#include "cms/password.h"

#include <argon2.h>

#include "core/bytes.h"
#include "crypto/key.h"

namespace devid::cms {

Result<std::string> HashPassword(std::string_view password, const PasswordCost& cost) {
  if (password.size() < kMinPasswordLength) {
    return MakeError(
        ErrorCode::kInvalidInput,
        "a password has at least " + std::to_string(kMinPasswordLength) + " characters");
  }
  if (password.size() > kMaxPasswordLength) {
    return MakeError(ErrorCode::kInvalidInput, "the password is too long");
  }
  DEVID_ASSIGN_OR_RETURN(Bytes salt, crypto::RandomBytes(16));
  constexpr size_t kHashLength = 32;
  size_t length = argon2_encodedlen(cost.passes, cost.memory_kib, cost.lanes,
                                    static_cast<uint32_t>(salt.size()), kHashLength, Argon2_id);
  std::string encoded(length, '\0');
  int rc = argon2id_hash_encoded(cost.passes, cost.memory_kib, cost.lanes, password.data(),
                                 password.size(), salt.data(), salt.size(), kHashLength,
                                 encoded.data(), encoded.size());
  if (rc != ARGON2_OK) {
    return MakeError(ErrorCode::kInternal,
                     std::string("Argon2id hashing failed: ") + argon2_error_message(rc));
  }
  encoded.resize(encoded.find('\0'));
  return encoded;
}

bool VerifyPassword(std::string_view password, const std::string& encoded_hash) {
  if (password.size() > kMaxPasswordLength || !encoded_hash.starts_with("$argon2id$")) {
    return false;
  }
  return argon2id_verify(encoded_hash.c_str(), password.data(), password.size()) == ARGON2_OK;
}

}  // namespace devid::cms
