// RFC 6960 OCSP: requests parsed from untrusted bytes, responses signed by
// the CA itself (§4.2.2.2: the issuer may sign its own responses).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/certificate.h"
#include "crypto/handles.h"
#include "crypto/key.h"

namespace devid::crypto {

class OcspRequest {
 public:
  // DER OCSPRequest; refuses trailing bytes, signed requests are accepted
  // (their signature is not needed to answer) and more than 32 CertIDs are not.
  static Result<OcspRequest> Parse(ByteView der);
  size_t size() const;
  // The serial number the i-th CertID asks about (upper-case hex).
  std::string SerialHex(size_t i) const;
  // Whether the i-th CertID names `issuer` (name and key hashes, any hash algorithm).
  bool IssuedBy(size_t i, const Certificate& issuer) const;
  // RFC 6960 §4.4.1: a request with a nonce wants a fresh answer; one without
  // (RFC 5019 clients) may be answered from a cache.
  bool HasNonce() const;
  OCSP_REQUEST* get() const { return request_.get(); }

 private:
  explicit OcspRequest(UniquePtr<OCSP_REQUEST> r) : request_(std::move(r)) {}
  UniquePtr<OCSP_REQUEST> request_;
};

// A DER OCSP request (SHA-1 CertID, with a nonce unless `nonce` is false:
// the RFC 5019 profile of constrained clients) about `certificate` issued by
// `issuer`: what a relying party sends (tests, benchmarks, agent).
Result<Bytes> MakeOcspRequestFor(const Certificate& certificate, const Certificate& issuer,
                                 bool nonce = true);

enum class OcspStatus { kGood, kRevoked, kUnknown };
struct OcspAnswer {
  OcspStatus status = OcspStatus::kUnknown;
  int64_t revoked_at = 0;
  int reason = 0;  // RFC 5280 CRLReason code
};

// A successful response for every CertID of `request` (its nonce echoed),
// each answer from `lookup` (called for CertIDs of this issuer only; others
// are "unknown"), signed with `signer` and carrying `issuer`'s key hash as
// the responder id.
Result<Bytes> MakeOcspResponse(const OcspRequest& request, const Certificate& issuer,
                               const Signer& signer,
                               const std::function<OcspAnswer(const std::string& serial)>& lookup,
                               int64_t now, int64_t valid_seconds);
// An unsigned error response: malformedRequest, internalError, unauthorized.
enum class OcspError { kMalformedRequest = 1, kInternalError = 2, kUnauthorized = 6 };
Bytes OcspErrorResponse(OcspError error);

}  // namespace devid::crypto
