// SubjectPublicKeyInfo kept as its parsed parts (algorithm + key bits).
//
// OpenSSL 3.0 decodes a public key through its generic decoder machinery
// whenever it parses an SPKI (d2i_X509_REQ, d2i_PUBKEY): ~190 us for a P-256
// key on a 2-core VM, five times an ECDSA verification. devid never needs that
// decode to copy a key into a certificate, and for P-256/P-384 it builds a
// verification key in ~8 us from a per-curve parameter template instead.
#pragma once

#include <optional>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/handles.h"
#include "crypto/key.h"

namespace devid::crypto {

class SubjectPublicKeyInfo {
 public:
  // DER SubjectPublicKeyInfo; validates the structure, not the key itself.
  static Result<SubjectPublicKeyInfo> Parse(ByteView der);
  // The public half of a key devid holds (for EC without going through an encoder).
  static Result<SubjectPublicKeyInfo> FromKey(const EVP_PKEY* key);

  SubjectPublicKeyInfo(const SubjectPublicKeyInfo& other);
  SubjectPublicKeyInfo(SubjectPublicKeyInfo&&) noexcept = default;
  SubjectPublicKeyInfo& operator=(SubjectPublicKeyInfo&&) noexcept = default;

  // P-256 / P-384 from the OIDs alone; other types need Decode().
  KeyAlgorithm algorithm() const;
  // A usable EVP_PKEY; for EC it also checks that the point is on the curve.
  Result<UniquePtr<EVP_PKEY>> Decode() const;
  // Sets `out` to this algorithm and key (no key decode or encode).
  Status CopyTo(X509_PUBKEY* out) const;
  Result<Bytes> ToDer() const;

  const X509_ALGOR* algorithm_identifier() const { return algorithm_.get(); }
  ByteView key_bits() const;

 private:
  SubjectPublicKeyInfo(UniquePtr<X509_ALGOR> algorithm, UniquePtr<ASN1_STRING> bits);
  UniquePtr<X509_ALGOR> algorithm_;
  UniquePtr<ASN1_STRING> bits_;  // BIT STRING
  std::optional<KeyType> ec_type_;
};

}  // namespace devid::crypto
