#include "crypto/key.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"
#include "crypto/spki.h"

namespace devid::crypto {

namespace {
// PBKDF2 work factor for CA keys at rest; a CA key is decrypted once per process.
constexpr int kPbkdf2Iterations = 200000;
// OpenSSL's PEM password callback takes at most PEM_BUFSIZE - 1 bytes; longer
// passphrases would encrypt fine and then never decrypt.
constexpr size_t kMaxPassphraseBytes = PEM_BUFSIZE - 1;

}  // namespace

std::string_view KeyTypeName(KeyType type) {
  switch (type) {
    case KeyType::kEcP256:
      return "P-256";
    case KeyType::kEcP384:
      return "P-384";
    case KeyType::kRsa3072:
      return "RSA-3072";
  }
  return "?";
}

Result<KeyType> ParseKeyType(std::string_view name) {
  for (KeyType t : {KeyType::kEcP256, KeyType::kEcP384, KeyType::kRsa3072}) {
    if (name == KeyTypeName(t)) return t;
  }
  return MakeError(ErrorCode::kInvalidInput,
                   "unknown key type '" + std::string(name) + "' (P-256, P-384, RSA-3072)");
}

const EVP_MD* SignatureDigestFor(KeyType type) {
  return type == KeyType::kEcP384 ? EVP_sha384() : EVP_sha256();
}

KeyAlgorithm DescribeKey(const EVP_PKEY* pkey) {
  KeyAlgorithm out;
  if (EVP_PKEY_is_a(pkey, "EC")) {
    char group[64] = {0};
    size_t len = 0;
    if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       &len) != 1) {
      ClearOpenSslErrors();
      out.name = "EC (explicit parameters)";
      return out;
    }
    std::string g(group, len);
    if (g == "prime256v1" || g == "P-256") {
      out.type = KeyType::kEcP256;
      out.name = "P-256";
    } else if (g == "secp384r1" || g == "P-384") {
      out.type = KeyType::kEcP384;
      out.name = "P-384";
    } else {
      out.name = "EC " + g;
    }
    return out;
  }
  if (EVP_PKEY_is_a(pkey, "RSA")) {
    int bits = EVP_PKEY_get_bits(pkey);
    out.name = "RSA-" + std::to_string(bits);
    if (bits == 3072) out.type = KeyType::kRsa3072;
    return out;
  }
  const char* n = EVP_PKEY_get0_type_name(pkey);
  out.name = n != nullptr ? n : "unknown";
  return out;
}

Result<PrivateKey> PrivateKey::Generate(KeyType type, OSSL_LIB_CTX* context) {
  EVP_PKEY* raw = nullptr;
  switch (type) {
    case KeyType::kEcP256:
      raw = EVP_PKEY_Q_keygen(context, nullptr, "EC", "P-256");
      break;
    case KeyType::kEcP384:
      raw = EVP_PKEY_Q_keygen(context, nullptr, "EC", "P-384");
      break;
    case KeyType::kRsa3072:
      raw = EVP_PKEY_Q_keygen(context, nullptr, "RSA", size_t{3072});
      break;
  }
  if (raw == nullptr) {
    return OpenSslError("generating a " + std::string(KeyTypeName(type)) + " key");
  }
  return PrivateKey(UniquePtr<EVP_PKEY>(raw), context);
}

Result<PrivateKey> PrivateKey::FromPem(std::string_view pem, const SecretString* passphrase) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<BIO> bio, internal::MemBio(AsBytes(pem)));
  bool encrypted = pem.find("ENCRYPTED") != std::string_view::npos;
  if (encrypted && passphrase == nullptr) {
    return MakeError(ErrorCode::kAuth, "the private key is encrypted and no passphrase was given");
  }
  // An empty passphrase string signals "none" to the callback; never prompt on a tty.
  std::string pass(passphrase != nullptr ? passphrase->reveal() : std::string_view());
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(
      bio.get(), nullptr,
      [](char* buf, int size, int, void* u) -> int {
        auto* p = static_cast<std::string*>(u);
        if (p->empty() || static_cast<int>(p->size()) > size) return -1;
        std::memcpy(buf, p->data(), p->size());
        return static_cast<int>(p->size());
      },
      &pass);
  SecureZero(pass.data(), pass.size());
  if (raw == nullptr) {
    if (encrypted) {
      ClearOpenSslErrors();
      return MakeError(ErrorCode::kAuth, "wrong passphrase (the private key does not decrypt)");
    }
    return OpenSslError("parsing PEM private key", ErrorCode::kInvalidInput);
  }
  return PrivateKey(UniquePtr<EVP_PKEY>(raw));
}

Result<std::string> PrivateKey::ToPkcs8Pem(const SecretString* passphrase) const {
  UniquePtr<PKCS8_PRIV_KEY_INFO> p8(EVP_PKEY2PKCS8(pkey_.get()));
  if (!p8) return OpenSslError("encoding the private key as PKCS#8");
  if (passphrase == nullptr) {
    return internal::EncodePem(
        "PKCS#8", [&](BIO* bio) { return PEM_write_bio_PKCS8_PRIV_KEY_INFO(bio, p8.get()); });
  }
  if (passphrase->empty()) return MakeError(ErrorCode::kAuth, "the passphrase is empty");
  if (passphrase->reveal().size() > kMaxPassphraseBytes) {
    return MakeError(ErrorCode::kInvalidInput, "the passphrase is longer than " +
                                                   std::to_string(kMaxPassphraseBytes) + " bytes");
  }
  // -1: PBES2; the PRF defaults to HMAC-SHA256 in OpenSSL 3.
  UniquePtr<X509_SIG> sig(PKCS8_encrypt_ex(-1, EVP_aes_256_cbc(), passphrase->reveal().data(),
                                           static_cast<int>(passphrase->reveal().size()), nullptr,
                                           0, kPbkdf2Iterations, p8.get(), nullptr, nullptr));
  if (!sig) return OpenSslError("encrypting the private key");
  return internal::EncodePem("encrypted PKCS#8",
                             [&](BIO* bio) { return PEM_write_bio_PKCS8(bio, sig.get()); });
}

Result<Bytes> PrivateKey::PublicKeyDer() const {
  DEVID_ASSIGN_OR_RETURN(SubjectPublicKeyInfo spki, SubjectPublicKeyInfo::FromKey(pkey_.get()));
  return spki.ToDer();
}
KeyAlgorithm PrivateKey::algorithm() const { return DescribeKey(pkey_.get()); }

Result<PublicKey> PublicKey::FromDer(ByteView spki_der) {
  const unsigned char* p = spki_der.data();
  EVP_PKEY* raw = d2i_PUBKEY(nullptr, &p, static_cast<long>(spki_der.size()));
  if (raw == nullptr) return OpenSslError("parsing SubjectPublicKeyInfo", ErrorCode::kInvalidInput);
  UniquePtr<EVP_PKEY> key(raw);
  if (p != spki_der.data() + spki_der.size()) {
    return MakeError(ErrorCode::kInvalidInput, "trailing bytes after SubjectPublicKeyInfo");
  }
  return PublicKey(std::move(key));
}

Result<PublicKey> PublicKey::FromPem(std::string_view pem) {
  DEVID_ASSIGN_OR_RETURN(UniquePtr<BIO> bio, internal::MemBio(AsBytes(pem)));
  EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  if (raw == nullptr) return OpenSslError("parsing PEM public key", ErrorCode::kInvalidInput);
  return PublicKey(UniquePtr<EVP_PKEY>(raw));
}

Result<Bytes> PublicKey::ToDer() const {
  return internal::EncodeDer("SubjectPublicKeyInfo",
                             [&](unsigned char** p) { return i2d_PUBKEY(pkey_.get(), p); });
}

Result<std::string> PublicKey::ToPem() const {
  return internal::EncodePem("public key",
                             [&](BIO* bio) { return PEM_write_bio_PUBKEY(bio, pkey_.get()); });
}

KeyAlgorithm PublicKey::algorithm() const { return DescribeKey(pkey_.get()); }

Result<std::pair<KeyType, Bytes>> PublicKey::EcPoint() const {
  DEVID_ASSIGN_OR_RETURN(SubjectPublicKeyInfo spki, SubjectPublicKeyInfo::FromKey(pkey_.get()));
  KeyAlgorithm alg = spki.algorithm();
  if (!alg.type || *alg.type == KeyType::kRsa3072) {
    return MakeError(ErrorCode::kInvalidInput, "not a P-256 or P-384 key: " + alg.name);
  }
  return std::make_pair(*alg.type, Bytes(spki.key_bits().begin(), spki.key_bits().end()));
}

Result<Bytes> PrivateKey::ToPkcs8Der() const {
  UniquePtr<PKCS8_PRIV_KEY_INFO> p8(EVP_PKEY2PKCS8(pkey_.get()));
  if (!p8) return OpenSslError("encoding the private key as PKCS#8");
  return internal::EncodeDer(
      "PKCS#8", [&](unsigned char** p) { return i2d_PKCS8_PRIV_KEY_INFO(p8.get(), p); });
}

Result<PrivateKey> PrivateKey::FromPkcs8Der(ByteView der, OSSL_LIB_CTX* context) {
  const unsigned char* p = der.data();
  UniquePtr<PKCS8_PRIV_KEY_INFO> p8(
      d2i_PKCS8_PRIV_KEY_INFO(nullptr, &p, static_cast<long>(der.size())));
  if (!p8 || p != der.data() + der.size())
    return OpenSslError("parsing PKCS#8", ErrorCode::kInvalidInput);
  UniquePtr<EVP_PKEY> key(EVP_PKCS82PKEY_ex(p8.get(), context, nullptr));
  if (!key) return OpenSslError("decoding the PKCS#8 key", ErrorCode::kInvalidInput);
  return PrivateKey(std::move(key), context);
}

Result<Bytes> PrivateKey::PublicPoint() const {
  DEVID_ASSIGN_OR_RETURN(SubjectPublicKeyInfo spki, SubjectPublicKeyInfo::FromKey(pkey_.get()));
  if (!spki.algorithm().type || *spki.algorithm().type == KeyType::kRsa3072) {
    return MakeError(ErrorCode::kInvalidInput, "not an EC key");
  }
  return Bytes(spki.key_bits().begin(), spki.key_bits().end());
}

namespace {
// One group per curve for the process: building an OpenSSL 3.0 group costs
// more than the check it serves, and a group used read-only is shared safely.
const EC_GROUP* CurveGroup(KeyType curve) {
  static const EC_GROUP* const p256 = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
  static const EC_GROUP* const p384 = EC_GROUP_new_by_curve_name(NID_secp384r1);
  return curve == KeyType::kEcP384 ? p384 : p256;
}
}  // namespace

Status CheckEcPoint(KeyType curve, ByteView point) {
  if (curve == KeyType::kRsa3072) return MakeError(ErrorCode::kInvalidInput, "not an EC curve");
  size_t coordinate = curve == KeyType::kEcP384 ? 48 : 32;
  if (point.size() != 1 + 2 * coordinate || point[0] != 0x04) {
    return MakeError(ErrorCode::kInvalidInput, "not an uncompressed point");
  }
  const EC_GROUP* group = CurveGroup(curve);
  if (group == nullptr) return OpenSslError("building the curve's group");
  UniquePtr<EC_POINT> p(EC_POINT_new(group));
  if (!p) return OpenSslError("allocating a point");
  // oct2point refuses a point off the curve; infinity has no uncompressed form.
  if (EC_POINT_oct2point(group, p.get(), point.data(), point.size(), nullptr) != 1 ||
      EC_POINT_is_on_curve(group, p.get(), nullptr) != 1) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "not a valid point on the curve");
  }
  return {};
}

Result<PublicKey> EcPublicKeyFromPoint(KeyType curve, ByteView point, OSSL_LIB_CTX* context) {
  if (curve == KeyType::kRsa3072) return MakeError(ErrorCode::kInvalidInput, "not an EC curve");
  if (context != nullptr) {
    DEVID_TRY(CheckEcPoint(curve, point));
    std::string group(KeyTypeName(curve));
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, group.data(), 0),
        OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                          const_cast<uint8_t*>(point.data()), point.size()),
        OSSL_PARAM_construct_end()};
    UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(context, "EC", nullptr));
    EVP_PKEY* raw = nullptr;
    bool valid = ctx && EVP_PKEY_fromdata_init(ctx.get()) == 1 &&
                 EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) == 1;
    UniquePtr<EVP_PKEY> key(raw);
    if (!valid) {
      ClearOpenSslErrors();
      return MakeError(ErrorCode::kInvalidInput, "not a valid point on the curve");
    }
    return PublicKey(std::move(key));
  }
  // Build the SPKI the way a CSR would carry it and reuse its checked decode.
  static constexpr uint8_t kP256[] = {0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48,
                                      0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A,
                                      0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07};
  static constexpr uint8_t kP384[] = {0x30, 0x10, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D,
                                      0x02, 0x01, 0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22};
  ByteView alg = curve == KeyType::kEcP384 ? ByteView(kP384) : ByteView(kP256);
  if (point.size() > 120) return MakeError(ErrorCode::kInvalidInput, "EC point too long");
  Bytes bits = {0x03, static_cast<uint8_t>(point.size() + 1), 0x00};
  bits.insert(bits.end(), point.begin(), point.end());
  Bytes der = {0x30, static_cast<uint8_t>(alg.size() + bits.size())};
  der.insert(der.end(), alg.begin(), alg.end());
  der.insert(der.end(), bits.begin(), bits.end());
  DEVID_ASSIGN_OR_RETURN(SubjectPublicKeyInfo spki, SubjectPublicKeyInfo::Parse(der));
  DEVID_ASSIGN_OR_RETURN(UniquePtr<EVP_PKEY> key, spki.Decode());
  return PublicKey(std::move(key));
}

Result<Bytes> SignDigest(const PrivateKey& key, ByteView digest) {
  // In the key's own context, so that the ECDSA nonce comes from its DRBG.
  UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(key.context(), key.get(), nullptr));
  size_t len = 0;
  if (!ctx || EVP_PKEY_sign_init(ctx.get()) != 1 ||
      EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) != 1) {
    return OpenSslError("preparing an ECDSA signature");
  }
  Bytes sig(len);
  if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) != 1) {
    return OpenSslError("signing the digest");
  }
  sig.resize(len);
  return sig;
}

Bytes FitEcdsaDigest(KeyType curve, ByteView digest) {
  size_t n = curve == KeyType::kEcP384 ? 48 : 32;
  if (digest.size() >= n) return Bytes(digest.begin(), digest.begin() + static_cast<long>(n));
  Bytes out(n - digest.size(), 0);
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

Result<Bytes> EcdsaDerToRaw(ByteView der, size_t coordinate) {
  const unsigned char* p = der.data();
  UniquePtr<ECDSA_SIG> sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig || p != der.data() + der.size()) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "not a DER ECDSA signature");
  }
  Bytes raw(2 * coordinate);
  if (BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), raw.data(), static_cast<int>(coordinate)) < 0 ||
      BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), raw.data() + coordinate,
                   static_cast<int>(coordinate)) < 0) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput,
                     "the ECDSA signature is longer than the curve's order");
  }
  return raw;
}

Result<Bytes> EcdsaRawToDer(ByteView raw) {
  if (raw.empty() || raw.size() % 2 != 0 || raw.size() > 132) {
    return MakeError(ErrorCode::kInvalidInput, "a raw ECDSA signature is r || s of equal length");
  }
  size_t half = raw.size() / 2;
  UniquePtr<ECDSA_SIG> sig(ECDSA_SIG_new());
  UniquePtr<BIGNUM> r(BN_bin2bn(raw.data(), static_cast<int>(half), nullptr));
  UniquePtr<BIGNUM> s(BN_bin2bn(raw.data() + half, static_cast<int>(half), nullptr));
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1) {
    return OpenSslError("building an ECDSA signature");
  }
  r.release();  // owned by sig now
  s.release();
  return internal::EncodeDer("ECDSA signature",
                             [&](unsigned char** out) { return i2d_ECDSA_SIG(sig.get(), out); });
}

Status VerifyDigest(const EVP_PKEY* key, ByteView digest, ByteView der_signature,
                    OSSL_LIB_CTX* context) {
  UniquePtr<EVP_PKEY_CTX> ctx(
      EVP_PKEY_CTX_new_from_pkey(context, const_cast<EVP_PKEY*>(key), nullptr));
  if (!ctx || EVP_PKEY_verify_init(ctx.get()) != 1)
    return OpenSslError("preparing signature verification");
  int r = EVP_PKEY_verify(ctx.get(), der_signature.data(), der_signature.size(), digest.data(),
                          digest.size());
  if (r != 1) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kVerification, "the signature does not verify");
  }
  return {};
}

Result<Bytes> DeriveSharedSecret(const PrivateKey& key, const EVP_PKEY* peer) {
  UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_pkey(key.context(), key.get(), nullptr));
  size_t len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), const_cast<EVP_PKEY*>(peer)) != 1 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &len) != 1) {
    return OpenSslError("preparing ECDH", ErrorCode::kInvalidInput);
  }
  Bytes secret(len);
  if (EVP_PKEY_derive(ctx.get(), secret.data(), &len) != 1) return OpenSslError("ECDH");
  secret.resize(len);
  return secret;
}

Result<Signer> Signer::Create(const PrivateKey& key) {
  KeyAlgorithm alg = key.algorithm();
  if (!alg.type) return MakeError(ErrorCode::kPolicy, "cannot sign with a " + alg.name + " key");
  UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, SignatureDigestFor(*alg.type), nullptr,
                                 key.get()) != 1) {
    return OpenSslError("preparing to sign with a " + alg.name + " key");
  }
  return Signer(std::move(ctx), std::move(alg));
}

Result<UniquePtr<EVP_MD_CTX>> Signer::NewContext() const {
  UniquePtr<EVP_MD_CTX> ctx(EVP_MD_CTX_new());
  if (!ctx || EVP_MD_CTX_copy_ex(ctx.get(), prepared_.get()) != 1)
    return OpenSslError("copying a signing context");
  return ctx;
}

Result<Bytes> RandomBytes(size_t count) {
  Bytes out(count);
  if (RAND_bytes(out.data(), static_cast<int>(count)) != 1) {
    return OpenSslError("drawing random bytes");
  }
  return out;
}

Bytes Sha256(ByteView data) {
  Bytes out(32);
  unsigned int len = 0;
  // Fails only when memory runs out: a programming/resource error, not an input error.
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1)
    throw std::bad_alloc();
  return out;
}

bool ConstantTimeEquals(ByteView a, ByteView b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool LooksLikePem(ByteView data) {
  static constexpr std::string_view kBegin = "-----BEGIN";
  auto s = AsString(data);
  size_t i = 0;
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  return s.substr(i).starts_with(kBegin);
}

}  // namespace devid::crypto
