// PKCS#10 certification requests (RFC 2986): parsing and proof of possession.
#pragma once

#include <functional>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/handles.h"
#include "crypto/key.h"
#include "crypto/name.h"
#include "crypto/spki.h"

namespace devid::crypto {

// A parsed request. Parsing walks the DER with OpenSSL's ASN.1 reader but does
// not decode the public key (see spki.h); the signature is verified over the
// certificationRequestInfo bytes exactly as received.
class CertificateRequest {
 public:
  // PEM ("CERTIFICATE REQUEST" / "NEW CERTIFICATE REQUEST") or DER. Refuses
  // BER, trailing bytes, versions other than v1(0), unknown structure.
  static Result<CertificateRequest> Parse(ByteView data);

  // The request is signed with the private key of the public key it carries.
  Status VerifyProofOfPossession() const;

  KeyAlgorithm key_algorithm() const { return public_key_.algorithm(); }
  const SubjectPublicKeyInfo& public_key() const { return public_key_; }
  Result<DistinguishedName> subject() const;
  // The subjectAltName of the extensionRequest attribute, if any.
  Result<std::vector<GeneralName>> RequestedSubjectAltNames() const;
  const Bytes& der() const { return der_; }
  Result<std::string> ToPem() const;  // "CERTIFICATE REQUEST"

 private:
  CertificateRequest(Bytes der, SubjectPublicKeyInfo public_key)
      : der_(std::move(der)), public_key_(std::move(public_key)) {}

  ByteView Slice(std::pair<size_t, size_t> range) const {
    return ByteView(der_).subspan(range.first, range.second);
  }

  Bytes der_;
  std::pair<size_t, size_t> info_;        // certificationRequestInfo: offset, length in der_
  std::pair<size_t, size_t> attributes_;  // content of [0] attributes: offset, length in der_
  UniquePtr<X509_NAME> subject_;
  SubjectPublicKeyInfo public_key_;
  UniquePtr<X509_ALGOR> signature_algorithm_;
  UniquePtr<ASN1_STRING> signature_;
};

// Builds and signs a PKCS#10 request (tests, tools, the agent later).
Result<CertificateRequest> MakeCertificateRequest(const PrivateKey& key,
                                                  const DistinguishedName& subject,
                                                  const std::vector<GeneralName>& sans);

// An EC key held elsewhere (a chip): its public key and a function that signs
// a digest (SHA-256 for P-256, SHA-384 for P-384) with it, giving DER ECDSA.
struct ExternalEcSigner {
  PublicKey public_key;
  std::function<Result<Bytes>(ByteView digest)> sign_digest;
};
// The same request, signed by such a key (seed fig. 4 step 3: a CSR signed in the chip).
Result<CertificateRequest> MakeCertificateRequest(const ExternalEcSigner& signer,
                                                  const DistinguishedName& subject,
                                                  const std::vector<GeneralName>& sans);

}  // namespace devid::crypto
