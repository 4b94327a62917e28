// The persistence interface. Every query that touches an organization's data
// takes that organization's id: no call can reach another organization's rows.
// SQL lives only in the backends (sqlite/ now, postgres/ next).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace devid::store {

struct Organization {
  int64_t id = 0;
  std::string name;
  int64_t created_at = 0;
};

enum class CaKind { kRoot, kIssuing };

struct CaRecord {
  int64_t id = 0;
  int64_t org_id = 0;
  std::string name;
  CaKind kind = CaKind::kRoot;
  std::optional<int64_t> parent_id;
  Bytes certificate_der;
  std::string key_pem;  // PKCS#8, encrypted unless the operator chose --no-passphrase
  bool key_encrypted = true;
  std::string crl_url;   // may contain {org} and {ca}
  std::string ocsp_url;  // may contain {org} and {ca}
  bool disabled = false;
  int64_t created_at = 0;
};

struct Revocation {
  int reason = 0;  // RFC 5280 CRLReason code
  int64_t revoked_at = 0;
};

struct CertificateRecord {
  int64_t id = 0;
  int64_t org_id = 0;
  int64_t ca_id = 0;
  std::string serial_hex;  // upper-case, as in the certificate
  std::string subject;
  std::string template_name;
  int64_t not_before = 0;
  int64_t not_after = 0;
  Bytes der;
  int64_t created_at = 0;
  std::optional<Revocation> revocation;
};

struct NewCertificate {
  int64_t ca_id = 0;
  std::string serial_hex;
  std::string subject;
  std::string template_name;
  int64_t not_before = 0;
  int64_t not_after = 0;
  Bytes der;
};

struct NewCa {
  std::string name;
  CaKind kind = CaKind::kRoot;
  std::optional<int64_t> parent_id;
  Bytes certificate_der;
  std::string key_pem;
  bool key_encrypted = true;
  std::string crl_url;
  std::string ocsp_url;
};

enum class CertificateStatus { kAny, kValid, kRevoked, kExpired };

struct CertificateFilter {
  std::optional<int64_t> ca_id;
  CertificateStatus status = CertificateStatus::kAny;
  std::optional<int64_t> expires_before;
  std::optional<int64_t> now;  // for kValid / kExpired; defaults to the current time
  size_t limit = 1000;
};

struct RevokedSerial {
  std::string serial_hex;
  int reason = 0;
  int64_t revoked_at = 0;
};

struct CrlContent {
  uint64_t number = 0;
  std::vector<RevokedSerial> revoked;
};

// Durability of each commit. kFull: the commit is on disk when the call
// returns (survives power loss). kNormal: survives a crash of the process,
// the last commits may be lost on power loss (SQLite WAL, synchronous=NORMAL).
enum class Durability { kFull, kNormal };

class Store {
 public:
  virtual ~Store() = default;

  virtual int schema_version() = 0;

  virtual Result<Organization> CreateOrganization(const std::string& name) = 0;
  virtual Result<Organization> GetOrganization(const std::string& name) = 0;

  // Creates the organization if it does not exist and its root CA, in one
  // transaction: a failure leaves no organization behind.
  virtual Result<CaRecord> CreateRootCa(const std::string& org_name, const NewCa& ca,
                                        NewCertificate certificate) = 0;

  // Creates the CA row and records its own certificate (under `certificate.ca_id`
  // for an ICA, under the new CA itself for a root: pass ca_id 0) in one transaction.
  virtual Result<CaRecord> CreateCa(int64_t org_id, const NewCa& ca,
                                    NewCertificate certificate) = 0;
  virtual Result<CaRecord> GetCa(int64_t org_id, const std::string& name) = 0;
  virtual Result<CaRecord> GetCaById(int64_t org_id, int64_t ca_id) = 0;
  virtual Result<std::vector<CaRecord>> ListCas(int64_t org_id) = 0;

  // kAlreadyExists when (ca, serial) is taken.
  virtual Result<CertificateRecord> InsertCertificate(int64_t org_id,
                                                      const NewCertificate& cert) = 0;
  // All or nothing, one transaction (batch issuance).
  virtual Status InsertCertificates(int64_t org_id, const std::vector<NewCertificate>& certs) = 0;
  virtual Result<std::vector<CertificateRecord>> FindCertificatesBySerial(
      int64_t org_id, const std::string& serial_hex) = 0;
  virtual Result<std::vector<CertificateRecord>> ListCertificates(
      int64_t org_id, const CertificateFilter& filter) = 0;

  // kAlreadyExists if the certificate is already revoked. Revoking a CA's own
  // certificate also disables that CA, in the same transaction.
  virtual Status Revoke(int64_t org_id, int64_t certificate_id, const Revocation& revocation) = 0;
  // What the CA's next CRL holds: a fresh number (the counter advances) and
  // the revocations, read in the same transaction so that a higher-numbered
  // CRL never lacks an entry a lower-numbered one has.
  virtual Result<CrlContent> NextCrl(int64_t org_id, int64_t ca_id) = 0;
};

// "sqlite:PATH" or a plain path. (postgresql:// arrives with the CMS.)
Result<std::unique_ptr<Store>> OpenStore(const std::string& url,
                                         Durability durability = Durability::kFull);

}  // namespace devid::store
