// EC key management (provider-keymgmt(7)) for chip keys: public keys are
// imported and exported as OpenSSL's EC keys are; private keys never leave
// the chip, so an export that asks for one fails; generation makes the key
// in the chip's volatile slot (TLS ephemeral keys, seed fig. 3 step 8).
#include <openssl/core_names.h>
#include <openssl/params.h>

#include <cstring>

#include "provider/internal.h"

namespace devid::provider {
namespace {

constexpr int kSelectPublic = OSSL_KEYMGMT_SELECT_PUBLIC_KEY;
constexpr int kSelectPrivate = OSSL_KEYMGMT_SELECT_PRIVATE_KEY;
constexpr int kSelectDomain = OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS;

void* NewKey(void* provctx) {
  auto* key = new Key;
  key->prov = static_cast<ProviderContext*>(provctx);
  return key;
}

void FreeKey(void* keydata) { delete static_cast<Key*>(keydata); }

int Has(const void* keydata, int selection) {
  const auto* key = static_cast<const Key*>(keydata);
  if (key == nullptr) return 0;
  if ((selection & kSelectPrivate) != 0 && !key->has_private()) return 0;
  if ((selection & kSelectPublic) != 0 && key->point.empty()) return 0;
  if ((selection & kSelectDomain) != 0 && !key->has_curve) return 0;
  return 1;
}

int Match(const void* a, const void* b, int selection) {
  const auto* x = static_cast<const Key*>(a);
  const auto* y = static_cast<const Key*>(b);
  if (x->has_curve != y->has_curve || (x->has_curve && x->curve != y->curve)) return 0;
  if ((selection & OSSL_KEYMGMT_SELECT_KEYPAIR) != 0) {
    // Same public point means same key pair: nothing else is comparable.
    return !x->point.empty() && x->point == y->point ? 1 : 0;
  }
  return 1;
}

// The curve from OSSL_PKEY_PARAM_GROUP_NAME, when the parameters carry one.
int ReadGroup(ProviderContext* prov, const OSSL_PARAM params[], bool* has_curve,
              crypto::KeyType* out_curve) {
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_GROUP_NAME);
  if (p == nullptr) return 1;
  auto name = ParamString(p);
  if (!name) return 0;
  auto curve = CurveFromGroupName(*name);
  if (!curve.ok()) {
    RaiseError(prov, curve.error());
    return 0;
  }
  *out_curve = *curve;
  *has_curve = true;
  return 1;
}

// Sets the point after checking it lies on the curve (OpenSSL does the check).
// Only the point is kept: the chip takes it as bytes, so no key object is built.
Status SetPoint(Key* key, ByteView point) {
  DEVID_TRY(crypto::CheckEcPoint(key->curve, point));
  key->point.assign(point.begin(), point.end());
  return {};
}

// The point in an octet-string parameter (PUB_KEY, ENCODED_PUBLIC_KEY).
int SetPointFromParam(Key* key, const OSSL_PARAM* p) {
  const void* data = nullptr;
  size_t size = 0;
  if (OSSL_PARAM_get_octet_string_ptr(p, &data, &size) != 1) return 0;
  Status s = SetPoint(key, ByteView(static_cast<const uint8_t*>(data), size));
  if (!s.ok()) {
    RaiseError(key->prov, s.error());
    return 0;
  }
  return 1;
}

int Import(void* keydata, int selection, const OSSL_PARAM params[]) {
  auto* key = static_cast<Key*>(keydata);
  if (key == nullptr) return 0;
  // A chip key passed on by URI (a key reference file read by another
  // provider's file store): loaded from the chip again, nothing else taken.
  if (const OSSL_PARAM* u = OSSL_PARAM_locate_const(params, kUriParam); u != nullptr) {
    auto uri = ParamString(u);
    if (!uri) return 0;
    auto loaded = LoadChipKey(key->prov, *uri);
    if (!loaded.ok()) {
      RaiseError(key->prov, loaded.error());
      return 0;
    }
    *key = std::move(loaded).value();
    return 1;
  }
  const OSSL_PARAM* priv = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PRIV_KEY);
  if ((selection & kSelectPrivate) != 0 && priv != nullptr) {
    // Software private keys belong to the default provider; chip keys come
    // from `devid:` URIs or are generated in the chip.
    RaiseError(key->prov, "devid keys cannot be imported with their private part");
    return 0;
  }
  if (ReadGroup(key->prov, params, &key->has_curve, &key->curve) != 1) return 0;
  if ((selection & kSelectPublic) != 0) {
    const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_PUB_KEY);
    if (p == nullptr || !key->has_curve || SetPointFromParam(key, p) != 1) return 0;
  }
  return key->has_curve ? 1 : 0;
}

const OSSL_PARAM* ImportTypes(int) {
  static const OSSL_PARAM kTypes[] = {
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
      OSSL_PARAM_utf8_string(kUriParam, nullptr, 0), OSSL_PARAM_END};
  return kTypes;
}

int Export(void* keydata, int selection, OSSL_CALLBACK* cb, void* cbarg) {
  auto* key = static_cast<Key*>(keydata);
  if (key == nullptr || !key->has_curve) return 0;
  // The private key never leaves the chip: asking for it fails the export
  // rather than handing over a public-only copy that would then fail to sign.
  if ((selection & kSelectPrivate) != 0 && key->has_private()) return 0;
  char* group = const_cast<char*>(GroupName(key->curve));
  OSSL_PARAM params[3];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group, 0);
  if ((selection & kSelectPublic) != 0 && !key->point.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, key->point.data(),
                                                    key->point.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  return cb(params, cbarg);
}

int GetParams(void* keydata, OSSL_PARAM params[]) {
  auto* key = static_cast<Key*>(keydata);
  if (key == nullptr || !key->has_curve) return 0;
  bool p384 = key->curve == crypto::KeyType::kEcP384;
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS);
  if (p != nullptr && OSSL_PARAM_set_int(p, p384 ? 384 : 256) != 1) return 0;
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS);
  if (p != nullptr && OSSL_PARAM_set_int(p, p384 ? 192 : 128) != 1) return 0;
  // The largest DER ECDSA signature: SEQUENCE of two INTEGERs one byte longer
  // than the order.
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE);
  if (p != nullptr && OSSL_PARAM_set_int(p, p384 ? 104 : 72) != 1) return 0;
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, GroupName(key->curve)) != 1) return 0;
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, p384 ? "SHA384" : "SHA256") != 1) return 0;
  for (const char* name : {OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, OSSL_PKEY_PARAM_PUB_KEY}) {
    p = OSSL_PARAM_locate(params, name);
    if (p != nullptr && (key->point.empty() ||
                         OSSL_PARAM_set_octet_string(p, key->point.data(), key->point.size()) != 1))
      return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, "uncompressed") != 1) return 0;
  return 1;
}

const OSSL_PARAM* GettableParams(void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, nullptr),
      OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, nullptr),
      OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, nullptr),
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0),
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, nullptr, 0),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0),
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, nullptr, 0),
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, nullptr, 0),
      OSSL_PARAM_END};
  return kParams;
}

// libssl sets the peer's ECDHE point this way (EVP_PKEY_set1_encoded_public_key).
int SetParams(void* keydata, const OSSL_PARAM params[]) {
  auto* key = static_cast<Key*>(keydata);
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY);
  if (p == nullptr) return 1;
  if (!key->has_curve || key->has_private()) return 0;
  return SetPointFromParam(key, p);
}

const OSSL_PARAM* SettableParams(void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, nullptr, 0), OSSL_PARAM_END};
  return kParams;
}

struct GenContext {
  ProviderContext* prov = nullptr;
  int selection = 0;
  bool has_curve = false;
  crypto::KeyType curve = crypto::KeyType::kEcP256;
};

int GenSetParams(void* genctx, const OSSL_PARAM params[]) {
  auto* gen = static_cast<GenContext*>(genctx);
  return ReadGroup(gen->prov, params, &gen->has_curve, &gen->curve);
}

void* GenInit(void* provctx, int selection, const OSSL_PARAM params[]) {
  auto* gen = new GenContext;
  gen->prov = static_cast<ProviderContext*>(provctx);
  gen->selection = selection;
  if (params != nullptr && GenSetParams(gen, params) != 1) {
    delete gen;
    return nullptr;
  }
  return gen;
}

int GenSetTemplate(void* genctx, void* templ) {
  auto* gen = static_cast<GenContext*>(genctx);
  const auto* key = static_cast<const Key*>(templ);
  if (!key->has_curve) return 0;
  gen->curve = key->curve;
  gen->has_curve = true;
  return 1;
}

const OSSL_PARAM* GenSettableParams(void*, void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, nullptr, 0), OSSL_PARAM_END};
  return kParams;
}

void* Gen(void* genctx, OSSL_CALLBACK*, void*) {
  auto* gen = static_cast<GenContext*>(genctx);
  if (!gen->has_curve) {
    RaiseError(gen->prov, "no curve given for the chip key (P-256 or P-384)");
    return nullptr;
  }
  auto key = std::make_unique<Key>();
  key->prov = gen->prov;
  key->curve = gen->curve;
  key->has_curve = true;
  if ((gen->selection & OSSL_KEYMGMT_SELECT_KEYPAIR) == 0) return key.release();  // parameters only
  auto chip = gen->prov->DefaultChip();
  if (!chip.ok()) {
    RaiseError(gen->prov, chip.error());
    return nullptr;
  }
  // seed fig. 3 step 8: the ephemeral key pair is generated in the chip.
  std::lock_guard<std::mutex> lock((*chip)->mu);
  auto point = (*chip)->client.GenerateKeyPair(se::kVolatileSlot, gen->curve, false);
  if (!point.ok()) {
    RaiseError(gen->prov, point.error());
    return nullptr;
  }
  key->chip = *chip;
  key->slot = se::kVolatileSlot;
  key->generation = ++(*chip)->volatile_generation;
  key->point = std::move(point).value();
  return key.release();
}

void GenCleanup(void* genctx) { delete static_cast<GenContext*>(genctx); }

// The store passes the address of a Key it made; the key object is a copy.
void* Load(const void* reference, size_t reference_size) {
  if (reference == nullptr || reference_size != sizeof(Key*)) return nullptr;
  Key* from = nullptr;
  std::memcpy(&from, reference, sizeof from);
  return new Key(*from);
}

const char* QueryOperationName(int operation_id) {
  switch (operation_id) {
    case OSSL_OP_SIGNATURE:
      return "ECDSA";
    case OSSL_OP_KEYEXCH:
      return "ECDH";
    default:
      return nullptr;
  }
}

}  // namespace

const OSSL_DISPATCH kKeymgmtFunctions[] = {
    {OSSL_FUNC_KEYMGMT_NEW, Fn(NewKey)},
    {OSSL_FUNC_KEYMGMT_FREE, Fn(FreeKey)},
    {OSSL_FUNC_KEYMGMT_HAS, Fn(Has)},
    {OSSL_FUNC_KEYMGMT_MATCH, Fn(Match)},
    {OSSL_FUNC_KEYMGMT_IMPORT, Fn(Import)},
    {OSSL_FUNC_KEYMGMT_IMPORT_TYPES, Fn(ImportTypes)},
    {OSSL_FUNC_KEYMGMT_EXPORT, Fn(Export)},
    {OSSL_FUNC_KEYMGMT_EXPORT_TYPES, Fn(ImportTypes)},
    {OSSL_FUNC_KEYMGMT_GET_PARAMS, Fn(GetParams)},
    {OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, Fn(GettableParams)},
    {OSSL_FUNC_KEYMGMT_SET_PARAMS, Fn(SetParams)},
    {OSSL_FUNC_KEYMGMT_SETTABLE_PARAMS, Fn(SettableParams)},
    {OSSL_FUNC_KEYMGMT_GEN_INIT, Fn(GenInit)},
    {OSSL_FUNC_KEYMGMT_GEN_SET_TEMPLATE, Fn(GenSetTemplate)},
    {OSSL_FUNC_KEYMGMT_GEN_SET_PARAMS, Fn(GenSetParams)},
    {OSSL_FUNC_KEYMGMT_GEN_SETTABLE_PARAMS, Fn(GenSettableParams)},
    {OSSL_FUNC_KEYMGMT_GEN, Fn(Gen)},
    {OSSL_FUNC_KEYMGMT_GEN_CLEANUP, Fn(GenCleanup)},
    {OSSL_FUNC_KEYMGMT_LOAD, Fn(Load)},
    {OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME, Fn(QueryOperationName)},
    {0, nullptr}};

}  // namespace devid::provider
