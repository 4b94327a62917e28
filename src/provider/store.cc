// The `devid:` store loader (provider-storemgmt(7)): a URI names a chip and a
// key slot; loading reads the slot's public key (READ_PUBLIC_KEY) and hands
// libcrypto a reference that this provider's key management turns into a key
// object. Nothing secret crosses: the private key stays in the chip.
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/params.h>

#include "provider/internal.h"
#include "provider/key_uri.h"

namespace devid::provider {
namespace {

struct StoreContext {
  ProviderContext* prov = nullptr;
  Key key;
  bool done = false;
};

void* Open(void* provctx, const char* uri) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  auto parsed = ParseKeyUri(uri);
  if (!parsed.ok()) {
    RaiseError(prov, parsed.error());
    return nullptr;
  }
  auto chip = prov->Chip(parsed->chip(), parsed->pin_file);
  if (!chip.ok()) {
    RaiseError(prov, chip.error());
    return nullptr;
  }
  Result<std::pair<crypto::KeyType, Bytes>> pub = MakeError(ErrorCode::kInternal, "");
  {
    std::lock_guard<std::mutex> lock((*chip)->mu);
    pub = (*chip)->client.ReadPublicKey(static_cast<uint8_t>(parsed->slot));
  }
  if (!pub.ok()) {
    RaiseError(prov, "slot %d of the chip %s: %s", parsed->slot, parsed->chip().c_str(),
               pub.error().message.c_str());
    return nullptr;
  }
  auto* ctx = new StoreContext;
  ctx->prov = prov;
  ctx->key.prov = prov;
  ctx->key.chip = *chip;
  ctx->key.slot = static_cast<uint8_t>(parsed->slot);
  ctx->key.curve = pub->first;
  ctx->key.has_curve = true;
  ctx->key.point = std::move(pub->second);
  {
    // Ephemeral keys go to the chip whose key was loaded last.
    std::lock_guard<std::mutex> lock(prov->mu);
    prov->default_chip = parsed->chip();
  }
  return ctx;
}

int Load(void* c, OSSL_CALLBACK* object_cb, void* object_cbarg, OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* ctx = static_cast<StoreContext*>(c);
  ctx->done = true;
  int type = OSSL_OBJECT_PKEY;
  char data_type[] = "EC";
  Key* reference = &ctx->key;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, data_type, 0),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &reference, sizeof reference),
      OSSL_PARAM_construct_end()};
  return object_cb(params, object_cbarg);
}

int Eof(void* c) { return static_cast<StoreContext*>(c)->done ? 1 : 0; }

int Close(void* c) {
  delete static_cast<StoreContext*>(c);
  return 1;
}

int SetContextParams(void*, const OSSL_PARAM[]) { return 1; }
const OSSL_PARAM* SettableContextParams(void*) {
  static const OSSL_PARAM kParams[] = {OSSL_PARAM_END};
  return kParams;
}

}  // namespace

const OSSL_DISPATCH kStoreFunctions[] = {
    {OSSL_FUNC_STORE_OPEN, Fn(Open)},
    {OSSL_FUNC_STORE_LOAD, Fn(Load)},
    {OSSL_FUNC_STORE_EOF, Fn(Eof)},
    {OSSL_FUNC_STORE_CLOSE, Fn(Close)},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, Fn(SetContextParams)},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, Fn(SettableContextParams)},
    {0, nullptr}};

}  // namespace devid::provider
