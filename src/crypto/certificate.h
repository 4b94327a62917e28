// X.509 certificates: parsing, encoding, and the builder the CA engine signs with.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/csr.h"
#include "crypto/handles.h"
#include "crypto/key.h"
#include "crypto/name.h"

namespace devid::crypto {

class Certificate {
 public:
  explicit Certificate(UniquePtr<X509> x509) : x509_(std::move(x509)) {}
  Certificate(const Certificate& other);
  Certificate& operator=(const Certificate& other);
  Certificate(Certificate&&) noexcept = default;
  Certificate& operator=(Certificate&&) noexcept = default;

  // One certificate, PEM or DER; refuses trailing bytes after DER.
  static Result<Certificate> Parse(ByteView data);
  // Every "CERTIFICATE" block of a PEM file, in order; at least one.
  static Result<std::vector<Certificate>> ParsePemChain(ByteView pem);

  Result<Bytes> ToDer() const;
  Result<std::string> ToPem() const;

  std::string SerialHex() const;  // upper-case, no leading zero bytes
  // DER encodings of the subject and issuer Name and the serial INTEGER, as
  // PKCS#11 certificate objects carry them (CKA_SUBJECT, CKA_ISSUER, CKA_SERIAL_NUMBER).
  Result<Bytes> SubjectDer() const;
  Result<Bytes> IssuerDer() const;
  Result<Bytes> SerialDer() const;
  Result<DistinguishedName> subject() const;
  Result<DistinguishedName> issuer() const;
  int64_t not_before() const;
  int64_t not_after() const;
  bool is_ca() const;
  KeyAlgorithm key_algorithm() const;
  Result<PublicKey> public_key() const;
  // False for certificates devid has just built from key bits: OpenSSL 3 decodes
  // a public key only when it parses DER. public_key() and VerifyChain cope.
  bool has_decoded_key() const;
  Result<std::vector<GeneralName>> SubjectAltNames() const;
  // The subjectPublicKey BIT STRING's bytes (no key decode).
  Bytes PublicKeyBits() const;
  // SHA-256 over the DER encoding, hex.
  Result<std::string> FingerprintSha256() const;
  // What the issuer signed, for a check outside OpenSSL's verifier (a chip's
  // VERIFY_SIGNATURE): the digest of the tbsCertificate under the signature
  // algorithm's hash, and the DER ECDSA signature. ECDSA certificates only.
  Result<std::pair<Bytes, Bytes>> SignedDigestAndSignature() const;

  X509* get() const { return x509_.get(); }

 private:
  UniquePtr<X509> x509_;
};

// RFC 5280 §4.2.1.3 KeyUsage bits.
enum class KeyUsageBit : int {
  kDigitalSignature = 0,
  kNonRepudiation = 1,
  kKeyEncipherment = 2,
  kDataEncipherment = 3,
  kKeyAgreement = 4,
  kKeyCertSign = 5,
  kCrlSign = 6,
};
Result<KeyUsageBit> ParseKeyUsage(std::string_view name);
std::string_view KeyUsageName(KeyUsageBit bit);
// Short names ("clientAuth", "serverAuth", ...) or dotted OIDs.
Status ValidateExtendedKeyUsage(std::string_view name);

class CertificateBuilder {
 public:
  CertificateBuilder();

  Status SetSerial(ByteView big_endian);
  Status SetSubject(const DistinguishedName& subject);
  // Issuer name = issuer's subject; AKI = issuer's SKI.
  Status SetIssuer(const Certificate& issuer);
  // Self-signed: issuer name = subject (call after SetSubject); AKI = own SKI.
  Status SetSelfIssued();
  Status SetValidity(int64_t not_before, int64_t not_after);
  // Copies the request's SubjectPublicKeyInfo as it is (no key decode or re-encoding).
  Status SetPublicKey(const CertificateRequest& csr);
  Status SetPublicKey(const PrivateKey& key);
  Status SetPublicKey(const SubjectPublicKeyInfo& spki);

  Status AddBasicConstraints(bool ca, std::optional<int> path_len);
  Status AddKeyUsage(const std::vector<KeyUsageBit>& bits);
  Status AddExtendedKeyUsage(const std::vector<std::string>& purposes);
  Status AddSubjectAltNames(const std::vector<GeneralName>& names, bool critical);
  Status AddCrlDistributionPoint(const std::string& url);
  Status AddOcspResponder(const std::string& url);

  // Adds SKI/AKI, signs using SignatureDigestFor(key type), returns the certificate.
  Result<Certificate> Sign(const Signer& signer);
  Result<Certificate> Sign(const PrivateKey& key);

 private:
  Status AddExtension(int nid, bool critical, void* value);
  UniquePtr<X509> x509_;
  Bytes authority_key_id_;
  bool self_issued_ = false;
  bool ok_ = true;
};

}  // namespace devid::crypto
