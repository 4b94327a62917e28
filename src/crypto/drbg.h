// SP 800-90A CTR_DRBG (AES-256) through OpenSSL's EVP_RAND, fed with entropy
// the caller supplies (the chip's health-tested noise source).
#pragma once

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/handles.h"

namespace devid::crypto {

class CtrDrbg {
 public:
  // Instantiates with `entropy` (>= 48 bytes of full-entropy input, or more
  // raw samples) and a personalization string.
  static Result<CtrDrbg> Create(ByteView entropy, ByteView personalization);

  // Reseeds with fresh entropy (SP 800-90A §9.2); used before every request so
  // that each output depends on noise that passed the health tests just now.
  Status Reseed(ByteView entropy);
  Status Generate(uint8_t* out, size_t size);

 private:
  explicit CtrDrbg(UniquePtr<EVP_RAND_CTX> ctx) : ctx_(std::move(ctx)) {}
  UniquePtr<EVP_RAND_CTX> ctx_;
};

}  // namespace devid::crypto
