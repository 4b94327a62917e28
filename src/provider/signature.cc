// ECDSA (provider-signature(7)) in the chip: SIGN with the key's slot (seed
// fig. 3 step 11, CertificateVerify) and VERIFY_SIGNATURE with a supplied
// public key (steps 4 and 7: the server's certificate and ServerKeyExchange).
// The host hashes; the chip signs or verifies the digest.
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <cstring>

#include "crypto/handles.h"
#include "provider/internal.h"

namespace devid::provider {
namespace {

struct SignatureContext {
  ProviderContext* prov = nullptr;
  const Key* key = nullptr;  // owned by the EVP_PKEY the caller holds
  std::string md_name;       // empty: the caller passes digests (EVP_PKEY_sign)
  crypto::UniquePtr<EVP_MD_CTX> md;
};

void* NewContext(void* provctx, const char*) {
  auto* ctx = new SignatureContext;
  ctx->prov = static_cast<ProviderContext*>(provctx);
  return ctx;
}

void FreeContext(void* c) { delete static_cast<SignatureContext*>(c); }

void* DupContext(void* c) {
  auto* from = static_cast<SignatureContext*>(c);
  auto* to = new SignatureContext;
  to->prov = from->prov;
  to->key = from->key;
  to->md_name = from->md_name;
  if (from->md) {
    to->md.reset(EVP_MD_CTX_new());
    if (!to->md || EVP_MD_CTX_copy_ex(to->md.get(), from->md.get()) != 1) {
      delete to;
      return nullptr;
    }
  }
  return to;
}

int SetDigest(SignatureContext* ctx, const char* name) {
  crypto::UniquePtr<EVP_MD> md(EVP_MD_fetch(nullptr, name, nullptr));
  if (!md) {
    RaiseError(ctx->prov, "unknown digest %s", name);
    return 0;
  }
  ctx->md_name = EVP_MD_get0_name(md.get());
  ctx->md.reset(EVP_MD_CTX_new());
  return ctx->md && EVP_DigestInit_ex2(ctx->md.get(), md.get(), nullptr) == 1 ? 1 : 0;
}

int SetContextParams(void* c, const OSSL_PARAM params[]) {
  auto* ctx = static_cast<SignatureContext*>(c);
  if (params == nullptr) return 1;
  const OSSL_PARAM* p = OSSL_PARAM_locate_const(params, OSSL_SIGNATURE_PARAM_DIGEST);
  if (p != nullptr) {
    auto name = ParamString(p);
    if (!name) return 0;
    crypto::UniquePtr<EVP_MD> md(EVP_MD_fetch(nullptr, name->c_str(), nullptr));
    if (!md) return 0;
    // Mid-way through hashing, another digest would make the signature's
    // AlgorithmIdentifier disagree with what was hashed.
    if (ctx->md && ctx->md_name != EVP_MD_get0_name(md.get())) return 0;
    ctx->md_name = EVP_MD_get0_name(md.get());
  }
  return 1;
}

const OSSL_PARAM* SettableContextParams(void*, void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0), OSSL_PARAM_END};
  return kParams;
}

// X.509 and PKCS#10 signers ask for the AlgorithmIdentifier (RFC 5758 §3.2).
int GetContextParams(void* c, OSSL_PARAM params[]) {
  auto* ctx = static_cast<SignatureContext*>(c);
  OSSL_PARAM* p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_ALGORITHM_ID);
  if (p != nullptr) {
    // ecdsa-with-SHA224/256/384/512: 1.2.840.10045.4.3.{1,2,3,4}
    uint8_t last = 0;
    if (ctx->md_name == "SHA2-224") last = 1;
    if (ctx->md_name == "SHA2-256") last = 2;
    if (ctx->md_name == "SHA2-384") last = 3;
    if (ctx->md_name == "SHA2-512") last = 4;
    if (last == 0) return 0;
    const uint8_t der[] = {0x30, 0x0A, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x03, last};
    if (OSSL_PARAM_set_octet_string(p, der, sizeof der) != 1) return 0;
  }
  p = OSSL_PARAM_locate(params, OSSL_SIGNATURE_PARAM_DIGEST);
  if (p != nullptr && OSSL_PARAM_set_utf8_string(p, ctx->md_name.c_str()) != 1) return 0;
  return 1;
}

const OSSL_PARAM* GettableContextParams(void*, void*) {
  static const OSSL_PARAM kParams[] = {
      OSSL_PARAM_octet_string(OSSL_SIGNATURE_PARAM_ALGORITHM_ID, nullptr, 0),
      OSSL_PARAM_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, nullptr, 0), OSSL_PARAM_END};
  return kParams;
}

int Init(void* c, void* keydata, const OSSL_PARAM params[], bool sign) {
  auto* ctx = static_cast<SignatureContext*>(c);
  const auto* key = static_cast<const Key*>(keydata);
  if (key == nullptr || key->point.empty()) return 0;
  if (sign && !key->has_private()) {
    RaiseError(ctx->prov, "this devid key has no private part in a chip");
    return 0;
  }
  ctx->key = key;
  return SetContextParams(ctx, params);
}

int SignInit(void* c, void* key, const OSSL_PARAM params[]) { return Init(c, key, params, true); }
int VerifyInit(void* c, void* key, const OSSL_PARAM params[]) {
  return Init(c, key, params, false);
}

int SignDigest(SignatureContext* ctx, unsigned char* sig, size_t* siglen, size_t sigsize,
               ByteView digest) {
  size_t max = ctx->key->curve == crypto::KeyType::kEcP384 ? 104 : 72;
  if (sig == nullptr) {
    *siglen = max;
    return 1;
  }
  Bytes fitted = crypto::FitEcdsaDigest(ctx->key->curve, digest);
  const Key& key = *ctx->key;
  auto der = WithChip(key, [&](se::ChipClient& chip) { return chip.Sign(key.slot, fitted); });
  if (!der.ok()) {
    RaiseError(ctx->prov, der.error());
    return 0;
  }
  if (der->size() > sigsize) return 0;
  std::memcpy(sig, der->data(), der->size());
  *siglen = der->size();
  return 1;
}

int VerifyDigest(SignatureContext* ctx, ByteView sig, ByteView digest) {
  const Key& key = *ctx->key;
  Bytes fitted = crypto::FitEcdsaDigest(key.curve, digest);
  // A public key names no chip: the one this process uses verifies.
  auto chip = key.chip ? Result<std::shared_ptr<SharedChip>>(key.chip) : ctx->prov->DefaultChip();
  if (!chip.ok()) {
    RaiseError(ctx->prov, chip.error());
    return 0;
  }
  std::lock_guard<std::mutex> lock((*chip)->mu);
  // The issuing CA's key kept in the chip verifies against the chip's own
  // copy (seed fig. 3 step 4): the host cannot swap the trust anchor.
  Bytes as_file = {static_cast<uint8_t>(key.curve == crypto::KeyType::kEcP384 ? 0x02 : 0x01)};
  as_file.insert(as_file.end(), key.point.begin(), key.point.end());
  auto ok = (*chip)->ca_key && *(*chip)->ca_key == as_file
                ? (*chip)->client.VerifySignatureWithFileKey(se::kCaPublicKeyFile, fitted, sig)
                : (*chip)->client.VerifySignature(key.curve, key.point, fitted, sig);
  if (!ok.ok()) {
    RaiseError(ctx->prov, ok.error());
    return 0;
  }
  return *ok ? 1 : 0;
}

int Sign(void* c, unsigned char* sig, size_t* siglen, size_t sigsize, const unsigned char* tbs,
         size_t tbslen) {
  return SignDigest(static_cast<SignatureContext*>(c), sig, siglen, sigsize, ByteView(tbs, tbslen));
}

int Verify(void* c, const unsigned char* sig, size_t siglen, const unsigned char* tbs,
           size_t tbslen) {
  return VerifyDigest(static_cast<SignatureContext*>(c), ByteView(sig, siglen),
                      ByteView(tbs, tbslen));
}

int DigestInit(void* c, const char* mdname, void* key, const OSSL_PARAM params[], bool sign) {
  auto* ctx = static_cast<SignatureContext*>(c);
  if (Init(c, key, params, sign) != 1) return 0;
  const char* name = mdname;
  if (name == nullptr || *name == '\0')
    name = ctx->key->curve == crypto::KeyType::kEcP384 ? "SHA384" : "SHA256";
  return SetDigest(ctx, name);
}

int DigestSignInit(void* c, const char* mdname, void* key, const OSSL_PARAM params[]) {
  return DigestInit(c, mdname, key, params, true);
}
int DigestVerifyInit(void* c, const char* mdname, void* key, const OSSL_PARAM params[]) {
  return DigestInit(c, mdname, key, params, false);
}

int DigestUpdate(void* c, const unsigned char* data, size_t size) {
  auto* ctx = static_cast<SignatureContext*>(c);
  return ctx->md && EVP_DigestUpdate(ctx->md.get(), data, size) == 1 ? 1 : 0;
}

Result<Bytes> FinishDigest(SignatureContext* ctx) {
  Bytes digest(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (!ctx->md || EVP_DigestFinal_ex(ctx->md.get(), digest.data(), &len) != 1) {
    return MakeError(ErrorCode::kCrypto, "hashing the data to sign");
  }
  digest.resize(len);
  return digest;
}

int DigestSignFinal(void* c, unsigned char* sig, size_t* siglen, size_t sigsize) {
  auto* ctx = static_cast<SignatureContext*>(c);
  if (sig == nullptr) return SignDigest(ctx, nullptr, siglen, sigsize, {});
  auto digest = FinishDigest(ctx);
  if (!digest.ok()) return 0;
  return SignDigest(ctx, sig, siglen, sigsize, *digest);
}

int DigestVerifyFinal(void* c, const unsigned char* sig, size_t siglen) {
  auto* ctx = static_cast<SignatureContext*>(c);
  auto digest = FinishDigest(ctx);
  if (!digest.ok()) return 0;
  return VerifyDigest(ctx, ByteView(sig, siglen), *digest);
}

}  // namespace

const OSSL_DISPATCH kSignatureFunctions[] = {
    {OSSL_FUNC_SIGNATURE_NEWCTX, Fn(NewContext)},
    {OSSL_FUNC_SIGNATURE_FREECTX, Fn(FreeContext)},
    {OSSL_FUNC_SIGNATURE_DUPCTX, Fn(DupContext)},
    {OSSL_FUNC_SIGNATURE_SIGN_INIT, Fn(SignInit)},
    {OSSL_FUNC_SIGNATURE_SIGN, Fn(Sign)},
    {OSSL_FUNC_SIGNATURE_VERIFY_INIT, Fn(VerifyInit)},
    {OSSL_FUNC_SIGNATURE_VERIFY, Fn(Verify)},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_INIT, Fn(DigestSignInit)},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_UPDATE, Fn(DigestUpdate)},
    {OSSL_FUNC_SIGNATURE_DIGEST_SIGN_FINAL, Fn(DigestSignFinal)},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_INIT, Fn(DigestVerifyInit)},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_UPDATE, Fn(DigestUpdate)},
    {OSSL_FUNC_SIGNATURE_DIGEST_VERIFY_FINAL, Fn(DigestVerifyFinal)},
    {OSSL_FUNC_SIGNATURE_GET_CTX_PARAMS, Fn(GetContextParams)},
    {OSSL_FUNC_SIGNATURE_GETTABLE_CTX_PARAMS, Fn(GettableContextParams)},
    {OSSL_FUNC_SIGNATURE_SET_CTX_PARAMS, Fn(SetContextParams)},
    {OSSL_FUNC_SIGNATURE_SETTABLE_CTX_PARAMS, Fn(SettableContextParams)},
    {0, nullptr}};

}  // namespace devid::provider
