// libdevid-provider.so: an OpenSSL 3 provider whose keys, signatures, key
// exchange and (through TLS-GROUP) TLS ephemeral keys live in a devid chip.
// Every algorithm carries the property "provider=devid", so that a property
// query "?provider=devid" prefers it (DESIGN §5).
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/prov_ssl.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include <cstdarg>
#include <cstdlib>
#include <optional>

#include "core/file.h"
#include "provider/internal.h"

namespace devid::provider {

void RaiseError(const ProviderContext* prov, const char* fmt, ...) {
  if (prov == nullptr || prov->new_error == nullptr || prov->vset_error == nullptr) return;
  prov->new_error(prov->handle);
  if (prov->set_error_debug != nullptr) prov->set_error_debug(prov->handle, nullptr, 0, "devid");
  va_list args;
  va_start(args, fmt);
  prov->vset_error(prov->handle, ERR_R_OPERATION_FAIL, fmt, args);
  va_end(args);
}

std::optional<std::string> ParamString(const OSSL_PARAM* p) {
  if (p == nullptr || p->data_type != OSSL_PARAM_UTF8_STRING || p->data == nullptr) {
    return std::nullopt;
  }
  const char* text = static_cast<const char*>(p->data);
  return std::string(text, strnlen(text, p->data_size));
}

const char* GroupName(crypto::KeyType curve) {
  return curve == crypto::KeyType::kEcP384 ? "secp384r1" : "prime256v1";
}

Result<crypto::KeyType> CurveFromGroupName(std::string_view name) {
  if (name == "prime256v1" || name == "P-256" || name == "secp256r1")
    return crypto::KeyType::kEcP256;
  if (name == "secp384r1" || name == "P-384") return crypto::KeyType::kEcP384;
  return MakeError(ErrorCode::kInvalidInput,
                   "the chip has P-256 and P-384 keys, not " + std::string(name));
}

namespace {
// Chips a program of this project shares with the provider (ShareChip).
struct SharedRegistry {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<SharedChip>> chips;
  std::string default_chip;
};
SharedRegistry& Registry() {
  static SharedRegistry* registry = new SharedRegistry;  // never destroyed: used at exit
  return *registry;
}
}  // namespace

void ShareChip(const std::string& locator, std::shared_ptr<SharedChip> chip) {
  SharedRegistry& r = Registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (!chip) {
    r.chips.erase(locator);
    if (r.default_chip == locator) r.default_chip.clear();
    return;
  }
  r.chips[locator] = std::move(chip);
  r.default_chip = locator;
}

Status ReadCaKey(SharedChip& chip) {
  auto file = chip.client.ReadFile(se::kCaPublicKeyFile);
  if (!file.ok()) {
    if (file.error().code == ErrorCode::kNotFound) return {};
    return file.error().Context("reading the CA key file CA01");
  }
  if (!file->empty()) chip.ca_key = std::move(file).value();
  return {};
}

Result<std::shared_ptr<SharedChip>> ProviderContext::Chip(const std::string& locator,
                                                          const std::string& pin_file) {
  {
    SharedRegistry& r = Registry();
    std::lock_guard<std::mutex> lock(r.mu);
    auto shared = r.chips.find(locator);
    if (shared != r.chips.end()) return shared->second;
  }
  std::lock_guard<std::mutex> lock(mu);
  auto it = chips.find(locator);
  if (it != chips.end()) return it->second;
  std::string image, socket;
  if (locator.starts_with("image=")) {
    image = locator.substr(6);
  } else if (locator.starts_with("socket=")) {
    socket = locator.substr(7);
  } else {
    return MakeError(ErrorCode::kInvalidInput, "a chip is image=PATH or socket=PATH");
  }
  DEVID_ASSIGN_OR_RETURN(se::ChipClient client, se::ChipClient::Open(image, socket));
  // The user PIN: the key URI's pin-file, else DEVID_PIN; keys that need no
  // PIN work without either. A URI (or a key reference file) can name any
  // socket, so a PIN goes only to an in-process chip image or to the chip
  // DEVID_PROVIDER_CHIP names: never to a daemon a file chose.
  const char* trusted = std::getenv("DEVID_PROVIDER_CHIP");
  bool may_present = !image.empty() || (trusted != nullptr && locator == trusted);
  std::optional<SecretString> pin;
  if (!may_present) {
    // no PIN
  } else if (!pin_file.empty()) {
    DEVID_ASSIGN_OR_RETURN(SecretString read, ReadSecretLine(pin_file, "PIN"));
    pin = std::move(read);
  } else if (const char* env = std::getenv("DEVID_PIN"); env != nullptr && *env != '\0') {
    pin = SecretString(env);
  }
  if (pin) DEVID_TRY(client.Authenticate(pin->reveal()));
  auto chip = std::make_shared<SharedChip>(std::move(client));
  // Without a readable CA key file, signatures are checked with the key given.
  (void)ReadCaKey(*chip);
  chips[locator] = chip;
  return chip;
}

Result<std::shared_ptr<SharedChip>> ProviderContext::DefaultChip() {
  std::string locator;
  if (const char* env = std::getenv("DEVID_PROVIDER_CHIP"); env != nullptr && *env != '\0') {
    locator = env;
  } else {
    std::lock_guard<std::mutex> lock(mu);
    locator = default_chip;
  }
  if (locator.empty()) {
    SharedRegistry& r = Registry();
    std::lock_guard<std::mutex> lock(r.mu);
    locator = r.default_chip;
  }
  if (locator.empty()) {
    return MakeError(ErrorCode::kInvalidInput,
                     "no chip for ephemeral keys: load a devid: key first or set "
                     "DEVID_PROVIDER_CHIP=image=PATH or socket=PATH");
  }
  return Chip(locator, "");
}

Result<Bytes> WithChip(const Key& key, const std::function<Result<Bytes>(se::ChipClient&)>& body) {
  if (!key.chip) return MakeError(ErrorCode::kInvalidInput, "the key has no private part");
  std::lock_guard<std::mutex> lock(key.chip->mu);
  if (key.slot == se::kVolatileSlot && key.generation != key.chip->volatile_generation) {
    return MakeError(ErrorCode::kPolicy,
                     "this ephemeral key was replaced in the chip by a newer one");
  }
  return body(key.chip->client);
}

namespace {

// clang-format off
// The provider's algorithms. Names as OpenSSL's default provider spells them,
// so that libssl and the EVP layer find them by the same names.
const OSSL_ALGORITHM kKeymgmt[] = {
    {"EC:id-ecPublicKey:1.2.840.10045.2.1", "provider=devid", kKeymgmtFunctions,
     "EC keys held in a devid secure element"},
    {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kSignature[] = {
    {"ECDSA", "provider=devid", kSignatureFunctions, "ECDSA in a devid secure element"},
    {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kKeyexch[] = {
    {"ECDH", "provider=devid", kKeyexchFunctions, "ECDH in a devid secure element"},
    {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kRand[] = {
    {"DEVID-CHIP-RAND", "provider=devid", kRandFunctions,
     "random bytes from a devid secure element's TRNG (GET_RANDOM)"},
    {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kDecoder[] = {
    {"DER", "provider=devid,input=pem", kPemDecoderFunctions,
     "PEM key reference files naming a key in a devid chip"},
    {"EC", "provider=devid,input=der,structure=devid-key-reference", kDecoderFunctions,
     "key references to chip keys"},
    {nullptr, nullptr, nullptr, nullptr}};
const OSSL_ALGORITHM kStore[] = {
    {"devid", "provider=devid", kStoreFunctions, "devid: chip key URIs"},
    {nullptr, nullptr, nullptr, nullptr}};
// clang-format on

const OSSL_ALGORITHM* QueryOperation(void* provctx, int operation_id, int* no_cache) {
  *no_cache = 0;
  switch (operation_id) {
    case OSSL_OP_KEYMGMT:
      return kKeymgmt;
    case OSSL_OP_SIGNATURE:
      return kSignature;
    case OSSL_OP_KEYEXCH:
      return kKeyexch;
    case OSSL_OP_STORE:
      return kStore;
    case OSSL_OP_RAND:
      return kRand;
    case OSSL_OP_DECODER:
      return static_cast<ProviderContext*>(provctx)->key_reference_files ? kDecoder : nullptr;
    default:
      return nullptr;
  }
}

const OSSL_PARAM* GettableParams(void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_DEFN(OSSL_PROV_PARAM_NAME, OSSL_PARAM_UTF8_PTR, nullptr, 0),
      OSSL_PARAM_DEFN(OSSL_PROV_PARAM_VERSION, OSSL_PARAM_UTF8_PTR, nullptr, 0),
      OSSL_PARAM_DEFN(OSSL_PROV_PARAM_STATUS, OSSL_PARAM_INTEGER, nullptr, 0), OSSL_PARAM_END};
  return kParams;
}

int GetParams(void*, OSSL_PARAM params[]) {
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME);
  if (p != nullptr && OSSL_PARAM_set_utf8_ptr(p, "devid secure element provider") != 1) return 0;
  p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION);
  if (p != nullptr && OSSL_PARAM_set_utf8_ptr(p, DEVID_VERSION) != 1) return 0;
  p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS);
  if (p != nullptr && OSSL_PARAM_set_int(p, 1) != 1) return 0;
  return 1;
}

// TLS-GROUP (provider-base(7)): the groups whose ephemeral keys libssl may
// generate with this provider's EC key management (RFC 8422 §5.1.1 ids).
struct TlsGroup {
  const char* name;
  const char* internal;
  unsigned int id;
  unsigned int security_bits;
};
constexpr TlsGroup kGroups[] = {{"secp256r1", "prime256v1", 23, 128},
                                {"secp384r1", "secp384r1", 24, 192}};

int GetCapabilities(void*, const char* capability, OSSL_CALLBACK* cb, void* arg) {
  if (std::string_view(capability) != "TLS-GROUP") return 0;
  for (const TlsGroup& g : kGroups) {
    unsigned int id = g.id;
    unsigned int bits = g.security_bits;
    int min_tls = TLS1_VERSION;
    int max_tls = 0;
    int min_dtls = DTLS1_VERSION;
    int max_dtls = 0;
    char alg[] = "EC";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME, const_cast<char*>(g.name),
                                         0),
        OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_NAME_INTERNAL,
                                         const_cast<char*>(g.internal), 0),
        OSSL_PARAM_construct_utf8_string(OSSL_CAPABILITY_TLS_GROUP_ALG, alg, 0),
        OSSL_PARAM_construct_uint(OSSL_CAPABILITY_TLS_GROUP_ID, &id),
        OSSL_PARAM_construct_uint(OSSL_CAPABILITY_TLS_GROUP_SECURITY_BITS, &bits),
        OSSL_PARAM_construct_int(OSSL_CAPABILITY_TLS_GROUP_MIN_TLS, &min_tls),
        OSSL_PARAM_construct_int(OSSL_CAPABILITY_TLS_GROUP_MAX_TLS, &max_tls),
        OSSL_PARAM_construct_int(OSSL_CAPABILITY_TLS_GROUP_MIN_DTLS, &min_dtls),
        OSSL_PARAM_construct_int(OSSL_CAPABILITY_TLS_GROUP_MAX_DTLS, &max_dtls),
        OSSL_PARAM_construct_end()};
    if (cb(params, arg) != 1) return 0;
  }
  return 1;
}

void Teardown(void* provctx) { delete static_cast<ProviderContext*>(provctx); }

const OSSL_DISPATCH kProviderFunctions[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, Fn(Teardown)},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, Fn(GettableParams)},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, Fn(GetParams)},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, Fn(QueryOperation)},
    {OSSL_FUNC_PROVIDER_GET_CAPABILITIES, Fn(GetCapabilities)},
    {0, nullptr}};

}  // namespace

int Init(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out,
         void** provctx) {
  auto* ctx = new ProviderContext;
  ctx->handle = handle;
  ctx->core.reset(OSSL_LIB_CTX_new_from_dispatch(handle, in));
  if (!ctx->core) {
    delete ctx;
    return 0;
  }
  for (; in->function_id != 0; ++in) {
    switch (in->function_id) {
      case OSSL_FUNC_CORE_NEW_ERROR:
        ctx->new_error = OSSL_FUNC_core_new_error(in);
        break;
      case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
        ctx->set_error_debug = OSSL_FUNC_core_set_error_debug(in);
        break;
      case OSSL_FUNC_CORE_VSET_ERROR:
        ctx->vset_error = OSSL_FUNC_core_vset_error(in);
        break;
      default:
        break;
    }
  }
  *out = kProviderFunctions;
  *provctx = ctx;
  return 1;
}

void LoadedProviders::UseChip(const std::string& locator) {
  if (devid_ == nullptr) return;
  auto* prov = static_cast<ProviderContext*>(OSSL_PROVIDER_get0_provider_ctx(devid_));
  std::lock_guard<std::mutex> lock(prov->mu);
  prov->default_chip = locator;
}

LoadedProviders::~LoadedProviders() {
  if (default_ != nullptr) OSSL_PROVIDER_unload(default_);
  if (devid_ != nullptr) OSSL_PROVIDER_unload(devid_);
}

Result<std::unique_ptr<LoadedProviders>> LoadInto(OSSL_LIB_CTX* ctx, const LoadOptions& options) {
  if (OSSL_PROVIDER_add_builtin(ctx, "devid", Init) != 1) {
    return MakeError(ErrorCode::kCrypto, "cannot register the devid provider");
  }
  OSSL_PROVIDER* devid = OSSL_PROVIDER_load(ctx, "devid");
  OSSL_PROVIDER* fallback = OSSL_PROVIDER_load(ctx, "default");
  auto loaded = std::make_unique<LoadedProviders>(devid, fallback);  // unloads what did load
  if (devid == nullptr || fallback == nullptr) {
    return MakeError(ErrorCode::kCrypto, "cannot load the devid provider into a library context");
  }
  // Before any fetch: libcrypto asks for the decoders once per context.
  static_cast<ProviderContext*>(OSSL_PROVIDER_get0_provider_ctx(devid))->key_reference_files =
      options.key_reference_files;
  if (!options.chip.empty()) loaded->UseChip(options.chip);
  if (options.chip_random &&
      RAND_set_DRBG_type(ctx, "DEVID-CHIP-RAND", "provider=devid", nullptr, nullptr) != 1) {
    return MakeError(ErrorCode::kCrypto, "cannot make the chip the context's random generator");
  }
  return loaded;
}

}  // namespace devid::provider
