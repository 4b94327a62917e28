// An OpenSSL library context of its own whose DRBG (SP 800-90A CTR_DRBG,
// AES-256) is fed with entropy the caller supplies: the chip's health-tested
// noise source. Keys generated or decoded in this context draw every random
// value they need (key generation, ECDSA nonces, scalar blinding) from it, so
// the chip's randomness never comes from the host's default generator alone.
#pragma once

#include <memory>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/handles.h"
#include "crypto/key.h"

namespace devid::crypto {

class DrbgContext {
 public:
  // A fresh library context, its DRBG instantiated and then reseeded with
  // `entropy` (>= 32 bytes of full-entropy input, or more raw samples) and
  // the personalization string as additional input.
  //
  // Contexts are reused: one whose chip is gone goes back to a process-wide
  // pool, and the next chip takes it and reseeds it with its own entropy and
  // personalization. A fresh OpenSSL 3 context fetches every algorithm anew on
  // first use (~2.5 ms for a key generation and its encoding on the reference
  // VM, against 0.3 ms in a used one), which a fleet of emulated chips in one
  // process pays per chip. The chip reseeds before every use anyway, so what
  // an earlier chip left in the DRBG only adds to the state.
  static Result<DrbgContext> Create(ByteView entropy, ByteView personalization);
  DrbgContext(DrbgContext&&) noexcept = default;
  DrbgContext& operator=(DrbgContext&&) = delete;
  ~DrbgContext();

  // Reseeds the calling thread's DRBG of this context (SP 800-90A §9.2); the
  // chip does it before every request, so that each output depends on noise
  // that passed the health tests just now. OpenSSL's own seed is mixed in too.
  Status Reseed(ByteView entropy, ByteView additional_input = {});
  Status Generate(uint8_t* out, size_t size);

  // For PrivateKey::Generate / FromPkcs8Der: keys that live in this context.
  OSSL_LIB_CTX* get() const { return ctx_.get(); }

  // An EC public key in this context from its curve and point (checked on
  // the curve, as EcPublicKeyFromPoint). The last few stay with the context,
  // pooled with it: chips verify with the same issuing-CA and server keys
  // again and again, and an OpenSSL 3 key costs a curve group to build (about
  // as much as the verification) each time it is made. Public keys only.
  Result<std::shared_ptr<const PublicKey>> EcPublicKey(KeyType curve, ByteView point);

  struct CachedKey {
    KeyType curve;
    Bytes point;
    std::shared_ptr<const PublicKey> key;
  };
  using KeyCache = std::vector<CachedKey>;

 private:
  static Result<DrbgContext> CreateFresh(ByteView entropy, ByteView personalization);
  DrbgContext(UniquePtr<OSSL_LIB_CTX> ctx, std::unique_ptr<KeyCache> keys)
      : ctx_(std::move(ctx)), keys_(std::move(keys)) {}
  UniquePtr<OSSL_LIB_CTX> ctx_;
  std::unique_ptr<KeyCache> keys_;
};

}  // namespace devid::crypto
