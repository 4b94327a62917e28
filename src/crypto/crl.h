// Certificate revocation lists (RFC 5280 §5) and revocation reasons.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "crypto/certificate.h"
#include "crypto/handles.h"
#include "crypto/key.h"

namespace devid::crypto {

// RFC 5280 §5.3.1 CRLReason (7 is unused).
enum class RevocationReason : int {
  kUnspecified = 0,
  kKeyCompromise = 1,
  kCaCompromise = 2,
  kAffiliationChanged = 3,
  kSuperseded = 4,
  kCessationOfOperation = 5,
  kCertificateHold = 6,
  kRemoveFromCrl = 8,
  kPrivilegeWithdrawn = 9,
  kAaCompromise = 10,
};

// RFC 5280 names: "unspecified", "keyCompromise", "cACompromise", ...
std::string_view RevocationReasonName(RevocationReason reason);
// Accepts the RFC names (case-insensitive). Refuses certificateHold and
// removeFromCRL: devid revocations are permanent and its CRLs are full CRLs.
Result<RevocationReason> ParseRevocationReason(std::string_view name);
Result<RevocationReason> RevocationReasonFromCode(int code);

struct RevokedEntry {
  Bytes serial;  // big-endian
  int64_t revoked_at;
  RevocationReason reason;
};

class Crl {
 public:
  explicit Crl(UniquePtr<X509_CRL> crl) : crl_(std::move(crl)) {}
  Crl(const Crl& other);
  Crl(Crl&&) noexcept = default;
  Crl& operator=(Crl&&) noexcept = default;

  static Result<Crl> Parse(ByteView data);  // PEM or DER
  Result<Bytes> ToDer() const;
  Result<std::string> ToPem() const;
  // The cRLNumber extension, as hex; empty if absent.
  std::string NumberHex() const;
  size_t revoked_count() const;
  int64_t next_update() const;
  X509_CRL* get() const { return crl_.get(); }

 private:
  UniquePtr<X509_CRL> crl_;
};

struct CrlFields {
  uint64_t number;
  int64_t this_update;
  int64_t next_update;
  std::vector<RevokedEntry> revoked;
};

// A full v2 CRL with cRLNumber and authorityKeyIdentifier, signed by the CA key.
Result<Crl> BuildCrl(const Certificate& issuer, const PrivateKey& issuer_key,
                     const CrlFields& fields);

}  // namespace devid::crypto
