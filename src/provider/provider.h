// The devid OpenSSL provider as a library: programs of this project (the
// agent) load it into their own library context as a built-in, and share
// their chip connection with it so that one connection (and one command log)
// serves both. Other programs load libdevid-provider.so instead.
#pragma once

#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "core/bytes.h"
#include "core/result.h"
#include "se/host/client.h"

namespace devid::provider {

// One chip as the provider reaches it: one connection (or one in-process
// chip) shared by every key on it; commands go through it one at a time.
struct SharedChip {
  explicit SharedChip(se::ChipClient c) : client(std::move(c)) {}
  std::mutex mu;
  se::ChipClient client;
  // Bumped by every volatile key generation: a volatile key object whose
  // generation is older no longer has its private key in the chip.
  uint64_t volatile_generation = 0;
  // The issuing CA's public key (curve byte || point) from the chip's CA key
  // file, read when the chip is first used: a signature check with this key
  // runs against the file (VERIFY_SIGNATURE P1=1, seed fig. 3 step 4).
  std::optional<Bytes> ca_key;
};

// Reads the CA key file into chip.ca_key. No such file: no CA key, and no
// error; any other failure (a tampered chip, a PIN-protected file) is one.
Status ReadCaKey(SharedChip& chip);

// Makes `chip` the connection the provider uses in this process for the chip
// named `locator` ("image=PATH" or "socket=PATH"), and the chip for
// ephemeral keys and random bytes unless DEVID_PROVIDER_CHIP names another.
// A null chip removes the entry.
void ShareChip(const std::string& locator, std::shared_ptr<SharedChip> chip);

// The key reference file for a chip key: a PEM block "DEVID KEY REFERENCE"
// holding the `devid:` URI (a DER UTF8String). Programs that only take key
// files load it through the provider's decoder like a key.
Result<std::string> KeyReferencePem(const std::string& uri);

struct LoadOptions {
  // The context's random generator becomes the chip (GET_RANDOM): the TLS
  // client random among others (seed fig. 3 step 1).
  bool chip_random = false;
  // The chip ("image=PATH" or "socket=PATH") for ephemeral keys and random
  // bytes in this context from the start. Empty: the first key loaded names
  // it, and until then the chip last shared in the process, which in a
  // process of many devices (a fleet) is another device's.
  std::string chip{};  // {}: callers naming only chip_random stay warning-free
  // The decoders of "DEVID KEY REFERENCE" PEM files (`-key FILE` in OpenSSL
  // programs). A context that names its keys by URI leaves them out: OpenSSL
  // 3.0 tries every decoder on offer at each certificate it parses.
  bool key_reference_files = true;
};
// The providers loaded into a context. Destroying it unloads them (the
// provider's teardown runs); that must happen before the context is freed.
class LoadedProviders {
 public:
  LoadedProviders(OSSL_PROVIDER* devid, OSSL_PROVIDER* fallback)
      : devid_(devid), default_(fallback) {}
  ~LoadedProviders();
  LoadedProviders(const LoadedProviders&) = delete;
  // Names the chip for ephemeral keys and random bytes in this context from
  // now on (a context reused for another device).
  void UseChip(const std::string& locator);
  LoadedProviders& operator=(const LoadedProviders&) = delete;

 private:
  OSSL_PROVIDER* devid_;
  OSSL_PROVIDER* default_;
};

// Adds the provider to `ctx` as the built-in "devid" and loads it together
// with OpenSSL's default provider. Call before anything else uses `ctx`.
Result<std::unique_ptr<LoadedProviders>> LoadInto(OSSL_LIB_CTX* ctx, const LoadOptions& options);

}  // namespace devid::provider
