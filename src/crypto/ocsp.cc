#include "crypto/ocsp.h"

#include <openssl/ocsp.h>

#include "crypto/error.h"
#include "crypto/internal/encoding.h"

namespace devid::crypto {

namespace {
constexpr size_t kMaxCertIds = 32;

OCSP_CERTID* CertId(OCSP_REQUEST* r, size_t i) {
  return OCSP_onereq_get0_id(OCSP_request_onereq_get0(r, static_cast<int>(i)));
}

Result<UniquePtr<ASN1_TIME>> Time(int64_t t) {
  UniquePtr<ASN1_TIME> out(ASN1_TIME_set(nullptr, static_cast<time_t>(t)));
  if (!out) return OpenSslError("encoding a time");
  return out;
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

bool OcspRequest::IssuedBy(size_t i, const Certificate& issuer) const {
  ASN1_OBJECT* md_oid = nullptr;
  OCSP_CERTID* id = CertId(request_.get(), i);
  if (OCSP_id_get0_info(nullptr, &md_oid, nullptr, nullptr, id) != 1) return false;
  const EVP_MD* md = EVP_get_digestbyobj(md_oid);
  if (md == nullptr) return false;
  // A CertID of the issuer with any serial: OCSP_id_issuer_cmp compares only
  // the hash algorithm, the name hash and the key hash.
  UniquePtr<OCSP_CERTID> mine(OCSP_cert_to_id(md, nullptr, issuer.get()));
  return mine && OCSP_id_issuer_cmp(mine.get(), id) == 0;
}

bool OcspRequest::HasNonce() const {
  return OCSP_REQUEST_get_ext_by_NID(request_.get(), NID_id_pkix_OCSP_Nonce, -1) >= 0;
}

Result<Bytes> MakeOcspResponse(const OcspRequest& request, const Certificate& issuer,
                               const Signer& signer,
                               const std::function<OcspAnswer(const std::string& serial)>& lookup,
                               int64_t now, int64_t valid_seconds) {
  UniquePtr<OCSP_BASICRESP> basic(OCSP_BASICRESP_new());
  if (!basic) return OpenSslError("allocating an OCSP response");
  DEVID_ASSIGN_OR_RETURN(UniquePtr<ASN1_TIME> this_update, Time(now));
  DEVID_ASSIGN_OR_RETURN(UniquePtr<ASN1_TIME> next_update, Time(now + valid_seconds));
  for (size_t i = 0; i < request.size(); ++i) {
    OCSP_CERTID* id = CertId(request.get(), i);
    OcspAnswer answer;
    if (request.IssuedBy(i, issuer)) {
      std::string serial = request.SerialHex(i);
      if (!serial.empty()) answer = lookup(serial);
    }
    int status = answer.status == OcspStatus::kGood      ? V_OCSP_CERTSTATUS_GOOD
                 : answer.status == OcspStatus::kRevoked ? V_OCSP_CERTSTATUS_REVOKED
                                                         : V_OCSP_CERTSTATUS_UNKNOWN;
    UniquePtr<ASN1_TIME> revoked_at;
    if (answer.status == OcspStatus::kRevoked) {
      DEVID_ASSIGN_OR_RETURN(revoked_at, Time(answer.revoked_at));
    }
    // RFC 5280 §5.3.1: reason 0 (unspecified) is left out.
    int reason = answer.status == OcspStatus::kRevoked && answer.reason != 0 ? answer.reason : -1;
    if (OCSP_basic_add1_status(basic.get(), id, status, reason, revoked_at.get(), this_update.get(),
                               next_update.get()) == nullptr) {
      return OpenSslError("adding an OCSP single response");
    }
  }
  if (OCSP_copy_nonce(basic.get(), request.get()) <= 0) {
    return OpenSslError("echoing the OCSP nonce");
  }
  DEVID_ASSIGN_OR_RETURN(UniquePtr<EVP_MD_CTX> ctx, signer.NewContext());
  // The responder id by key hash; the CA's certificate is not included
  // (the client has it: it is the issuer).
  if (OCSP_basic_sign_ctx(basic.get(), issuer.get(), ctx.get(), nullptr,
                          OCSP_RESPID_KEY | OCSP_NOCERTS) != 1) {
    return OpenSslError("signing the OCSP response");
  }
  UniquePtr<OCSP_RESPONSE> response(
      OCSP_response_create(OCSP_RESPONSE_STATUS_SUCCESSFUL, basic.get()));
  if (!response) return OpenSslError("wrapping the OCSP response");
  return internal::EncodeDer(
      "OCSP response", [&](unsigned char** p) { return i2d_OCSP_RESPONSE(response.get(), p); });
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
