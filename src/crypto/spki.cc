#include "crypto/spki.h"

#include <openssl/core_names.h>
#include <openssl/objects.h>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"

namespace devid::crypto {

namespace {

// A parameters-only EC key per curve; keys are made by copying its group.
const EVP_PKEY* CurveTemplate(KeyType type) {
  static const auto make = [](const char* group) -> EVP_PKEY* {
    EVP_PKEY* out = nullptr;
    UniquePtr<EVP_PKEY_CTX> ctx(EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr));
    if (!ctx || EVP_PKEY_paramgen_init(ctx.get()) != 1 ||
        EVP_PKEY_CTX_set_group_name(ctx.get(), group) != 1 ||
        EVP_PKEY_paramgen(ctx.get(), &out) != 1) {
      return nullptr;
    }
    return out;
  };
  // Process-lifetime objects, created once (thread-safe static initialisation).
  static EVP_PKEY* const kP256 = make("P-256");
  static EVP_PKEY* const kP384 = make("P-384");
  return type == KeyType::kEcP384 ? kP384 : kP256;
}

std::optional<KeyType> EcTypeOf(const X509_ALGOR* alg) {
  const ASN1_OBJECT* obj = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&obj, &ptype, &pval, alg);
  // RFC 5480 §2.1.1: namedCurve only; explicit parameters are refused.
  if (OBJ_obj2nid(obj) != NID_X9_62_id_ecPublicKey || ptype != V_ASN1_OBJECT) return std::nullopt;
  int curve = OBJ_obj2nid(static_cast<const ASN1_OBJECT*>(pval));
  if (curve == NID_X9_62_prime256v1) return KeyType::kEcP256;
  if (curve == NID_secp384r1) return KeyType::kEcP384;
  return std::nullopt;
}

// Why devid will not use this SPKI, or empty if it is acceptable.
std::string Unsupported(const X509_ALGOR* alg, std::optional<KeyType> ec_type) {
  const ASN1_OBJECT* obj = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&obj, &ptype, &pval, alg);
  switch (OBJ_obj2nid(obj)) {
    case NID_X9_62_id_ecPublicKey:
      if (ec_type) return {};
      return ptype == V_ASN1_OBJECT ? "EC key on an unsupported curve"
                                    : "EC key with explicit curve parameters";
    case NID_rsaEncryption:
      // RFC 3279 §2.3.1: the parameters are NULL.
      return ptype == V_ASN1_NULL ? std::string() : "RSA key with invalid algorithm parameters";
    default: {
      char name[80];
      int n = OBJ_obj2txt(name, sizeof name, obj, 0);
      return std::string("unsupported key algorithm ") +
             (n > 0 && n < static_cast<int>(sizeof name) ? name : "?");
    }
  }
}

}  // namespace

SubjectPublicKeyInfo::SubjectPublicKeyInfo(UniquePtr<X509_ALGOR> algorithm,
                                           UniquePtr<ASN1_STRING> bits)
    : algorithm_(std::move(algorithm)),
      bits_(std::move(bits)),
      ec_type_(EcTypeOf(algorithm_.get())) {}

SubjectPublicKeyInfo::SubjectPublicKeyInfo(const SubjectPublicKeyInfo& other)
    : algorithm_(X509_ALGOR_dup(other.algorithm_.get())),
      bits_(ASN1_STRING_dup(other.bits_.get())),
      ec_type_(other.ec_type_) {
  if (!algorithm_ || !bits_) throw std::bad_alloc();
}

Result<SubjectPublicKeyInfo> SubjectPublicKeyInfo::Parse(ByteView der) {
  const unsigned char* p = der.data();
  const unsigned char* end = der.data() + der.size();
  long len = 0;
  int tag = 0;
  int cls = 0;
  int r = ASN1_get_object(&p, &len, &tag, &cls, end - p);
  if ((r & 0x80) != 0 || r != V_ASN1_CONSTRUCTED || tag != V_ASN1_SEQUENCE ||
      cls != V_ASN1_UNIVERSAL || p + len != end) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "malformed SubjectPublicKeyInfo");
  }
  UniquePtr<X509_ALGOR> alg(d2i_X509_ALGOR(nullptr, &p, end - p));
  UniquePtr<ASN1_STRING> bits(alg ? d2i_ASN1_BIT_STRING(nullptr, &p, end - p) : nullptr);
  if (!alg || !bits || p != end) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "malformed SubjectPublicKeyInfo");
  }
  return SubjectPublicKeyInfo(std::move(alg), std::move(bits));
}

Result<SubjectPublicKeyInfo> SubjectPublicKeyInfo::FromKey(const EVP_PKEY* key) {
  KeyAlgorithm described = DescribeKey(key);
  if (described.type && *described.type != KeyType::kRsa3072) {
    size_t len = 0;
    Bytes point(133);
    if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point.data(),
                                        point.size(), &len) != 1) {
      return OpenSslError("reading the EC public point");
    }
    UniquePtr<X509_ALGOR> alg(X509_ALGOR_new());
    UniquePtr<ASN1_STRING> bits(ASN1_BIT_STRING_new());
    int curve = *described.type == KeyType::kEcP384 ? NID_secp384r1 : NID_X9_62_prime256v1;
    if (!alg || !bits ||
        X509_ALGOR_set0(alg.get(), OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
                        OBJ_nid2obj(curve)) != 1 ||
        ASN1_BIT_STRING_set(bits.get(), point.data(), static_cast<int>(len)) != 1) {
      return OpenSslError("building SubjectPublicKeyInfo");
    }
    return SubjectPublicKeyInfo(std::move(alg), std::move(bits));
  }
  DEVID_ASSIGN_OR_RETURN(
      Bytes der, internal::EncodeDer("SubjectPublicKeyInfo",
                                     [&](unsigned char** p) { return i2d_PUBKEY(key, p); }));
  return Parse(der);
}

KeyAlgorithm SubjectPublicKeyInfo::algorithm() const {
  if (ec_type_) return KeyAlgorithm{ec_type_, std::string(KeyTypeName(*ec_type_))};
  std::string unsupported = Unsupported(algorithm_.get(), ec_type_);
  if (!unsupported.empty()) return KeyAlgorithm{std::nullopt, unsupported};
  auto key = Decode();
  if (!key.ok()) return KeyAlgorithm{std::nullopt, "invalid key (" + key.error().message + ")"};
  return DescribeKey(key->get());
}

ByteView SubjectPublicKeyInfo::key_bits() const {
  return ByteView(ASN1_STRING_get0_data(bits_.get()),
                  static_cast<size_t>(ASN1_STRING_length(bits_.get())));
}

Result<UniquePtr<EVP_PKEY>> SubjectPublicKeyInfo::Decode() const {
  std::string unsupported = Unsupported(algorithm_.get(), ec_type_);
  if (!unsupported.empty()) return MakeError(ErrorCode::kInvalidInput, unsupported);
  if ((bits_->flags & ASN1_STRING_FLAG_BITS_LEFT) != 0 && (bits_->flags & 0x07) != 0) {
    return MakeError(ErrorCode::kInvalidInput, "the public key BIT STRING has unused bits");
  }
  if (ec_type_) {
    // RFC 5480 §2.2: uncompressed points only (04 || X || Y); this also rules
    // out the one-byte point at infinity that OpenSSL's setter would accept.
    ByteView point = key_bits();
    size_t coordinate = *ec_type_ == KeyType::kEcP384 ? 48 : 32;
    std::string curve(KeyTypeName(*ec_type_));
    if (point.size() != 1 + 2 * coordinate || point[0] != 0x04) {
      return MakeError(ErrorCode::kInvalidInput,
                       "the public key is not an uncompressed " + curve + " point");
    }
    const EVP_PKEY* tmpl = CurveTemplate(*ec_type_);
    UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
    if (tmpl == nullptr || !key || EVP_PKEY_copy_parameters(key.get(), tmpl) != 1) {
      return OpenSslError("preparing an EC key");
    }
    bool valid = EVP_PKEY_set1_encoded_public_key(key.get(), point.data(), point.size()) == 1;
    if (valid) {
      // On curve, not infinity, coordinates in range (prime-order curves need no more).
      UniquePtr<EVP_PKEY_CTX> check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
      valid = check && EVP_PKEY_public_check_quick(check.get()) == 1;
    }
    if (!valid) {
      ClearOpenSslErrors();
      return MakeError(ErrorCode::kInvalidInput,
                       "the public key is not a valid " + curve + " point");
    }
    return key;
  }
  DEVID_ASSIGN_OR_RETURN(Bytes der, ToDer());
  const unsigned char* p = der.data();
  UniquePtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key) return OpenSslError("decoding the public key", ErrorCode::kInvalidInput);
  // The key must be encoded exactly as its canonical DER (no trailing bytes
  // inside the BIT STRING): one key, one SubjectPublicKeyInfo.
  DEVID_ASSIGN_OR_RETURN(Bytes canonical,
                         internal::EncodeDer("public key", [&](unsigned char** out) {
                           return i2d_PUBKEY(key.get(), out);
                         }));
  if (canonical != der)
    return MakeError(ErrorCode::kInvalidInput, "the public key is not in canonical DER");
  // RSA: OpenSSL's SP 800-56B public-key check (odd modulus and exponent, sizes)...
  UniquePtr<EVP_PKEY_CTX> check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "the public key fails OpenSSL's public-key check");
  }
  // ...which outside FIPS mode allows e = 3; devid wants e >= 65537 (CA/B BR 6.1.6, SP 800-89).
  BIGNUM* e = nullptr;
  if (EVP_PKEY_is_a(key.get(), "RSA")) {
    UniquePtr<BIGNUM> exponent(
        EVP_PKEY_get_bn_param(key.get(), OSSL_PKEY_PARAM_RSA_E, &e) == 1 ? e : nullptr);
    if (!exponent || BN_num_bits(exponent.get()) < 17) {
      ClearOpenSslErrors();
      return MakeError(ErrorCode::kInvalidInput, "the RSA public exponent must be at least 65537");
    }
  }
  return key;
}

Status SubjectPublicKeyInfo::CopyTo(X509_PUBKEY* out) const {
  const ASN1_OBJECT* obj = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&obj, &ptype, &pval, algorithm_.get());
  UniquePtr<ASN1_OBJECT> obj_copy(OBJ_dup(obj));
  UniquePtr<ASN1_OBJECT> param_oid;
  UniquePtr<ASN1_STRING> param_string;
  if (ptype == V_ASN1_OBJECT) {
    param_oid.reset(OBJ_dup(static_cast<const ASN1_OBJECT*>(pval)));
  } else if (ptype == V_ASN1_SEQUENCE || ptype == V_ASN1_OCTET_STRING) {
    param_string.reset(ASN1_STRING_dup(static_cast<const ASN1_STRING*>(pval)));
  } else if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF && ptype != 0) {
    return MakeError(ErrorCode::kInvalidInput, "unsupported public key parameters");
  }
  void* param =
      param_oid ? static_cast<void*>(param_oid.get()) : static_cast<void*>(param_string.get());
  ByteView bits = key_bits();
  UniquePtr<unsigned char> enc(
      static_cast<unsigned char*>(OPENSSL_memdup(bits.data(), bits.size())));
  if (!obj_copy || (pval != nullptr && param == nullptr && ptype != V_ASN1_NULL) || !enc) {
    return OpenSslError("copying the public key");
  }
  if (X509_PUBKEY_set0_param(out, obj_copy.get(), ptype, param, enc.get(),
                             static_cast<int>(bits.size())) != 1) {
    return OpenSslError("setting the public key");
  }
  // Owned by `out` now.
  obj_copy.release();
  param_oid.release();
  param_string.release();
  enc.release();
  return {};
}

Result<Bytes> SubjectPublicKeyInfo::ToDer() const {
  UniquePtr<X509_PUBKEY> pub(X509_PUBKEY_new());
  if (!pub) return OpenSslError("allocating X509_PUBKEY");
  DEVID_TRY(CopyTo(pub.get()));
  return internal::EncodeDer("SubjectPublicKeyInfo",
                             [&](unsigned char** p) { return i2d_X509_PUBKEY(pub.get(), p); });
}

}  // namespace devid::crypto
