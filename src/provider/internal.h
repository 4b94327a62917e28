// Shared by the provider's operations: the provider context, the chips it
// has opened, and its key object. Not a public interface.
#pragma once

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/handles.h"
#include "crypto/key.h"
#include "provider/provider.h"
#include "se/host/client.h"

namespace devid::provider {

struct ProviderContext {
  const OSSL_CORE_HANDLE* handle = nullptr;
  OSSL_FUNC_core_new_error_fn* new_error = nullptr;
  OSSL_FUNC_core_set_error_debug_fn* set_error_debug = nullptr;
  OSSL_FUNC_core_vset_error_fn* vset_error = nullptr;
  // A context that knows the core's BIO upcalls (decoders read OSSL_CORE_BIO).
  crypto::UniquePtr<OSSL_LIB_CTX> core;

  // Whether the key reference decoders are offered (LoadOptions).
  bool key_reference_files = true;

  std::mutex mu;
  std::map<std::string, std::shared_ptr<SharedChip>> chips;
  // Where ephemeral (volatile) keys are generated: DEVID_PROVIDER_CHIP
  // ("image=PATH" or "socket=PATH"), else the chip of the last key loaded.
  std::string default_chip;

  // The chip named "image=PATH" or "socket=PATH", opened once; `pin` (may be
  // empty) is presented when it is first opened.
  Result<std::shared_ptr<SharedChip>> Chip(const std::string& locator, const std::string& pin_file);
  Result<std::shared_ptr<SharedChip>> DefaultChip();
};

// Puts an error on OpenSSL's error queue, as libcrypto's callers expect.
void RaiseError(const ProviderContext* prov, const char* fmt, ...);
inline void RaiseError(const ProviderContext* prov, const Error& e) {
  RaiseError(prov, "%s", e.message.c_str());
}

// The provider's EC key object (keymgmt keydata). A public key has no chip;
// a private key lives in a chip slot (0..15, or the volatile slot 0x80).
struct Key {
  ProviderContext* prov = nullptr;
  std::shared_ptr<SharedChip> chip;
  uint8_t slot = 0;
  uint64_t generation = 0;  // volatile keys: SharedChip::volatile_generation when made
  bool has_curve = false;
  crypto::KeyType curve = crypto::KeyType::kEcP256;
  Bytes point;      // uncompressed 04 || X || Y; empty before import/generation
  std::string uri;  // the `devid:` URI a chip key was loaded by (empty for others)

  bool has_private() const { return chip != nullptr; }
  size_t coordinate_size() const { return curve == crypto::KeyType::kEcP384 ? 48 : 32; }
};

// A chip key named by a `devid:` URI (its public key read from the chip).
Result<Key> LoadChipKey(ProviderContext* prov, std::string_view uri);
// Hands `key` to libcrypto as a key reference (store loader, decoder); the
// key management's load copies it during the call.
int PassKeyReference(Key& key, OSSL_CALLBACK* cb, void* cbarg);

// The key parameter that carries a chip key's URI from the key reference
// decoder to the key management (the file store's export/import route).
inline constexpr char kUriParam[] = "devid-key-uri";

// A UTF-8 string parameter read within its stated size (the caller's text
// need not be NUL-terminated); nullopt for another type.
std::optional<std::string> ParamString(const OSSL_PARAM* p);

// OpenSSL's names for the two curves.
const char* GroupName(crypto::KeyType curve);
Result<crypto::KeyType> CurveFromGroupName(std::string_view name);

// Runs `body` with the key's chip locked, checking first that a volatile key
// is still the one in the chip.
Result<Bytes> WithChip(const Key& key, const std::function<Result<Bytes>(se::ChipClient&)>& body);

// An OSSL_DISPATCH entry's function pointer.
template <typename F>
void (*Fn(F* f))() {
  return reinterpret_cast<void (*)()>(f);
}

// The provider's initialisation (OSSL_provider_init's signature).
int Init(const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out,
         void** provctx);

extern const OSSL_DISPATCH kRandFunctions[];
extern const OSSL_DISPATCH kDecoderFunctions[];
extern const OSSL_DISPATCH kPemDecoderFunctions[];
extern const OSSL_DISPATCH kKeymgmtFunctions[];
extern const OSSL_DISPATCH kSignatureFunctions[];
extern const OSSL_DISPATCH kKeyexchFunctions[];
extern const OSSL_DISPATCH kStoreFunctions[];

}  // namespace devid::provider
