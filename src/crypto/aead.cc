#include "crypto/aead.h"

#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include <climits>

#include "core/secret.h"
#include "crypto/error.h"
#include "crypto/handles.h"

namespace devid::crypto {

namespace {
Status CheckSizes(ByteView key, ByteView nonce, size_t data) {
  if (key.size() != kAesGcmKeySize)
    return MakeError(ErrorCode::kInvalidInput, "AES-256-GCM needs a 32-byte key");
  if (nonce.size() != kAesGcmNonceSize)
    return MakeError(ErrorCode::kInvalidInput, "AES-GCM needs a 12-byte nonce");
  if (data > static_cast<size_t>(INT_MAX) - kAesGcmTagSize) {
    return MakeError(ErrorCode::kInvalidInput, "AES-GCM input too large");
  }
  return {};
}
}  // namespace

Result<Bytes> AesGcmSeal(ByteView key, ByteView nonce, ByteView aad, ByteView plaintext) {
  DEVID_TRY(CheckSizes(key, nonce, plaintext.size()));
  UniquePtr<EVP_CIPHER_CTX> ctx(EVP_CIPHER_CTX_new());
  Bytes out(plaintext.size() + kAesGcmTagSize);
  int len = 0;
  int final_len = 0;
  if (!ctx ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      (!aad.empty() && EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                                         static_cast<int>(aad.size())) != 1) ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &final_len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kAesGcmTagSize,
                          out.data() + plaintext.size()) != 1) {
    return OpenSslError("AES-256-GCM encryption");
  }
  return out;
}

Result<Bytes> AesGcmOpen(ByteView key, ByteView nonce, ByteView aad, ByteView sealed) {
  if (sealed.size() < kAesGcmTagSize)
    return MakeError(ErrorCode::kVerification, "AES-GCM input shorter than its tag");
  size_t text = sealed.size() - kAesGcmTagSize;
  DEVID_TRY(CheckSizes(key, nonce, text));
  UniquePtr<EVP_CIPHER_CTX> ctx(EVP_CIPHER_CTX_new());
  Bytes out(text);
  int len = 0;
  int final_len = 0;
  Bytes tag(sealed.begin() + static_cast<long>(text), sealed.end());
  if (!ctx ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce.data()) != 1 ||
      (!aad.empty() && EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(),
                                         static_cast<int>(aad.size())) != 1) ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, sealed.data(), static_cast<int>(text)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kAesGcmTagSize, tag.data()) != 1) {
    return OpenSslError("AES-256-GCM decryption");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &final_len) != 1) {
    ClearOpenSslErrors();
    SecureZero(out.data(), out.size());
    return MakeError(ErrorCode::kVerification, "AES-GCM authentication tag does not match");
  }
  return out;
}

Result<Bytes> HkdfSha256(ByteView secret, ByteView salt, ByteView info, size_t length) {
  UniquePtr<EVP_KDF> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  UniquePtr<EVP_KDF_CTX> ctx(kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr);
  if (!ctx) return OpenSslError("fetching HKDF");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<uint8_t*>(secret.data()),
                                        secret.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<uint8_t*>(salt.data()),
                                        salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<uint8_t*>(info.data()),
                                        info.size()),
      OSSL_PARAM_construct_end()};
  Bytes out(length);
  if (EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) != 1) return OpenSslError("HKDF");
  return out;
}

Result<Bytes> HmacSha256(ByteView key, ByteView data) {
  Bytes out(32);
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
           out.data(), &len) == nullptr) {
    return OpenSslError("HMAC-SHA256");
  }
  return out;
}

}  // namespace devid::crypto
