#include "crypto/ocsp.h"

#include <openssl/ocsp.h>
#include <openssl/x509.h>

#include <algorithm>
#include <ctime>
#include <new>
#include <utility>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"

namespace devid::crypto {

namespace {
constexpr size_t kMaxCertIds = 32;

OCSP_CERTID* CertId(OCSP_REQUEST* r, size_t i) {
  return OCSP_onereq_get0_id(OCSP_request_onereq_get0(r, static_cast<int>(i)));
}

// DER: tag, definite length, contents (X.690 §8.1).
void AppendTlv(Bytes& out, uint8_t tag, ByteView contents) {
  out.push_back(tag);
  size_t n = contents.size();
  if (n < 0x80) {
    out.push_back(static_cast<uint8_t>(n));
  } else {
    uint8_t digits[sizeof(size_t)];
    size_t count = 0;
    for (; n != 0; n >>= 8) digits[count++] = static_cast<uint8_t>(n & 0xFF);
    out.push_back(static_cast<uint8_t>(0x80 | count));
    while (count > 0) out.push_back(digits[--count]);
  }
  out.insert(out.end(), contents.begin(), contents.end());
}

Bytes Tlv(uint8_t tag, ByteView contents) {
  Bytes out;
  out.reserve(contents.size() + 6);
  AppendTlv(out, tag, contents);
  return out;
}

Result<Bytes> GeneralizedTime(int64_t t) {
  UniquePtr<ASN1_STRING> time(ASN1_GENERALIZEDTIME_set(nullptr, static_cast<time_t>(t)));
  if (!time) return OpenSslError("encoding a time");
  return internal::EncodeDer(
      "a time", [&](unsigned char** p) { return i2d_ASN1_GENERALIZEDTIME(time.get(), p); });
}

// thisUpdate (slot 0) and nextUpdate (slot 1): the same second comes back for
// every answer signed within it (per thread: no lock).
Result<Bytes> RecentGeneralizedTime(int64_t t, size_t slot) {
  thread_local std::pair<int64_t, Bytes> recent[2];
  auto& [cached_t, der] = recent[slot];
  if (der.empty() || cached_t != t) {
    DEVID_ASSIGN_OR_RETURN(der, GeneralizedTime(t));
    cached_t = t;
  }
  return der;
}

// The certificate parsed again: OpenSSL 3 decodes the public key of a
// certificate only when it parses DER, and key comparisons and signature
// checks need it (a certificate devid has just built lacks it).
Result<Certificate> WithDecodedKey(const Certificate& certificate) {
  DEVID_ASSIGN_OR_RETURN(Bytes der, certificate.ToDer());
  return Certificate::Parse(der);
}

}  // namespace

Result<OcspRequest> OcspRequest::Parse(ByteView der) {
  const unsigned char* p = der.data();
  UniquePtr<OCSP_REQUEST> r(d2i_OCSP_REQUEST(nullptr, &p, static_cast<long>(der.size())));
  if (!r || p != der.data() + der.size()) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "not a DER OCSP request");
  }
  int n = OCSP_request_onereq_count(r.get());
  if (n <= 0 || static_cast<size_t>(n) > kMaxCertIds) {
    return MakeError(ErrorCode::kInvalidInput, "an OCSP request asks about 1 to 32 certificates");
  }
  return OcspRequest(std::move(r));
}

size_t OcspRequest::size() const {
  return static_cast<size_t>(OCSP_request_onereq_count(request_.get()));
}

std::string OcspRequest::SerialHex(size_t i) const {
  ASN1_INTEGER* serial = nullptr;
  if (OCSP_id_get0_info(nullptr, nullptr, nullptr, &serial, CertId(request_.get(), i)) != 1 ||
      serial == nullptr) {
    return "";
  }
  UniquePtr<BIGNUM> bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn || BN_is_negative(bn.get())) return "";
  UniquePtr<char> hex(BN_bn2hex(bn.get()));
  return hex ? std::string(hex.get()) : "";
}

bool OcspRequest::HasNonce() const {
  return OCSP_REQUEST_get_ext_by_NID(request_.get(), NID_id_pkix_OCSP_Nonce, -1) >= 0;
}

Result<OcspResponder> OcspResponder::Create(const Certificate& built, const PrivateKey& key) {
  DEVID_ASSIGN_OR_RETURN(Certificate issuer, WithDecodedKey(built));
  if (X509_check_private_key(issuer.get(), key.get()) != 1) {
    return OpenSslError("the OCSP signing key is not the issuer's");
  }
  std::vector<IssuerHashes> hashes;
  for (const EVP_MD* md : {EVP_sha1(), EVP_sha224(), EVP_sha256(), EVP_sha384(), EVP_sha512()}) {
    // OpenSSL computes the hashes exactly as a client's CertID carries them.
    UniquePtr<OCSP_CERTID> id(OCSP_cert_to_id(md, nullptr, issuer.get()));
    ASN1_OCTET_STRING* name_hash = nullptr;
    ASN1_OCTET_STRING* key_hash = nullptr;
    if (!id || OCSP_id_get0_info(&name_hash, nullptr, &key_hash, nullptr, id.get()) != 1) {
      return OpenSslError("hashing the OCSP issuer");
    }
    hashes.push_back({EVP_MD_get_type(md),
                      Bytes(ASN1_STRING_get0_data(name_hash),
                            ASN1_STRING_get0_data(name_hash) + ASN1_STRING_length(name_hash)),
                      Bytes(ASN1_STRING_get0_data(key_hash),
                            ASN1_STRING_get0_data(key_hash) + ASN1_STRING_length(key_hash))});
  }
  // RFC 6960 §4.2.1: ResponderID byKey [2] KeyHash, the SHA-1 of the key's BIT STRING.
  unsigned char key_hash[EVP_MAX_MD_SIZE];
  unsigned int key_hash_size = 0;
  if (X509_pubkey_digest(issuer.get(), EVP_sha1(), key_hash, &key_hash_size) != 1) {
    return OpenSslError("hashing the OCSP responder's key");
  }
  Bytes responder_id = Tlv(0xA2, Tlv(0x04, ByteView(key_hash, key_hash_size)));
  // The AlgorithmIdentifier OpenSSL writes for this key: taken from an (empty)
  // response it signs here, so that RSA's NULL parameters and ECDSA's absent
  // ones come out as OpenSSL's own responses carry them.
  DEVID_ASSIGN_OR_RETURN(Signer signer, Signer::Create(key));
  UniquePtr<OCSP_BASICRESP> probe(OCSP_BASICRESP_new());
  DEVID_ASSIGN_OR_RETURN(UniquePtr<EVP_MD_CTX> ctx, signer.NewContext());
  if (!probe || OCSP_basic_sign_ctx(probe.get(), issuer.get(), ctx.get(), nullptr,
                                    OCSP_RESPID_KEY | OCSP_NOCERTS) != 1) {
    return OpenSslError("signing an OCSP response");
  }
  DEVID_ASSIGN_OR_RETURN(
      Bytes algorithm, internal::EncodeDer("signature algorithm", [&](unsigned char** p) {
        return i2d_X509_ALGOR(const_cast<X509_ALGOR*>(OCSP_resp_get0_tbs_sigalg(probe.get())), p);
      }));
  return OcspResponder(std::move(hashes), std::move(responder_id), std::move(algorithm),
                       std::move(signer));
}

bool OcspResponder::IssuedByMe(const OcspRequest& request, size_t i) const {
  ASN1_OCTET_STRING* name_hash = nullptr;
  ASN1_OBJECT* md_oid = nullptr;
  ASN1_OCTET_STRING* key_hash = nullptr;
  if (OCSP_id_get0_info(&name_hash, &md_oid, &key_hash, nullptr, CertId(request.get(), i)) != 1 ||
      name_hash == nullptr || key_hash == nullptr) {
    return false;
  }
  auto same = [](const ASN1_OCTET_STRING* a, const Bytes& b) {
    return static_cast<size_t>(ASN1_STRING_length(a)) == b.size() &&
           std::equal(b.begin(), b.end(), ASN1_STRING_get0_data(a));
  };
  // As OCSP_id_issuer_cmp: the hash algorithm, the name hash and the key hash.
  int nid = OBJ_obj2nid(md_oid);
  for (const IssuerHashes& h : hashes_) {
    if (h.digest_nid == nid) return same(name_hash, h.name_hash) && same(key_hash, h.key_hash);
  }
  return false;
}

Result<Bytes> OcspResponder::Respond(
    const OcspRequest& request, const std::function<OcspAnswer(const std::string& serial)>& lookup,
    int64_t now, int64_t valid_seconds) const {
  DEVID_ASSIGN_OR_RETURN(Bytes this_update, RecentGeneralizedTime(now, 0));
  DEVID_ASSIGN_OR_RETURN(Bytes next_update, RecentGeneralizedTime(now + valid_seconds, 1));
  // RFC 6960 §4.2.1 ResponseData: version (v1, the default, left out),
  // responderID, producedAt, responses, responseExtensions (the nonce).
  Bytes tbs = responder_id_;
  tbs.insert(tbs.end(), this_update.begin(), this_update.end());
  Bytes responses;
  for (size_t i = 0; i < request.size(); ++i) {
    OcspAnswer answer;
    if (IssuedByMe(request, i)) {
      std::string serial = request.SerialHex(i);
      if (!serial.empty()) answer = lookup(serial);
    }
    // SingleResponse: the CertID as the client sent it (re-encoded by OpenSSL),
    // certStatus, thisUpdate, nextUpdate [0].
    OCSP_CERTID* id = CertId(request.get(), i);
    DEVID_ASSIGN_OR_RETURN(Bytes single, internal::EncodeDer("OCSP CertID", [&](unsigned char** p) {
                             return i2d_OCSP_CERTID(id, p);
                           }));
    if (answer.status == OcspStatus::kGood) {
      single.insert(single.end(), {0x80, 0x00});  // good [0] IMPLICIT NULL
    } else if (answer.status == OcspStatus::kRevoked) {
      // revoked [1] IMPLICIT RevokedInfo { revocationTime, revocationReason [0] EXPLICIT }
      DEVID_ASSIGN_OR_RETURN(Bytes info, GeneralizedTime(answer.revoked_at));
      // RFC 5280 §5.3.1: reason 0 (unspecified) is left out.
      if (answer.reason > 0 && answer.reason <= 10) {
        AppendTlv(info, 0xA0, Bytes{0x0A, 0x01, static_cast<uint8_t>(answer.reason)});
      }
      AppendTlv(single, 0xA1, info);
    } else {
      single.insert(single.end(), {0x82, 0x00});  // unknown [2] IMPLICIT NULL
    }
    single.insert(single.end(), this_update.begin(), this_update.end());
    AppendTlv(single, 0xA0, next_update);
    AppendTlv(responses, 0x30, single);
  }
  AppendTlv(tbs, 0x30, responses);
  // RFC 6960 §4.4.1: the request's nonce extension, echoed as it came.
  int nonce = OCSP_REQUEST_get_ext_by_NID(request.get(), NID_id_pkix_OCSP_Nonce, -1);
  if (nonce >= 0) {
    X509_EXTENSION* ext = OCSP_REQUEST_get_ext(request.get(), nonce);
    DEVID_ASSIGN_OR_RETURN(Bytes extension,
                           internal::EncodeDer("OCSP nonce", [&](unsigned char** p) {
                             return i2d_X509_EXTENSION(ext, p);
                           }));
    AppendTlv(tbs, 0xA1, Tlv(0x30, extension));
  }
  tbs = Tlv(0x30, tbs);

  DEVID_ASSIGN_OR_RETURN(UniquePtr<EVP_MD_CTX> ctx, signer_.NewContext());
  size_t signature_size = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &signature_size, tbs.data(), tbs.size()) != 1) {
    return OpenSslError("signing the OCSP response");
  }
  Bytes signature(signature_size + 1, 0);  // BIT STRING: no unused bits, then the signature
  if (EVP_DigestSign(ctx.get(), signature.data() + 1, &signature_size, tbs.data(), tbs.size()) !=
      1) {
    return OpenSslError("signing the OCSP response");
  }
  signature.resize(signature_size + 1);

  // BasicOCSPResponse { tbsResponseData, signatureAlgorithm, signature } (no certs:
  // the client has the issuer), in OCSPResponse { successful, responseBytes [0] }.
  Bytes basic = std::move(tbs);
  basic.insert(basic.end(), signature_algorithm_.begin(), signature_algorithm_.end());
  AppendTlv(basic, 0x03, signature);
  basic = Tlv(0x30, basic);
  static const Bytes kBasicType = [] {
    auto der = internal::EncodeDer("OCSP response type", [](unsigned char** p) {
      return i2d_ASN1_OBJECT(OBJ_nid2obj(NID_id_pkix_OCSP_basic), p);
    });
    if (!der.ok()) throw std::bad_alloc();
    return *der;
  }();
  Bytes response_bytes = kBasicType;
  AppendTlv(response_bytes, 0x04, basic);
  Bytes response = {0x0A, 0x01, 0x00};  // responseStatus successful
  AppendTlv(response, 0xA0, Tlv(0x30, response_bytes));
  return Tlv(0x30, response);
}

Result<std::vector<OcspAnswer>> ReadOcspResponse(ByteView response_der, ByteView request_der,
                                                 const Certificate& given_issuer) {
  DEVID_ASSIGN_OR_RETURN(OcspRequest request, OcspRequest::Parse(request_der));
  DEVID_ASSIGN_OR_RETURN(Certificate issuer, WithDecodedKey(given_issuer));
  const unsigned char* p = response_der.data();
  UniquePtr<OCSP_RESPONSE> response(
      d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(response_der.size())));
  if (!response || p != response_der.data() + response_der.size()) {
    ClearOpenSslErrors();
    return MakeError(ErrorCode::kInvalidInput, "not a DER OCSP response");
  }
  int status = OCSP_response_status(response.get());
  if (status != OCSP_RESPONSE_STATUS_SUCCESSFUL) {
    return MakeError(ErrorCode::kInvalidInput, "the OCSP response is an error: " +
                                                   std::string(OCSP_response_status_str(status)));
  }
  UniquePtr<OCSP_BASICRESP> basic(OCSP_response_get1_basic(response.get()));
  if (!basic) return OpenSslError("reading the basic OCSP response");
  UniquePtr<STACK_OF(X509)> signers(sk_X509_new_null());
  if (!signers || X509_up_ref(issuer.get()) != 1) return OpenSslError("listing the issuer");
  if (sk_X509_push(signers.get(), issuer.get()) <= 0) {
    X509_free(issuer.get());
    return OpenSslError("listing the issuer");
  }
  UniquePtr<X509_STORE> trusted(X509_STORE_new());
  if (!trusted) return OpenSslError("allocating a certificate store");
  // The issuer is trusted by the caller: its signature is what is checked.
  if (OCSP_basic_verify(basic.get(), signers.get(), trusted.get(), OCSP_NOINTERN | OCSP_NOVERIFY) !=
      1) {
    return OpenSslError("the OCSP response is not signed by the issuer", ErrorCode::kVerification);
  }
  int nonce = OCSP_check_nonce(request.get(), basic.get());
  if (nonce != 1 && nonce != 2) {
    return MakeError(ErrorCode::kVerification, "the OCSP response does not echo the nonce");
  }
  std::vector<OcspAnswer> answers;
  for (size_t i = 0; i < request.size(); ++i) {
    int cert_status = -1;
    int reason = -1;
    ASN1_GENERALIZEDTIME* revoked_at = nullptr;
    if (OCSP_resp_find_status(basic.get(), CertId(request.get(), i), &cert_status, &reason,
                              &revoked_at, nullptr, nullptr) != 1) {
      return MakeError(ErrorCode::kInvalidInput, "the OCSP response leaves a certificate out");
    }
    OcspAnswer answer;
    answer.status = cert_status == V_OCSP_CERTSTATUS_GOOD      ? OcspStatus::kGood
                    : cert_status == V_OCSP_CERTSTATUS_REVOKED ? OcspStatus::kRevoked
                                                               : OcspStatus::kUnknown;
    if (answer.status == OcspStatus::kRevoked) {
      struct tm tm = {};
      if (revoked_at == nullptr || ASN1_TIME_to_tm(revoked_at, &tm) != 1) {
        return OpenSslError("reading the revocation time");
      }
      answer.revoked_at = static_cast<int64_t>(timegm(&tm));
      answer.reason = reason < 0 ? 0 : reason;
    }
    answers.push_back(answer);
  }
  return answers;
}

Result<Bytes> MakeOcspRequestFor(const Certificate& certificate, const Certificate& issuer,
                                 bool nonce) {
  UniquePtr<OCSP_REQUEST> request(OCSP_REQUEST_new());
  UniquePtr<OCSP_CERTID> id(OCSP_cert_to_id(nullptr, certificate.get(), issuer.get()));
  if (!request || !id || OCSP_request_add0_id(request.get(), id.get()) == nullptr) {
    return OpenSslError("building an OCSP request");
  }
  id.release();  // the request owns it now
  if (nonce && OCSP_request_add1_nonce(request.get(), nullptr, -1) != 1) {
    return OpenSslError("adding the OCSP nonce");
  }
  return internal::EncodeDer("OCSP request",
                             [&](unsigned char** p) { return i2d_OCSP_REQUEST(request.get(), p); });
}

Bytes OcspErrorResponse(OcspError error) {
  UniquePtr<OCSP_RESPONSE> response(OCSP_response_create(static_cast<int>(error), nullptr));
  auto der = internal::EncodeDer(
      "OCSP response", [&](unsigned char** p) { return i2d_OCSP_RESPONSE(response.get(), p); });
  return der.ok() ? *der : Bytes{0x30, 0x03, 0x0A, 0x01, static_cast<uint8_t>(error)};
}

}  // namespace devid::crypto
