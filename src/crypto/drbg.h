// An OpenSSL library context of its own whose DRBG (SP 800-90A CTR_DRBG,
// AES-256) is fed with entropy the caller supplies: the chip's health-tested
// noise source. Keys generated or decoded in this context draw every random
// value they need (key generation, ECDSA nonces, scalar blinding) from it, so
// the chip's randomness never comes from the host's default generator alone.
#pragma once

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/handles.h"

namespace devid::crypto {

class DrbgContext {
 public:
  // A fresh library context, its DRBG instantiated and then reseeded with
  // `entropy` (>= 32 bytes of full-entropy input, or more raw samples) and
  // the personalization string as additional input.
  static Result<DrbgContext> Create(ByteView entropy, ByteView personalization);

  // Reseeds the calling thread's DRBG of this context (SP 800-90A §9.2); the
  // chip does it before every request, so that each output depends on noise
  // that passed the health tests just now. OpenSSL's own seed is mixed in too.
  Status Reseed(ByteView entropy, ByteView additional_input = {});
  Status Generate(uint8_t* out, size_t size);

  // For PrivateKey::Generate / FromPkcs8Der: keys that live in this context.
  OSSL_LIB_CTX* get() const { return ctx_.get(); }

 private:
  explicit DrbgContext(UniquePtr<OSSL_LIB_CTX> ctx) : ctx_(std::move(ctx)) {}
  UniquePtr<OSSL_LIB_CTX> ctx_;
};

}  // namespace devid::crypto
