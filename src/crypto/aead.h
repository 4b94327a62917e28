// AES-256-GCM authenticated encryption (the chip's NVM sealing and AES command).
#pragma once

#include "core/bytes.h"
#include "core/result.h"

namespace devid::crypto {

inline constexpr size_t kAesGcmKeySize = 32;
inline constexpr size_t kAesGcmNonceSize = 12;
inline constexpr size_t kAesGcmTagSize = 16;

// Returns ciphertext || 16-byte tag.
Result<Bytes> AesGcmSeal(ByteView key, ByteView nonce, ByteView aad, ByteView plaintext);
// Takes ciphertext || tag; kVerification when the tag does not match.
Result<Bytes> AesGcmOpen(ByteView key, ByteView nonce, ByteView aad, ByteView sealed);

// HKDF (RFC 5869) with SHA-256.
Result<Bytes> HkdfSha256(ByteView secret, ByteView salt, ByteView info, size_t length);
// HMAC-SHA256 (challenge-response authentication).
Result<Bytes> HmacSha256(ByteView key, ByteView data);

}  // namespace devid::crypto
