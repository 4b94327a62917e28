// The persistence interface. Every query that touches an organization's data
// takes that organization's id: no call can reach another organization's rows.
// SQL lives only in the backends (sqlite/ now, postgres/ next).
#pragma once

#include <cstdint>
#include <functional>
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

// What OCSP asks about a certificate (RFC 6960 §2.2): whether the CA issued
// it (`known`), and its revocation if it has one.
struct RevocationStatus {
  bool known = false;
  std::optional<Revocation> revocation;
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

// The store records the subject's first CN beside it (SubjectCommonName), for
// CertificateFilter::common_name.
struct NewCertificate {
  int64_t ca_id = 0;
  std::string serial_hex;
  std::string subject;  // crypto::DistinguishedName::ToString()
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
  std::optional<int64_t> expires_before;  // not_after < this
  std::optional<int64_t> expires_after;   // not_after >= this
  std::optional<std::string> template_name;
  std::optional<std::string> subject_contains;  // substring of the subject (literal, no wildcards)
  // The subject's first CN is exactly this (indexed: a device's certificates).
  std::optional<std::string> common_name;
  std::optional<std::string> serial_hex;
  std::optional<int64_t> now;  // for kValid / kExpired; defaults to the current time
  int64_t after_id = 0;        // paging: only records with a larger id
  size_t limit = 1000;
};

// A person or back-end that logs in. A user belongs to one organization with
// one role, or to none with the role "system-admin".
struct UserRecord {
  int64_t id = 0;
  std::string username;
  std::string password_hash;  // Argon2id, encoded ($argon2id$v=19$...)
  std::optional<int64_t> org_id;
  std::string role;
  bool disabled = false;
  int64_t created_at = 0;
};

struct NewUser {
  std::string username;
  std::string password_hash;
  std::optional<int64_t> org_id;
  std::string role;
};

// A bearer token: a login session (short-lived) or an API token. Only the
// SHA-256 of the secret is stored.
struct TokenRecord {
  int64_t id = 0;
  std::string kind;  // "session" or "api"
  std::optional<int64_t> user_id;
  std::optional<int64_t> org_id;  // none: a system-admin session
  std::string role;
  std::string name;
  int64_t created_at = 0;
  std::optional<int64_t> expires_at;
  std::optional<int64_t> revoked_at;
};

struct NewToken {
  Bytes secret_hash;
  std::string kind;
  std::optional<int64_t> user_id;
  std::optional<int64_t> org_id;
  std::string role;
  std::string name;
  std::optional<int64_t> expires_at;
};

// A certificate template kept by an organization (JSON, validated by ca/).
struct TemplateRecord {
  int64_t id = 0;
  int64_t org_id = 0;
  std::string name;
  std::string json;
  int64_t created_at = 0;
  int64_t updated_at = 0;
};

// The device registry.
struct DeviceRecord {
  int64_t id = 0;
  int64_t org_id = 0;
  std::string identifier;
  std::string status;  // "active" or "disabled"
  std::optional<int64_t> first_seen;
  std::optional<int64_t> last_seen;
  int64_t created_at = 0;
};

// One link of the audit hash chain (DESIGN §6). `hash` covers every other
// field including `prev_hash`; the first record's prev_hash is empty.
struct AuditRecord {
  int64_t seq = 0;
  int64_t at = 0;
  std::optional<int64_t> org_id;
  std::string actor;
  std::string action;
  std::string target;
  std::string outcome;  // "ok", "denied", "failed"
  std::string detail;
  std::string prev_hash;
  std::string hash;
};

// The last link as recorded apart from the chain, so that dropping the tail
// of the chain is seen too.
struct AuditHead {
  int64_t seq = 0;
  std::string hash;
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

  // Runs `body` as one transaction: the store calls it makes commit together
  // or not at all (their own transactions join this one). PostgreSQL may run
  // `body` again after a serialization failure, so it must act only on the
  // store until it returns.
  virtual Status Atomically(const std::function<Status()>& body) = 0;

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
  // The status of CA `ca_id`'s certificate `serial_hex` (normalized upper-case
  // hex), read by the (serial, CA) key without the certificate itself: the
  // OCSP responder asks this for every request.
  virtual Result<RevocationStatus> FindRevocationStatus(int64_t org_id, int64_t ca_id,
                                                        const std::string& serial_hex) = 0;
  virtual Result<std::vector<CertificateRecord>> ListCertificates(
      int64_t org_id, const CertificateFilter& filter) = 0;

  // kAlreadyExists if the certificate is already revoked. Revoking a CA's own
  // certificate also disables that CA, in the same transaction.
  virtual Status Revoke(int64_t org_id, int64_t certificate_id, const Revocation& revocation) = 0;
  // What the CA's next CRL holds: a fresh number (the counter advances) and
  // the revocations, read in the same transaction so that a higher-numbered
  // CRL never lacks an entry a lower-numbered one has.
  virtual Result<CrlContent> NextCrl(int64_t org_id, int64_t ca_id) = 0;
  // How many certificates of the CA are revoked (revocations are never
  // removed, so an unchanged count means an unchanged CRL content).
  virtual Result<int64_t> CountRevocations(int64_t org_id, int64_t ca_id) = 0;

  virtual Result<std::vector<Organization>> ListOrganizations() = 0;
  virtual Status SetCaDisabled(int64_t org_id, int64_t ca_id, bool disabled) = 0;

  // Users. Usernames are unique across the service (login names one user).
  virtual Result<UserRecord> CreateUser(const NewUser& user) = 0;
  // Login only: the one unscoped lookup, by the name the person typed.
  virtual Result<UserRecord> FindUserForLogin(const std::string& username) = 0;
  // nullopt: the system admins.
  virtual Result<std::vector<UserRecord>> ListUsers(std::optional<int64_t> org_id) = 0;
  virtual Status SetUserDisabled(std::optional<int64_t> org_id, int64_t user_id, bool disabled) = 0;

  // Tokens. FindToken is the unscoped lookup authentication needs: the token
  // itself says which organization it belongs to.
  virtual Result<TokenRecord> CreateToken(const NewToken& token) = 0;
  virtual Result<TokenRecord> FindToken(ByteView secret_hash) = 0;
  virtual Result<std::vector<TokenRecord>> ListTokens(int64_t org_id) = 0;
  virtual Status RevokeToken(std::optional<int64_t> org_id, int64_t token_id, int64_t at) = 0;

  // Templates: kAlreadyExists on create, kNotFound on update/delete/get.
  virtual Result<TemplateRecord> CreateTemplate(int64_t org_id, const std::string& name,
                                                const std::string& json) = 0;
  virtual Result<TemplateRecord> UpdateTemplate(int64_t org_id, const std::string& name,
                                                const std::string& json) = 0;
  virtual Status DeleteTemplate(int64_t org_id, const std::string& name) = 0;
  virtual Result<TemplateRecord> GetTemplate(int64_t org_id, const std::string& name) = 0;
  virtual Result<std::vector<TemplateRecord>> ListTemplates(int64_t org_id) = 0;

  // Devices.
  virtual Result<DeviceRecord> CreateDevice(int64_t org_id, const std::string& identifier) = 0;
  virtual Result<DeviceRecord> GetDevice(int64_t org_id, const std::string& identifier) = 0;
  virtual Result<std::vector<DeviceRecord>> ListDevices(int64_t org_id) = 0;
  virtual Status SetDeviceStatus(int64_t org_id, const std::string& identifier,
                                 const std::string& status) = 0;
  // Records a connection: creates the device (active) on first sight.
  virtual Result<DeviceRecord> TouchDevice(int64_t org_id, const std::string& identifier,
                                           int64_t at) = 0;

  // Audit. AppendAudit assigns seq and prev_hash under the store's write lock,
  // asks `link` for the record's hash, and stores the record and the head in
  // one transaction: concurrent writers (several processes) never fork the chain.
  virtual Result<AuditRecord> AppendAudit(
      AuditRecord record, const std::function<std::string(const AuditRecord&)>& link) = 0;
  // Records with seq > after_seq in order; nullopt org: every organization's.
  virtual Result<std::vector<AuditRecord>> ListAudit(std::optional<int64_t> org_id,
                                                     int64_t after_seq, size_t limit) = 0;
  virtual Result<AuditHead> GetAuditHead() = 0;
};

// "sqlite:PATH", a plain path (SQLite), or "postgresql://USER@HOST:PORT/DB"
// (libpq connection URI; several `devid serve` processes may share it).
Result<std::unique_ptr<Store>> OpenStore(const std::string& url,
                                         Durability durability = Durability::kFull);

}  // namespace devid::store
