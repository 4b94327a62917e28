// Key pairs: generation, PKCS#8 (optionally passphrase-encrypted), SPKI.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/result.h"
#include "core/secret.h"
#include "crypto/handles.h"

namespace devid::crypto {

enum class KeyType { kEcP256, kEcP384, kRsa3072 };

// "P-256", "P-384", "RSA-3072".
std::string_view KeyTypeName(KeyType type);
Result<KeyType> ParseKeyType(std::string_view name);

// What a public key is, described the way templates name it. `name` is
// "P-256", "P-384", "RSA-3072" for the supported types and a descriptive
// string ("RSA-2048", "EC secp256k1", "ED25519") for the rest.
struct KeyAlgorithm {
  std::optional<KeyType> type;
  std::string name;
};

// Digest devid signs with for a given CA key: SHA-384 for P-384, SHA-256 otherwise.
const EVP_MD* SignatureDigestFor(KeyType type);

class PublicKey {
 public:
  explicit PublicKey(UniquePtr<EVP_PKEY> pkey) : pkey_(std::move(pkey)) {}
  static Result<PublicKey> FromDer(ByteView spki_der);
  static Result<PublicKey> FromPem(std::string_view pem);

  Result<Bytes> ToDer() const;  // SubjectPublicKeyInfo
  Result<std::string> ToPem() const;
  // P-256/P-384 only: the curve and the uncompressed point.
  Result<std::pair<KeyType, Bytes>> EcPoint() const;
  KeyAlgorithm algorithm() const;
  EVP_PKEY* get() const { return pkey_.get(); }

 private:
  UniquePtr<EVP_PKEY> pkey_;
};

class PrivateKey {
 public:
  explicit PrivateKey(UniquePtr<EVP_PKEY> pkey, OSSL_LIB_CTX* context = nullptr)
      : pkey_(std::move(pkey)), context_(context) {}

  // `context` (null: OpenSSL's default) is the library context whose DRBG
  // the key's generation and later signatures draw from (crypto/drbg.h). It
  // must outlive the key.
  static Result<PrivateKey> Generate(KeyType type, OSSL_LIB_CTX* context = nullptr);

  // PEM PKCS#8, encrypted ("ENCRYPTED PRIVATE KEY") or not. A null passphrase
  // accepts only unencrypted keys; an encrypted key then fails with kAuth.
  static Result<PrivateKey> FromPem(std::string_view pem, const SecretString* passphrase);

  // PKCS#8 PEM. With a passphrase: PBES2, PBKDF2-HMAC-SHA256, AES-256-CBC.
  Result<std::string> ToPkcs8Pem(const SecretString* passphrase) const;

  Result<Bytes> PublicKeyDer() const;
  KeyAlgorithm algorithm() const;
  EVP_PKEY* get() const { return pkey_.get(); }

  // Unencrypted PKCS#8 DER, for storage that is itself sealed (the chip's NVM).
  Result<Bytes> ToPkcs8Der() const;
  static Result<PrivateKey> FromPkcs8Der(ByteView der, OSSL_LIB_CTX* context = nullptr);
  // EC: the uncompressed public point (04 || X || Y).
  Result<Bytes> PublicPoint() const;
  OSSL_LIB_CTX* context() const { return context_; }

 private:
  UniquePtr<EVP_PKEY> pkey_;
  OSSL_LIB_CTX* context_;
};

// An EC public key from its curve and uncompressed point (checked on the curve).
// With a context, the key lives there: an ECDH peer for a key of that context
// then needs no conversion between contexts.
Result<PublicKey> EcPublicKeyFromPoint(KeyType curve, ByteView point,
                                       OSSL_LIB_CTX* context = nullptr);
// Whether `point` is an uncompressed point on `curve` (SP 800-56A §5.6.2.3.4,
// the partial public-key validation): kInvalidInput when not. Checked with a
// group built once per process, so it costs no key object.
Status CheckEcPoint(KeyType curve, ByteView point);

// ECDSA over a digest the caller computed (the chip's SIGN): DER signature.
Result<Bytes> SignDigest(const PrivateKey& key, ByteView digest);
// The digest as ECDSA signs it with a `curve` key, as long as the curve's
// order (FIPS 186-4 §6.4): a longer digest is cut to its leftmost bytes, a
// shorter one is the same integer with leading zeros (the chip's SIGN takes
// exactly that length).
Bytes FitEcdsaDigest(KeyType curve, ByteView digest);

// ECDSA signatures as PKCS#11 and JOSE carry them (r || s, each `coordinate`
// bytes) and as X.509 and the chip do (DER SEQUENCE of two INTEGERs).
Result<Bytes> EcdsaDerToRaw(ByteView der, size_t coordinate);
Result<Bytes> EcdsaRawToDer(ByteView raw);
// kVerification when the signature does not match the digest.
// With the context the key lives in, the key is used where it is (from another
// context OpenSSL first copies it there, group and all).
Status VerifyDigest(const EVP_PKEY* key, ByteView digest, ByteView der_signature,
                    OSSL_LIB_CTX* context = nullptr);
// ECDH (SP 800-56A): the shared secret, the x coordinate of the shared point.
Result<Bytes> DeriveSharedSecret(const PrivateKey& key, const EVP_PKEY* peer);

// A private key prepared for many signatures: the digest-sign context is set up
// once and copied for each signature, which saves OpenSSL 3's per-call
// algorithm fetch and context set-up (~15 us of a ~55 us certificate signature).
class Signer {
 public:
  static Result<Signer> Create(const PrivateKey& key);
  // A fresh context ready for one EVP_DigestSign* / X509_sign_ctx call.
  Result<UniquePtr<EVP_MD_CTX>> NewContext() const;
  const KeyAlgorithm& algorithm() const { return algorithm_; }

 private:
  Signer(UniquePtr<EVP_MD_CTX> prepared, KeyAlgorithm algorithm)
      : prepared_(std::move(prepared)), algorithm_(std::move(algorithm)) {}
  UniquePtr<EVP_MD_CTX> prepared_;
  KeyAlgorithm algorithm_;
};

// Describes any EVP_PKEY (used by PublicKey, PrivateKey and the CSR parser).
KeyAlgorithm DescribeKey(const EVP_PKEY* pkey);

// CSPRNG output (RAND_bytes).
Result<Bytes> RandomBytes(size_t count);

// SHA-256 of data.
Bytes Sha256(ByteView data);

// Compares secrets in time independent of where they differ (CRYPTO_memcmp).
bool ConstantTimeEquals(ByteView a, ByteView b);

// Whether a PEM or DER blob looks like PEM (starts with "-----BEGIN").
bool LooksLikePem(ByteView data);

}  // namespace devid::crypto
