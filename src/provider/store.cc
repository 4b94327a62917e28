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

Result<Key> LoadChipKey(ProviderContext* prov, std::string_view uri) {
  DEVID_ASSIGN_OR_RETURN(KeyUri parsed, ParseKeyUri(uri));
  DEVID_ASSIGN_OR_RETURN(std::shared_ptr<SharedChip> chip,
                         prov->Chip(parsed.chip(), parsed.pin_file));
  Result<std::pair<crypto::KeyType, Bytes>> pub = MakeError(ErrorCode::kInternal, "");
  {
    std::lock_guard<std::mutex> lock(chip->mu);
    pub = chip->client.ReadPublicKey(static_cast<uint8_t>(parsed.slot));
  }
  if (!pub.ok()) {
    return pub.error().Context("slot " + std::to_string(parsed.slot) + " of the chip " +
                               parsed.chip());
  }
  Key key;
  key.prov = prov;
  key.chip = chip;
  key.slot = static_cast<uint8_t>(parsed.slot);
  key.curve = pub->first;
  key.has_curve = true;
  key.point = std::move(pub->second);
  key.uri = std::string(uri);
  {
    // Ephemeral keys go to the chip of the first key loaded (DEVID_PROVIDER_CHIP,
    // when set, decides instead): a later key file cannot move them elsewhere.
    std::lock_guard<std::mutex> lock(prov->mu);
    if (prov->default_chip.empty()) prov->default_chip = parsed.chip();
  }
  return key;
}

int PassKeyReference(Key& key, OSSL_CALLBACK* cb, void* cbarg) {
  int type = OSSL_OBJECT_PKEY;
  char data_type[] = "EC";
  Key* reference = &key;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &type),
      OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE, data_type, 0),
      OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, &reference, sizeof reference),
      OSSL_PARAM_construct_end()};
  return cb(params, cbarg);
}

namespace {

struct StoreContext {
  ProviderContext* prov = nullptr;
  Key key;
  bool done = false;
};

void* Open(void* provctx, const char* uri) {
  auto* prov = static_cast<ProviderContext*>(provctx);
  auto key = LoadChipKey(prov, uri);
  if (!key.ok()) {
    RaiseError(prov, key.error());
    return nullptr;
  }
  auto* ctx = new StoreContext;
  ctx->prov = prov;
  ctx->key = std::move(key).value();
  return ctx;
}

int Load(void* c, OSSL_CALLBACK* object_cb, void* object_cbarg, OSSL_PASSPHRASE_CALLBACK*, void*) {
  auto* ctx = static_cast<StoreContext*>(c);
  ctx->done = true;
  return PassKeyReference(ctx->key, object_cb, object_cbarg);
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
