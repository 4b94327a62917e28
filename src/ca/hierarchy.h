// The CA engine: root and issuing CAs per organization, issuance under a
// template, revocation and CRLs. State lives in a store::Store; CA keys are
// kept there as (normally encrypted) PKCS#8.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ca/profile.h"
#include "core/result.h"
#include "core/secret.h"
#include "crypto/certificate.h"
#include "crypto/crl.h"
#include "crypto/csr.h"
#include "crypto/key.h"
#include "crypto/ocsp.h"
#include "store/store.h"

namespace devid::ca {

// A serial as certificates and the store hold it: upper-case hex of the
// magnitude, without leading zero bytes. kInvalidInput for non-hex or zero.
Result<std::string> NormalizeSerial(const std::string& serial_hex);

// The root CA of an organization is always named this.
inline constexpr std::string_view kRootCaName = "root";

// How CA private keys are protected at rest. An empty passphrase means the
// operator chose --no-passphrase: keys are then stored unencrypted.
struct KeyProtection {
  std::optional<SecretString> passphrase;
};

struct CaOptions {
  std::string subject;
  crypto::KeyType key_type = crypto::KeyType::kEcP256;
  std::optional<int> days;
  std::string crl_url;   // may contain {org} and {ca}
  std::string ocsp_url;  // may contain {org} and {ca}
};

struct IssueOptions {
  std::optional<int> days;
  std::vector<crypto::GeneralName> extra_sans;
  std::optional<int64_t> now;  // tests
};

struct IssuedCertificate {
  crypto::Certificate certificate;
  store::CertificateRecord record;
};

// A CA whose private key is unlocked in memory; issues under templates.
class SigningCa {
 public:
  SigningCa(store::Store& store, store::Organization org, store::CaRecord record,
            crypto::Certificate certificate, crypto::PrivateKey key, crypto::Signer signer,
            crypto::OcspResponder ocsp)
      : store_(store),
        org_(std::move(org)),
        record_(std::move(record)),
        certificate_(std::move(certificate)),
        key_(std::move(key)),
        signer_(std::move(signer)),
        ocsp_(std::move(ocsp)) {}

  const store::CaRecord& record() const { return record_; }
  const crypto::Certificate& certificate() const { return certificate_; }

  // Checks the request against the template (key type, proof of possession,
  // subject, SANs, validity), signs, and commits the record before returning.
  Result<IssuedCertificate> Issue(const CertificateProfile& profile,
                                  const crypto::CertificateRequest& csr,
                                  const IssueOptions& options = {});

  // For keys the CA side generated (batch issuance): no CSR, the subject and SANs are given.
  Result<IssuedCertificate> IssueForKey(const CertificateProfile& profile,
                                        const crypto::PrivateKey& subject_key,
                                        const crypto::DistinguishedName& subject,
                                        const std::vector<crypto::GeneralName>& sans,
                                        const IssueOptions& options = {});

  // Batch issuance for keys the CA side generated: every certificate is
  // checked and signed first, then all are committed in one transaction, so
  // a crash leaves either all of them recorded or none handed out.
  struct BatchItem {
    const crypto::PrivateKey* key = nullptr;
    crypto::DistinguishedName subject;
    std::vector<crypto::GeneralName> sans;
  };
  Result<std::vector<crypto::Certificate>> IssueBatch(const CertificateProfile& profile,
                                                      const std::vector<BatchItem>& items,
                                                      const IssueOptions& options = {});

  // Renewal: a new certificate for the same key, subject and SANs as `current`
  // (which this CA issued), under `profile`.
  Result<IssuedCertificate> Renew(const CertificateProfile& profile,
                                  const crypto::Certificate& current,
                                  const IssueOptions& options = {});

  // A full CRL of this CA's revocations, numbered from the store.
  Result<crypto::Crl> MakeCrl(int next_update_days = 7, std::optional<int64_t> now = {});
  // How many of this CA's certificates are revoked (a CRL cache's key).
  Result<int64_t> RevocationCount();

  // RFC 6960: the answer to a DER OCSP request about this CA's certificates,
  // from the store (good, revoked with time and reason, or unknown), signed
  // by this CA and valid for an hour. A malformed request gets the
  // malformedRequest response, not an error.
  // `cacheable` (optional) is set when the request carries no nonce, so that
  // the answer may be served again for a short while (RFC 5019 §6).
  // `store_access`, when given, runs each store lookup (a caller that shares
  // the store between threads takes its lock there only: parsing, building
  // and signing the answer then run outside it, concurrently).
  using StoreAccess = std::function<void(const std::function<void()>&)>;
  Result<Bytes> RespondOcsp(ByteView request_der, std::optional<int64_t> now = {},
                            bool* cacheable = nullptr, const StoreAccess& store_access = {});
  // The same for a request the caller parsed already; an error (the store
  // could not answer, signing failed) where the other answers internalError.
  Result<Bytes> RespondOcsp(const crypto::OcspRequest& request, std::optional<int64_t> now,
                            const StoreAccess& store_access);

 private:
  friend class Hierarchy;
  template <typename SetKey>
  Result<IssuedCertificate> Sign(const CertificateProfile& profile,
                                 const crypto::DistinguishedName& subject,
                                 const std::vector<crypto::GeneralName>& sans,
                                 const IssueOptions& options, SetKey&& set_key);
  std::string ExpandUrl(const std::string& pattern) const;

  store::Store& store_;
  store::Organization org_;
  store::CaRecord record_;
  crypto::Certificate certificate_;
  crypto::PrivateKey key_;
  crypto::Signer signer_;  // key_ prepared for certificate signatures
  // Prepared once per unlock; holds nothing about certificates (their status
  // is read from the store for every request).
  crypto::OcspResponder ocsp_;
};

class Hierarchy {
 public:
  Hierarchy(store::Store& store, KeyProtection protection,
            ProfileCatalog profiles = ProfileCatalog())
      : store_(store), protection_(std::move(protection)), profiles_(std::move(profiles)) {}

  // Creates the organization if needed and its self-signed root CA.
  Result<store::CaRecord> InitRoot(const std::string& org, const CaOptions& options);
  // An issuing CA signed by the organization's root.
  Result<store::CaRecord> InitIssuing(const std::string& org, const std::string& name,
                                      const CaOptions& options);

  // An issuing CA whose certificate an external CA signed: `chain` is its
  // certificate, then its issuers up to a self-signed root; `key` its private
  // key. Checked: a CA certificate, valid now, whose public key is `key`'s,
  // and whose chain verifies up to that root. The key is stored protected as
  // the others are; the external issuers are not stored (the CA has no parent
  // in this organization).
  Result<store::CaRecord> ImportIssuing(const std::string& org, const std::string& name,
                                        const std::vector<crypto::Certificate>& chain,
                                        const crypto::PrivateKey& key, const CaOptions& options);

  Result<SigningCa> Unlock(const std::string& org, const std::string& ca_name);
  Result<CertificateProfile> FindProfile(std::string_view name) const {
    return profiles_.Find(name);
  }

  // Revokes by serial; `ca_name` disambiguates when two CAs share a serial.
  Result<store::CertificateRecord> Revoke(const std::string& org, const std::string& serial_hex,
                                          crypto::RevocationReason reason,
                                          const std::optional<std::string>& ca_name = {});
  // The CA's certificate followed by its issuers up to the root.
  Result<std::vector<crypto::Certificate>> Chain(const std::string& org,
                                                 const std::string& ca_name);
  Result<std::vector<store::CertificateRecord>> List(const std::string& org,
                                                     const store::CertificateFilter& filter);
  Result<std::vector<store::CaRecord>> ListCas(const std::string& org);

 private:
  Result<store::CaRecord> CreateCa(const store::Organization& org, const std::string& name,
                                   const CaOptions& options, SigningCa* parent);

  store::Store& store_;
  KeyProtection protection_;
  ProfileCatalog profiles_;
};

}  // namespace devid::ca
