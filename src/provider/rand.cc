// A random generator (provider-rand(7)) that is the chip: every request is a
// GET_RANDOM, answered by the chip's health-tested TRNG and DRBG. Installed as
// a library context's DRBG (LoadOptions::chip_random), it supplies the TLS
// client random (seed fig. 3 step 1) and every other random value libssl
// draws in that context.
#include <openssl/core_names.h>
#include <openssl/params.h>

#include <cstring>

#include "provider/internal.h"

namespace devid::provider {
namespace {

constexpr size_t kMaxRequest = 4096;  // GET_RANDOM's largest answer

struct RandContext {
  ProviderContext* prov = nullptr;
  std::mutex mu;
  int state = EVP_RAND_STATE_UNINITIALISED;
};

void* NewContext(void* provctx, void*, const OSSL_DISPATCH*) {
  auto* ctx = new RandContext;
  ctx->prov = static_cast<ProviderContext*>(provctx);
  return ctx;
}

void FreeContext(void* c) { delete static_cast<RandContext*>(c); }

int Instantiate(void* c, unsigned int strength, int, const unsigned char*, size_t,
                const OSSL_PARAM[]) {
  auto* ctx = static_cast<RandContext*>(c);
  if (strength > 256) return 0;
  ctx->state = EVP_RAND_STATE_READY;
  return 1;
}

int Uninstantiate(void* c) {
  static_cast<RandContext*>(c)->state = EVP_RAND_STATE_UNINITIALISED;
  return 1;
}

int Generate(void* c, unsigned char* out, size_t outlen, unsigned int strength, int,
             const unsigned char*, size_t) {
  auto* ctx = static_cast<RandContext*>(c);
  if (ctx->state != EVP_RAND_STATE_READY || strength > 256) return 0;
  auto chip = ctx->prov->DefaultChip();
  if (!chip.ok()) {
    RaiseError(ctx->prov, chip.error());
    ctx->state = EVP_RAND_STATE_ERROR;
    return 0;
  }
  while (outlen > 0) {
    size_t n = outlen < kMaxRequest ? outlen : kMaxRequest;
    Result<Bytes> bytes = MakeError(ErrorCode::kInternal, "");
    {
      std::lock_guard<std::mutex> lock((*chip)->mu);
      bytes = (*chip)->client.GetRandom(n);
    }
    if (!bytes.ok() || bytes->size() != n) {
      // A failed TRNG gives no bytes at all, never weak ones.
      RaiseError(ctx->prov, "the chip gave no random bytes: %s",
                 bytes.ok() ? "short answer" : bytes.error().message.c_str());
      return 0;
    }
    std::memcpy(out, bytes->data(), n);
    SecureZero(bytes->data(), bytes->size());
    out += n;
    outlen -= n;
  }
  return 1;
}

// The chip reseeds its DRBG from its TRNG on every request by itself.
int Reseed(void*, int, const unsigned char*, size_t, const unsigned char*, size_t) { return 1; }

int EnableLocking(void*) { return 1; }
int Lock(void* c) {
  static_cast<RandContext*>(c)->mu.lock();
  return 1;
}
void Unlock(void* c) { static_cast<RandContext*>(c)->mu.unlock(); }

int GetContextParams(void* c, OSSL_PARAM params[]) {
  auto* ctx = static_cast<RandContext*>(c);
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STATE);
  if (p != nullptr && OSSL_PARAM_set_int(p, ctx->state) != 1) return 0;
  p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_STRENGTH);
  if (p != nullptr && OSSL_PARAM_set_uint(p, 256) != 1) return 0;
  p = OSSL_PARAM_locate(params, OSSL_RAND_PARAM_MAX_REQUEST);
  if (p != nullptr && OSSL_PARAM_set_size_t(p, kMaxRequest) != 1) return 0;
  return 1;
}

const OSSL_PARAM* GettableContextParams(void*, void*) {
  static const OSSL_PARAM kParams[] = {OSSL_PARAM_int(OSSL_RAND_PARAM_STATE, nullptr),
                                       OSSL_PARAM_uint(OSSL_RAND_PARAM_STRENGTH, nullptr),
                                       OSSL_PARAM_size_t(OSSL_RAND_PARAM_MAX_REQUEST, nullptr),
                                       OSSL_PARAM_END};
  return kParams;
}

int VerifyZeroization(void*) { return 1; }  // nothing secret is kept here

}  // namespace

const OSSL_DISPATCH kRandFunctions[] = {
    {OSSL_FUNC_RAND_NEWCTX, Fn(NewContext)},
    {OSSL_FUNC_RAND_FREECTX, Fn(FreeContext)},
    {OSSL_FUNC_RAND_INSTANTIATE, Fn(Instantiate)},
    {OSSL_FUNC_RAND_UNINSTANTIATE, Fn(Uninstantiate)},
    {OSSL_FUNC_RAND_GENERATE, Fn(Generate)},
    {OSSL_FUNC_RAND_RESEED, Fn(Reseed)},
    {OSSL_FUNC_RAND_ENABLE_LOCKING, Fn(EnableLocking)},
    {OSSL_FUNC_RAND_LOCK, Fn(Lock)},
    {OSSL_FUNC_RAND_UNLOCK, Fn(Unlock)},
    {OSSL_FUNC_RAND_GET_CTX_PARAMS, Fn(GetContextParams)},
    {OSSL_FUNC_RAND_GETTABLE_CTX_PARAMS, Fn(GettableContextParams)},
    {OSSL_FUNC_RAND_VERIFY_ZEROIZATION, Fn(VerifyZeroization)},
    {0, nullptr}};

}  // namespace devid::provider
