// Password hashing for CMS users: Argon2id (RFC 9106) from libargon2, in its
// encoded form ("$argon2id$v=19$m=...,t=...,p=...$salt$hash") so that the
// parameters travel with each hash and can be raised later.
#pragma once

#include <string>
#include <string_view>

#include "core/result.h"

namespace devid::cms {

// OWASP's minimum for Argon2id: 19 MiB, 2 passes, 1 lane.
struct PasswordCost {
  uint32_t memory_kib = 19 * 1024;
  uint32_t passes = 2;
  uint32_t lanes = 1;
};

// Passwords shorter than this are refused when set.
inline constexpr size_t kMinPasswordLength = 12;
inline constexpr size_t kMaxPasswordLength = 1024;

// A fresh random salt each call.
Result<std::string> HashPassword(std::string_view password, const PasswordCost& cost = {});
// Constant-time comparison inside libargon2; false for a malformed hash.
bool VerifyPassword(std::string_view password, const std::string& encoded_hash);

}  // namespace devid::cms
