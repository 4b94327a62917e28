#include "crypto/drbg.h"

#include <openssl/core_names.h>
#include <openssl/rand.h>

#include "crypto/error.h"

namespace devid::crypto {

namespace {
constexpr unsigned kStrength = 256;
// EVP_RAND_generate's maximum request for CTR_DRBG (SP 800-90A Table 3 allows 2^19 bits).
constexpr size_t kMaxRequest = 1 << 16;
}  // namespace

Result<CtrDrbg> CtrDrbg::Create(ByteView entropy, ByteView personalization) {
  UniquePtr<EVP_RAND> rand(EVP_RAND_fetch(nullptr, "CTR-DRBG", nullptr));
  if (!rand) return OpenSslError("fetching CTR-DRBG");
  // No parent: OpenSSL seeds the instantiation from its own source; the chip's
  // noise is mixed in right away through a reseed with explicit entropy.
  UniquePtr<EVP_RAND_CTX> ctx(EVP_RAND_CTX_new(rand.get(), nullptr));
  if (!ctx) return OpenSslError("creating CTR-DRBG");
  char cipher[] = "AES-256-CTR";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_DRBG_PARAM_CIPHER, cipher, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_RAND_instantiate(ctx.get(), kStrength, 0, personalization.data(), personalization.size(),
                           params) != 1) {
    return OpenSslError("instantiating CTR-DRBG");
  }
  CtrDrbg drbg(std::move(ctx));
  DEVID_TRY(drbg.Reseed(entropy));
  return drbg;
}

Status CtrDrbg::Reseed(ByteView entropy) {
  if (entropy.size() < kStrength / 8) {
    return MakeError(ErrorCode::kInternal, "DRBG reseed needs at least 32 bytes of entropy input");
  }
  if (EVP_RAND_reseed(ctx_.get(), 0, entropy.data(), entropy.size(), nullptr, 0) != 1) {
    return OpenSslError("reseeding CTR-DRBG");
  }
  return {};
}

Status CtrDrbg::Generate(uint8_t* out, size_t size) {
  while (size > 0) {
    size_t n = size < kMaxRequest ? size : kMaxRequest;
    if (EVP_RAND_generate(ctx_.get(), out, n, kStrength, 0, nullptr, 0) != 1) {
      return OpenSslError("generating from CTR-DRBG");
    }
    out += n;
    size -= n;
  }
  return {};
}

}  // namespace devid::crypto
