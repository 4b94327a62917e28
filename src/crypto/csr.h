// PKCS#10 certification requests: parsing and proof of possession.
#pragma once

#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/handles.h"
#include "crypto/key.h"
#include "crypto/name.h"

namespace devid::crypto {

class CertificateRequest {
 public:
  // PEM ("CERTIFICATE REQUEST" / "NEW CERTIFICATE REQUEST") or DER; refuses trailing bytes.
  static Result<CertificateRequest> Parse(ByteView data);

  // RFC 2986: the request is signed with the private key of the public key it carries.
  Status VerifyProofOfPossession() const;

  KeyAlgorithm key_algorithm() const;
  Result<DistinguishedName> subject() const;
  // The subjectAltName of the extensionRequest attribute, if any.
  Result<std::vector<GeneralName>> RequestedSubjectAltNames() const;
  Result<Bytes> ToDer() const;

  X509_REQ* get() const { return req_.get(); }

 private:
  friend Result<CertificateRequest> MakeCertificateRequest(const PrivateKey&,
                                                           const DistinguishedName&,
                                                           const std::vector<GeneralName>&);
  explicit CertificateRequest(UniquePtr<X509_REQ> req) : req_(std::move(req)) {}
  UniquePtr<X509_REQ> req_;
};

// Builds and signs a PKCS#10 request (tests, tools, the agent later).
Result<CertificateRequest> MakeCertificateRequest(const PrivateKey& key,
                                                  const DistinguishedName& subject,
                                                  const std::vector<GeneralName>& sans);

}  // namespace devid::crypto
