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

// The responder of one issuer, prepared once (when its CA is unlocked): the
// issuer's CertID hashes for SHA-1/-224/-256/-384/-512, its responder id (key
// hash), the signature algorithm and a ready signing context. A response then
// costs one signature and the DER around it: built as OpenSSL objects it also
// cost a CertID per request, a key comparison, a SHA-1 fetch and three
// re-encodings of the response (engine: ~14,000 answers/s then, ~21,000-25,000 now).
class OcspResponder {
 public:
  // `key` must be `issuer`'s (checked).
  static Result<OcspResponder> Create(const Certificate& issuer, const PrivateKey& key);

  // A successful response for every CertID of `request` (its nonce extension
  // echoed), each answer from `lookup` (called for CertIDs of this issuer
  // only; others are "unknown"), signed by the issuer and carrying its key
  // hash as the responder id, valid from `now` for `valid_seconds`.
  Result<Bytes> Respond(const OcspRequest& request,
                        const std::function<OcspAnswer(const std::string& serial)>& lookup,
                        int64_t now, int64_t valid_seconds) const;

 private:
  struct IssuerHashes {
    int digest_nid = 0;
    Bytes name_hash;
    Bytes key_hash;
  };
  OcspResponder(std::vector<IssuerHashes> hashes, Bytes responder_id, Bytes signature_algorithm,
                Signer signer)
      : hashes_(std::move(hashes)),
        responder_id_(std::move(responder_id)),
        signature_algorithm_(std::move(signature_algorithm)),
        signer_(std::move(signer)) {}
  bool IssuedByMe(const OcspRequest& request, size_t i) const;

  std::vector<IssuerHashes> hashes_;
  Bytes responder_id_;         // DER ResponderID, byKey
  Bytes signature_algorithm_;  // DER AlgorithmIdentifier, as OpenSSL signs with the key
  Signer signer_;
};

// What a relying party reads from a DER OCSP response to `request_der`:
// a successful response, signed by `issuer` (the signature only: the issuer
// is trusted by the caller), with `request_der`'s nonce echoed when it had
// one, and an answer for each of its CertIDs, in order (tests, clients).
Result<std::vector<OcspAnswer>> ReadOcspResponse(ByteView response_der, ByteView request_der,
                                                 const Certificate& issuer);

// An unsigned error response: malformedRequest, internalError, unauthorized.
enum class OcspError { kMalformedRequest = 1, kInternalError = 2, kUnauthorized = 6 };
Bytes OcspErrorResponse(OcspError error);

}  // namespace devid::crypto
