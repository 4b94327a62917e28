// ECDH (provider-keyexch(7)) in the chip: the shared secret of a chip key
// (the TLS ephemeral key, seed fig. 3 step 9) and a peer's public point.
#include <openssl/core_names.h>
#include <openssl/params.h>

#include <cstring>

#include "provider/internal.h"

namespace devid::provider {
namespace {

struct ExchangeContext {
  ProviderContext* prov = nullptr;
  const Key* key = nullptr;
  const Key* peer = nullptr;
};

void* NewContext(void* provctx) {
  auto* ctx = new ExchangeContext;
  ctx->prov = static_cast<ProviderContext*>(provctx);
  return ctx;
}

void FreeContext(void* c) { delete static_cast<ExchangeContext*>(c); }

void* DupContext(void* c) { return new ExchangeContext(*static_cast<ExchangeContext*>(c)); }

int ExchangeInit(void* c, void* keydata, const OSSL_PARAM[]) {
  auto* ctx = static_cast<ExchangeContext*>(c);
  const auto* key = static_cast<const Key*>(keydata);
  if (key == nullptr || !key->has_private()) {
    RaiseError(ctx->prov, "ECDH needs a key held in a chip");
    return 0;
  }
  ctx->key = key;
  return 1;
}

int SetPeer(void* c, void* peerdata) {
  auto* ctx = static_cast<ExchangeContext*>(c);
  const auto* peer = static_cast<const Key*>(peerdata);
  if (peer == nullptr || peer->point.empty() || !peer->has_curve ||
      peer->curve != ctx->key->curve) {
    RaiseError(ctx->prov, "the ECDH peer key is not a point on the chip key's curve");
    return 0;
  }
  ctx->peer = peer;
  return 1;
}

int Derive(void* c, unsigned char* secret, size_t* secretlen, size_t outlen) {
  auto* ctx = static_cast<ExchangeContext*>(c);
  if (ctx->key == nullptr || ctx->peer == nullptr) return 0;
  size_t size = ctx->key->coordinate_size();
  if (secret == nullptr) {
    *secretlen = size;
    return 1;
  }
  if (outlen < size) return 0;
  const Key& key = *ctx->key;
  const Bytes& point = ctx->peer->point;
  auto shared = WithChip(key, [&](se::ChipClient& chip) { return chip.Ecdh(key.slot, point); });
  if (!shared.ok()) {
    RaiseError(ctx->prov, shared.error());
    return 0;
  }
  if (shared->size() != size) {  // never trust the chip's length with the caller's buffer
    RaiseError(ctx->prov, "the chip's ECDH answer has the wrong length");
    return 0;
  }
  std::memcpy(secret, shared->data(), shared->size());
  *secretlen = shared->size();
  SecureZero(shared->data(), shared->size());
  return 1;
}

int SetContextParams(void*, const OSSL_PARAM[]) { return 1; }
const OSSL_PARAM* SettableContextParams(void*, void*) {
  static const OSSL_PARAM kParams[] = {OSSL_PARAM_END};
  return kParams;
}

}  // namespace

const OSSL_DISPATCH kKeyexchFunctions[] = {
    {OSSL_FUNC_KEYEXCH_NEWCTX, Fn(NewContext)},
    {OSSL_FUNC_KEYEXCH_FREECTX, Fn(FreeContext)},
    {OSSL_FUNC_KEYEXCH_DUPCTX, Fn(DupContext)},
    {OSSL_FUNC_KEYEXCH_INIT, Fn(ExchangeInit)},
    {OSSL_FUNC_KEYEXCH_SET_PEER, Fn(SetPeer)},
    {OSSL_FUNC_KEYEXCH_DERIVE, Fn(Derive)},
    {OSSL_FUNC_KEYEXCH_SET_CTX_PARAMS, Fn(SetContextParams)},
    {OSSL_FUNC_KEYEXCH_SETTABLE_CTX_PARAMS, Fn(SettableContextParams)},
    {0, nullptr}};

}  // namespace devid::provider
