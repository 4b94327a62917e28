#include "crypto/crl.h"

#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <ctime>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"

namespace devid::crypto {

namespace {
constexpr RevocationReason kAllReasons[] = {
    RevocationReason::kUnspecified,        RevocationReason::kKeyCompromise,
    RevocationReason::kCaCompromise,       RevocationReason::kAffiliationChanged,
    RevocationReason::kSuperseded,         RevocationReason::kCessationOfOperation,
    RevocationReason::kCertificateHold,    RevocationReason::kRemoveFromCrl,
    RevocationReason::kPrivilegeWithdrawn, RevocationReason::kAaCompromise,
};

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}
}  // namespace

std::string_view RevocationReasonName(RevocationReason reason) {
  switch (reason) {
    case RevocationReason::kUnspecified:
      return "unspecified";
    case RevocationReason::kKeyCompromise:
      return "keyCompromise";
    case RevocationReason::kCaCompromise:
      return "cACompromise";
    case RevocationReason::kAffiliationChanged:
      return "affiliationChanged";
    case RevocationReason::kSuperseded:
      return "superseded";
    case RevocationReason::kCessationOfOperation:
      return "cessationOfOperation";
    case RevocationReason::kCertificateHold:
      return "certificateHold";
    case RevocationReason::kRemoveFromCrl:
      return "removeFromCRL";
    case RevocationReason::kPrivilegeWithdrawn:
      return "privilegeWithdrawn";
    case RevocationReason::kAaCompromise:
      return "aACompromise";
  }
  return "?";
}

Result<RevocationReason> ParseRevocationReason(std::string_view name) {
  for (RevocationReason r : kAllReasons) {
    if (EqualsIgnoreCase(name, RevocationReasonName(r))) {
      if (r == RevocationReason::kCertificateHold || r == RevocationReason::kRemoveFromCrl) {
        return MakeError(ErrorCode::kInvalidInput,
                         "revocation reason '" + std::string(name) +
                             "' is not supported: devid revocations are permanent");
      }
      return r;
    }
  }
  return MakeError(
      ErrorCode::kInvalidInput,
      "unknown revocation reason '" + std::string(name) +
          "' (unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, "
          "cessationOfOperation, privilegeWithdrawn, aACompromise)");
}

Result<RevocationReason> RevocationReasonFromCode(int code) {
  for (RevocationReason r : kAllReasons) {
    if (static_cast<int>(r) == code) return r;
  }
  return MakeError(ErrorCode::kInvalidInput,
                   "invalid revocation reason code " + std::to_string(code));
}

Crl::Crl(const Crl& other) : crl_(X509_CRL_dup(other.crl_.get())) {
  if (!crl_) throw std::bad_alloc();
}

Result<Crl> Crl::Parse(ByteView data) {
  if (data.empty()) return MakeError(ErrorCode::kInvalidInput, "the CRL is empty");
  if (LooksLikePem(data)) {
    DEVID_ASSIGN_OR_RETURN(UniquePtr<BIO> bio, internal::MemBio(data));
    X509_CRL* raw = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr);
    if (raw == nullptr) return OpenSslError("parsing PEM CRL", ErrorCode::kInvalidInput);
    return Crl(UniquePtr<X509_CRL>(raw));
  }
  const unsigned char* p = data.data();
  UniquePtr<X509_CRL> crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(data.size())));
  if (!crl) return OpenSslError("parsing DER CRL", ErrorCode::kInvalidInput);
  if (p != data.data() + data.size()) {
    return MakeError(ErrorCode::kInvalidInput, "parsing DER CRL: trailing bytes");
  }
  return Crl(std::move(crl));
}

Result<Bytes> Crl::ToDer() const {
  return internal::EncodeDer("CRL", [&](unsigned char** p) { return i2d_X509_CRL(crl_.get(), p); });
}

Result<std::string> Crl::ToPem() const {
  return internal::EncodePem("CRL",
                             [&](BIO* bio) { return PEM_write_bio_X509_CRL(bio, crl_.get()); });
}

std::string Crl::NumberHex() const {
  void* raw = X509_CRL_get_ext_d2i(crl_.get(), NID_crl_number, nullptr, nullptr);
  if (raw == nullptr) {
    ClearOpenSslErrors();
    return {};
  }
  UniquePtr<ASN1_INTEGER> number(static_cast<ASN1_INTEGER*>(raw));
  return HexEncode(ByteView(ASN1_STRING_get0_data(number.get()),
                            static_cast<size_t>(ASN1_STRING_length(number.get()))));
}

size_t Crl::revoked_count() const {
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl_.get());
  return revoked == nullptr ? 0 : static_cast<size_t>(sk_X509_REVOKED_num(revoked));
}

int64_t Crl::next_update() const {
  const ASN1_TIME* t = X509_CRL_get0_nextUpdate(crl_.get());
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ClearOpenSslErrors();
    return 0;
  }
  return static_cast<int64_t>(timegm(&tm));
}

Result<Crl> BuildCrl(const Certificate& issuer, const PrivateKey& issuer_key,
                     const CrlFields& fields) {
  UniquePtr<X509_CRL> crl(X509_CRL_new());
  if (!crl) return OpenSslError("allocating CRL");
  UniquePtr<ASN1_TIME> this_update(ASN1_TIME_set(nullptr, static_cast<time_t>(fields.this_update)));
  UniquePtr<ASN1_TIME> next_update(ASN1_TIME_set(nullptr, static_cast<time_t>(fields.next_update)));
  if (X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) != 1 ||
      X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer.get())) != 1 ||
      !this_update || !next_update || X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) != 1) {
    return OpenSslError("building CRL header");
  }
  for (const RevokedEntry& entry : fields.revoked) {
    UniquePtr<X509_REVOKED> rev(X509_REVOKED_new());
    UniquePtr<BIGNUM> bn(
        BN_bin2bn(entry.serial.data(), static_cast<int>(entry.serial.size()), nullptr));
    UniquePtr<ASN1_INTEGER> serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
    UniquePtr<ASN1_TIME> when(ASN1_TIME_set(nullptr, static_cast<time_t>(entry.revoked_at)));
    if (!rev || !serial || !when || X509_REVOKED_set_serialNumber(rev.get(), serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(rev.get(), when.get()) != 1) {
      return OpenSslError("building CRL entry");
    }
    // RFC 5280 §5.3.1: reasonCode unspecified SHOULD be absent.
    if (entry.reason != RevocationReason::kUnspecified) {
      UniquePtr<ASN1_ENUMERATED> code(ASN1_ENUMERATED_new());
      if (!code || ASN1_ENUMERATED_set(code.get(), static_cast<int>(entry.reason)) != 1 ||
          X509_REVOKED_add1_ext_i2d(rev.get(), NID_crl_reason, code.get(), 0, 0) != 1) {
        return OpenSslError("CRL entry reason code");
      }
    }
    if (X509_CRL_add0_revoked(crl.get(), rev.get()) != 1) return OpenSslError("adding CRL entry");
    rev.release();
  }
  UniquePtr<ASN1_INTEGER> number(ASN1_INTEGER_new());
  if (!number || ASN1_INTEGER_set_uint64(number.get(), fields.number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0, 0) != 1) {
    return OpenSslError("cRLNumber");
  }
  const ASN1_OCTET_STRING* ski = X509_get0_subject_key_id(issuer.get());
  if (ski == nullptr)
    return MakeError(ErrorCode::kPolicy, "the CRL issuer has no subjectKeyIdentifier");
  UniquePtr<AUTHORITY_KEYID> akid(AUTHORITY_KEYID_new());
  if (!akid || (akid->keyid = ASN1_OCTET_STRING_dup(ski)) == nullptr ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_authority_key_identifier, akid.get(), 0, 0) != 1) {
    return OpenSslError("CRL authorityKeyIdentifier");
  }
  if (X509_CRL_sort(crl.get()) != 1) return OpenSslError("sorting CRL");
  KeyAlgorithm alg = issuer_key.algorithm();
  if (!alg.type) return MakeError(ErrorCode::kPolicy, "cannot sign with a " + alg.name + " key");
  if (X509_CRL_sign(crl.get(), issuer_key.get(), SignatureDigestFor(*alg.type)) <= 0) {
    return OpenSslError("signing CRL");
  }
  return Crl(std::move(crl));
}

}  // namespace devid::crypto
