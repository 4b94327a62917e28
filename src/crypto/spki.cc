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
  if (OBJ_obj2nid(obj) != NID_X9_62_id_ecPublicKey || ptype != V_ASN1_OBJECT) return std::nullopt;
  int curve = OBJ_obj2nid(static_cast<const ASN1_OBJECT*>(pval));
  if (curve == NID_X9_62_prime256v1) return KeyType::kEcP256;
  if (curve == NID_secp384r1) return KeyType::kEcP384;
  return std::nullopt;
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
  auto key = Decode();
  if (!key.ok()) return KeyAlgorithm{std::nullopt, "undecodable key"};
  return DescribeKey(key->get());
}

ByteView SubjectPublicKeyInfo::key_bits() const {
  return ByteView(ASN1_STRING_get0_data(bits_.get()),
                  static_cast<size_t>(ASN1_STRING_length(bits_.get())));
}

Result<UniquePtr<EVP_PKEY>> SubjectPublicKeyInfo::Decode() const {
  if (ec_type_) {
    const EVP_PKEY* tmpl = CurveTemplate(*ec_type_);
    UniquePtr<EVP_PKEY> key(EVP_PKEY_new());
    ByteView point = key_bits();
    if (tmpl == nullptr || !key || EVP_PKEY_copy_parameters(key.get(), tmpl) != 1) {
      return OpenSslError("preparing an EC key");
    }
    if (EVP_PKEY_set1_encoded_public_key(key.get(), point.data(), point.size()) != 1) {
      ClearOpenSslErrors();
      return MakeError(
          ErrorCode::kInvalidInput,
          "the public key is not a valid " + std::string(KeyTypeName(*ec_type_)) + " point");
    }
    return key;
  }
  DEVID_ASSIGN_OR_RETURN(Bytes der, ToDer());
  const unsigned char* p = der.data();
  UniquePtr<EVP_PKEY> key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key) return OpenSslError("decoding the public key", ErrorCode::kInvalidInput);
  return key;
}

Status SubjectPublicKeyInfo::CopyTo(X509_PUBKEY* out) const {
  const ASN1_OBJECT* obj = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&obj, &ptype, &pval, algorithm_.get());
  UniquePtr<ASN1_OBJECT> obj_copy(OBJ_dup(obj));
  void* pval_copy = nullptr;
  if (ptype == V_ASN1_OBJECT) {
    pval_copy = OBJ_dup(static_cast<const ASN1_OBJECT*>(pval));
  } else if (ptype == V_ASN1_SEQUENCE || ptype == V_ASN1_OCTET_STRING) {
    pval_copy = ASN1_STRING_dup(static_cast<const ASN1_STRING*>(pval));
  } else if (ptype != V_ASN1_NULL && ptype != V_ASN1_UNDEF && ptype != 0) {
    return MakeError(ErrorCode::kInvalidInput, "unsupported public key parameters");
  }
  ByteView bits = key_bits();
  auto* enc = static_cast<unsigned char*>(OPENSSL_memdup(bits.data(), bits.size()));
  if (!obj_copy || (pval != nullptr && pval_copy == nullptr && ptype != V_ASN1_NULL) ||
      enc == nullptr) {
    OPENSSL_free(enc);
    return OpenSslError("copying the public key");
  }
  if (X509_PUBKEY_set0_param(out, obj_copy.get(), ptype, pval_copy, enc,
                             static_cast<int>(bits.size())) != 1) {
    OPENSSL_free(enc);
    return OpenSslError("setting the public key");
  }
  obj_copy.release();
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
