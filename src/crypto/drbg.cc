#include "crypto/drbg.h"

#include <algorithm>
#include <mutex>
#include <vector>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "crypto/error.h"

namespace devid::crypto {

namespace {
constexpr unsigned kStrength = 256;
// RAND_priv_bytes_ex takes an int; CTR_DRBG itself splits long requests.
constexpr size_t kMaxRequest = 1 << 16;
}  // namespace

namespace {

constexpr size_t kPoolLimit = 64;
constexpr size_t kCachedKeys = 8;

struct ContextPool {
  std::mutex mu;
  std::vector<std::pair<OSSL_LIB_CTX*, std::unique_ptr<DrbgContext::KeyCache>>> free;
};
ContextPool& Pool() {
  static ContextPool* pool = new ContextPool;  // never destroyed: contexts outlive main
  return *pool;
}

}  // namespace

Result<DrbgContext> DrbgContext::CreateFresh(ByteView entropy, ByteView personalization) {
  UniquePtr<OSSL_LIB_CTX> ctx(OSSL_LIB_CTX_new());
  if (!ctx) return OpenSslError("creating the chip's library context");
  // Pinned rather than left to the default, which a configuration could change.
  if (RAND_set_DRBG_type(ctx.get(), "CTR-DRBG", nullptr, "AES-256-CTR", nullptr) != 1) {
    return OpenSslError("selecting CTR-DRBG (AES-256) for the chip");
  }
  DrbgContext drbg(std::move(ctx), std::make_unique<KeyCache>());
  if (Status reseeded = drbg.Reseed(entropy, personalization); !reseeded.ok()) {
    drbg.ctx_.reset();
    return reseeded.error();
  }
  return drbg;
}

Result<DrbgContext> DrbgContext::Create(ByteView entropy, ByteView personalization) {
  UniquePtr<OSSL_LIB_CTX> ctx;
  std::unique_ptr<KeyCache> keys;
  {
    ContextPool& pool = Pool();
    std::lock_guard<std::mutex> lock(pool.mu);
    if (!pool.free.empty()) {
      ctx.reset(pool.free.back().first);
      keys = std::move(pool.free.back().second);
      pool.free.pop_back();
    }
  }
  if (!ctx) return CreateFresh(entropy, personalization);
  DrbgContext drbg(std::move(ctx), std::move(keys));
  if (Status reseeded = drbg.Reseed(entropy, personalization); !reseeded.ok()) {
    // A used context whose DRBG refuses a seed is dropped, never pooled again
    // (its cached keys first: they live in it).
    drbg.keys_.reset();
    drbg.ctx_.reset();
    ClearOpenSslErrors();
    return CreateFresh(entropy, personalization);
  }
  return drbg;
}

DrbgContext::~DrbgContext() {
  if (!ctx_) return;
  ContextPool& pool = Pool();
  std::unique_lock<std::mutex> lock(pool.mu);
  if (pool.free.size() < kPoolLimit) {
    pool.free.emplace_back(ctx_.release(), std::move(keys_));
    return;
  }
  lock.unlock();
  keys_.reset();  // its keys live in the context: gone before it
  ctx_.reset();
}

Result<std::shared_ptr<const PublicKey>> DrbgContext::EcPublicKey(KeyType curve, ByteView point) {
  for (const CachedKey& k : *keys_) {
    if (k.curve == curve &&
        std::equal(k.point.begin(), k.point.end(), point.begin(), point.end())) {
      return k.key;
    }
  }
  DEVID_ASSIGN_OR_RETURN(PublicKey made, EcPublicKeyFromPoint(curve, point, ctx_.get()));
  auto key = std::make_shared<const PublicKey>(std::move(made));
  if (keys_->size() >= kCachedKeys) keys_->erase(keys_->begin());
  keys_->push_back({curve, Bytes(point.begin(), point.end()), key});
  return key;
}

Status DrbgContext::Reseed(ByteView entropy, ByteView additional_input) {
  if (entropy.size() < kStrength / 8) {
    return MakeError(ErrorCode::kInternal, "DRBG reseed needs at least 32 bytes of entropy input");
  }
  // The private DRBG serves key generation, ECDSA nonces and RAND_priv_bytes.
  // OpenSSL keeps one per thread; the caller reseeds the one it then uses.
  EVP_RAND_CTX* drbg = RAND_get0_private(ctx_.get());
  if (drbg == nullptr) return OpenSslError("instantiating the chip's DRBG");
  if (EVP_RAND_reseed(drbg, 0, entropy.data(), entropy.size(), additional_input.data(),
                      additional_input.size()) != 1) {
    return OpenSslError("reseeding the chip's DRBG");
  }
  return {};
}

Status DrbgContext::Generate(uint8_t* out, size_t size) {
  while (size > 0) {
    size_t n = size < kMaxRequest ? size : kMaxRequest;
    if (RAND_priv_bytes_ex(ctx_.get(), out, n, kStrength) != 1) {
      return OpenSslError("generating from the chip's DRBG");
    }
    out += n;
    size -= n;
  }
  return {};
}

}  // namespace devid::crypto
