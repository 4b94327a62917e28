#include "store/postgres/postgres_store.h"

#include <libpq-fe.h>

#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/time.h"
#include "store/migrations.h"

namespace devid::store {

namespace {

// Type OIDs from pg_type.h (catalog constants, stable across releases).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;
constexpr Oid kTextArrayOid = 1009;
constexpr Oid kInt8ArrayOid = 1016;

// Any 64-bit number: the key of the advisory lock taken while migrating.
constexpr int64_t kMigrationLockKey = 0x6465766964'0001;  // "devid", 1

// Serialization failure and deadlock: the transaction is retried.
constexpr int kTransactionAttempts = 5;

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnDeleter>;
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// Parameters of one statement, each with its type so that the server never
// has to guess (INSERT ... SELECT $1 would otherwise take text).
class Params {
 public:
  Params& Int(int64_t v) { return Add(kInt8Oid, std::to_string(v), 0); }
  Params& Int(std::optional<int64_t> v) { return v ? Int(*v) : Null(kInt8Oid); }
  Params& Bool(bool v) { return Int(v ? 1 : 0); }
  Params& Text(std::string_view v) { return Add(kTextOid, std::string(v), 0); }
  Params& TextOrNull(const std::optional<std::string>& v) { return v ? Text(*v) : Null(kTextOid); }
  // Arrays in PostgreSQL's text form ({1,2}; {"a,b","c\"d"} is a,b and c"d), so
  // that one statement can carry a page of rows.
  Params& IntArray(const std::vector<int64_t>& v) {
    std::string text = "{";
    for (int64_t i : v) text += (text.size() > 1 ? "," : "") + std::to_string(i);
    return Add(kInt8ArrayOid, text + "}", 0);
  }
  Params& TextArray(const std::vector<std::string>& v) {
    std::string text = "{";
    for (const std::string& s : v) {
      if (text.size() > 1) text += ',';
      text += '"';
      for (char c : s) {
        if (c == '"' || c == '\\') text += '\\';
        text += c;
      }
      text += '"';
    }
    return Add(kTextArrayOid, text + "}", 0);
  }
  Params& Blob(ByteView v) {
    return Add(kByteaOid, std::string(reinterpret_cast<const char*>(v.data()), v.size()), 1);
  }
  Params& Null(Oid type) {
    Add(type, std::string(), 0);
    null_.back() = true;
    return *this;
  }

  int size() const { return static_cast<int>(types_.size()); }
  const Oid* types() const { return types_.data(); }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }
  // Valid while this object lives and is not added to.
  std::vector<const char*> values() const {
    std::vector<const char*> out;
    out.reserve(values_.size());
    for (size_t i = 0; i < values_.size(); ++i)
      out.push_back(null_[i] ? nullptr : values_[i].data());
    return out;
  }

 private:
  Params& Add(Oid type, std::string value, int format) {
    types_.push_back(type);
    lengths_.push_back(static_cast<int>(value.size()));
    formats_.push_back(format);
    values_.push_back(std::move(value));
    null_.push_back(false);
    return *this;
  }

  std::vector<Oid> types_;
  std::vector<int> lengths_;
  std::vector<int> formats_;
  std::vector<std::string> values_;
  std::vector<bool> null_;
};

uint64_t BigEndian(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// A query's rows, in binary format.
class Rows {
 public:
  explicit Rows(ResultPtr r) : r_(std::move(r)) {}

  int size() const { return PQntuples(r_.get()); }
  bool empty() const { return size() == 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  // NULL reads as 0, as sqlite3_column_int64 has it.
  int64_t Int(int row, int col) const {
    if (IsNull(row, col)) return 0;
    const char* p = PQgetvalue(r_.get(), row, col);
    switch (PQftype(r_.get(), col)) {
      case kInt8Oid:
        return static_cast<int64_t>(BigEndian(p, 8));
      case kInt4Oid:
        return static_cast<int32_t>(BigEndian(p, 4));
      case kInt2Oid:
        return static_cast<int16_t>(BigEndian(p, 2));
      case kBoolOid:
        return p[0] != 0 ? 1 : 0;
      default:
        // A schema this code does not know: a bug, not bad input.
        throw std::logic_error("column " + std::to_string(col) + " is not an integer");
    }
  }
  std::optional<int64_t> OptInt(int row, int col) const {
    return IsNull(row, col) ? std::nullopt : std::optional<int64_t>(Int(row, col));
  }
  std::string Text(int row, int col) const {
    return std::string(PQgetvalue(r_.get(), row, col),
                       static_cast<size_t>(PQgetlength(r_.get(), row, col)));
  }
  Bytes Blob(int row, int col) const {
    const auto* p = reinterpret_cast<const uint8_t*>(PQgetvalue(r_.get(), row, col));
    return Bytes(p, p + PQgetlength(r_.get(), row, col));
  }

 private:
  ResultPtr r_;
};

constexpr std::string_view kCaColumns =
    "id, org_id, name, kind, parent_id, certificate_der, key_pem, key_encrypted, crl_url, "
    "ocsp_url, disabled, created_at";

CaRecord ReadCa(const Rows& s, int i) {
  CaRecord r;
  r.id = s.Int(i, 0);
  r.org_id = s.Int(i, 1);
  r.name = s.Text(i, 2);
  r.kind = s.Text(i, 3) == "root" ? CaKind::kRoot : CaKind::kIssuing;
  r.parent_id = s.OptInt(i, 4);
  r.certificate_der = s.Blob(i, 5);
  r.key_pem = s.Text(i, 6);
  r.key_encrypted = s.Int(i, 7) != 0;
  r.crl_url = s.Text(i, 8);
  r.ocsp_url = s.Text(i, 9);
  r.disabled = s.Int(i, 10) != 0;
  r.created_at = s.Int(i, 11);
  return r;
}

constexpr std::string_view kCertColumns =
    "c.id, c.org_id, c.ca_id, c.serial_hex, c.subject, c.template, c.not_before, c.not_after, "
    "c.der, c.created_at, r.reason, r.revoked_at";

CertificateRecord ReadCertificate(const Rows& s, int i) {
  CertificateRecord r;
  r.id = s.Int(i, 0);
  r.org_id = s.Int(i, 1);
  r.ca_id = s.Int(i, 2);
  r.serial_hex = s.Text(i, 3);
  r.subject = s.Text(i, 4);
  r.template_name = s.Text(i, 5);
  r.not_before = s.Int(i, 6);
  r.not_after = s.Int(i, 7);
  r.der = s.Blob(i, 8);
  r.created_at = s.Int(i, 9);
  if (!s.IsNull(i, 10)) r.revocation = Revocation{static_cast<int>(s.Int(i, 10)), s.Int(i, 11)};
  return r;
}

constexpr std::string_view kUserColumns =
    "id, username, password_hash, org_id, role, disabled, created_at";

UserRecord ReadUser(const Rows& s, int i) {
  UserRecord r;
  r.id = s.Int(i, 0);
  r.username = s.Text(i, 1);
  r.password_hash = s.Text(i, 2);
  r.org_id = s.OptInt(i, 3);
  r.role = s.Text(i, 4);
  r.disabled = s.Int(i, 5) != 0;
  r.created_at = s.Int(i, 6);
  return r;
}

constexpr std::string_view kTokenColumns =
    "id, kind, user_id, org_id, role, name, created_at, expires_at, revoked_at";

TokenRecord ReadToken(const Rows& s, int i) {
  TokenRecord r;
  r.id = s.Int(i, 0);
  r.kind = s.Text(i, 1);
  r.user_id = s.OptInt(i, 2);
  r.org_id = s.OptInt(i, 3);
  r.role = s.Text(i, 4);
  r.name = s.Text(i, 5);
  r.created_at = s.Int(i, 6);
  r.expires_at = s.OptInt(i, 7);
  r.revoked_at = s.OptInt(i, 8);
  return r;
}

constexpr std::string_view kTemplateColumns = "id, org_id, name, body, created_at, updated_at";

TemplateRecord ReadTemplate(const Rows& s, int i) {
  return TemplateRecord{s.Int(i, 0),  s.Int(i, 1), s.Text(i, 2),
                        s.Text(i, 3), s.Int(i, 4), s.Int(i, 5)};
}

constexpr std::string_view kDeviceColumns =
    "id, org_id, identifier, status, first_seen, last_seen, created_at";

DeviceRecord ReadDevice(const Rows& s, int i) {
  DeviceRecord r;
  r.id = s.Int(i, 0);
  r.org_id = s.Int(i, 1);
  r.identifier = s.Text(i, 2);
  r.status = s.Text(i, 3);
  r.first_seen = s.OptInt(i, 4);
  r.last_seen = s.OptInt(i, 5);
  r.created_at = s.Int(i, 6);
  return r;
}

constexpr std::string_view kAuditColumns =
    "seq, at, org_id, actor, action, target, outcome, detail, prev_hash, hash";

AuditRecord ReadAudit(const Rows& s, int i) {
  AuditRecord r;
  r.seq = s.Int(i, 0);
  r.at = s.Int(i, 1);
  r.org_id = s.OptInt(i, 2);
  r.actor = s.Text(i, 3);
  r.action = s.Text(i, 4);
  r.target = s.Text(i, 5);
  r.outcome = s.Text(i, 6);
  r.detail = s.Text(i, 7);
  r.prev_hash = s.Text(i, 8);
  r.hash = s.Text(i, 9);
  return r;
}

template <typename T, typename Read>
std::vector<T> ReadAll(const Rows& rows, Read read) {
  std::vector<T> out;
  out.reserve(static_cast<size_t>(rows.size()));
  for (int i = 0; i < rows.size(); ++i) out.push_back(read(rows, i));
  return out;
}

std::string Trimmed(const char* message) {
  std::string m = message != nullptr ? message : "";
  while (!m.empty() && (m.back() == '\n' || m.back() == ' ')) m.pop_back();
  return m;
}

class PostgresStore final : public Store {
 public:
  explicit PostgresStore(ConnPtr conn) : conn_(std::move(conn)) {}

  Status Init() {
    // The server's notices ("relation already exists, skipping") are not errors.
    PQsetNoticeProcessor(
        conn_.get(), [](void*, const char*) {}, nullptr);
    return Migrate();
  }

  int schema_version() override { return version_; }

  Status Atomically(const std::function<Status()>& body) override {
    return InTransaction([&] { return body(); });
  }

  Result<Organization> CreateOrganization(const std::string& name) override {
    int64_t now = NowUnix();
    auto rows = Query("INSERT INTO organizations (name, created_at) VALUES ($1, $2) RETURNING id",
                      Params().Text(name).Int(now), "creating organization");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kAlreadyExists, "organization '" + name + "' already exists");
      }
      return rows.error();
    }
    return Organization{rows->Int(0, 0), name, now};
  }

  Result<Organization> GetOrganization(const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows,
                           Query("SELECT id, name, created_at FROM organizations WHERE name = $1",
                                 Params().Text(name), "reading organization"));
    if (rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "organization '" + name + "' does not exist");
    }
    return Organization{rows.Int(0, 0), rows.Text(0, 1), rows.Int(0, 2)};
  }

  Result<CaRecord> CreateCa(int64_t org_id, const NewCa& ca, NewCertificate certificate) override {
    return InTransaction([&] { return CreateCaLocked(org_id, ca, certificate); });
  }

  Result<CaRecord> CreateRootCa(const std::string& org_name, const NewCa& ca,
                                NewCertificate certificate) override {
    return InTransaction([&]() -> Result<CaRecord> {
      // ON CONFLICT: a concurrent creator of the same organization is waited
      // for and then joined, where SQLite's write lock would have serialized them.
      DEVID_TRY(
          Query("INSERT INTO organizations (name, created_at) VALUES ($1, $2) "
                "ON CONFLICT (name) DO NOTHING",
                Params().Text(org_name).Int(NowUnix()), "creating organization"));
      DEVID_ASSIGN_OR_RETURN(Organization org, GetOrganization(org_name));
      return CreateCaLocked(org.id, ca, certificate);
    });
  }

  Result<CaRecord> GetCa(int64_t org_id, const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT " + std::string(kCaColumns) +
                                                " FROM cas WHERE org_id = $1 AND name = $2",
                                            Params().Int(org_id).Text(name), "reading CA"));
    if (rows.empty()) return MakeError(ErrorCode::kNotFound, "CA '" + name + "' does not exist");
    return ReadCa(rows, 0);
  }

  Result<CaRecord> GetCaById(int64_t org_id, int64_t ca_id) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT " + std::string(kCaColumns) +
                                                " FROM cas WHERE org_id = $1 AND id = $2",
                                            Params().Int(org_id).Int(ca_id), "reading CA"));
    if (rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "CA #" + std::to_string(ca_id) + " does not exist");
    }
    return ReadCa(rows, 0);
  }

  Result<std::vector<CaRecord>> ListCas(int64_t org_id) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT " + std::string(kCaColumns) +
                                                " FROM cas WHERE org_id = $1 ORDER BY id",
                                            Params().Int(org_id), "listing CAs"));
    return ReadAll<CaRecord>(rows, ReadCa);
  }

  Result<CertificateRecord> InsertCertificate(int64_t org_id, const NewCertificate& cert) override {
    DEVID_ASSIGN_OR_RETURN(int64_t id, InsertCertificateRow(org_id, cert));
    CertificateRecord r;
    r.id = id;
    r.org_id = org_id;
    r.ca_id = cert.ca_id;
    r.serial_hex = cert.serial_hex;
    r.subject = cert.subject;
    r.template_name = cert.template_name;
    r.not_before = cert.not_before;
    r.not_after = cert.not_after;
    r.der = cert.der;
    r.created_at = last_created_at_;
    return r;
  }

  Status InsertCertificates(int64_t org_id, const std::vector<NewCertificate>& certs) override {
    return InTransaction([&]() -> Status {
      for (const NewCertificate& c : certs) DEVID_TRY(InsertCertificateRow(org_id, c));
      return {};
    });
  }

  Result<std::vector<CertificateRecord>> FindCertificatesBySerial(
      int64_t org_id, const std::string& serial_hex) override {
    static const std::string kSql =
        "SELECT " + std::string(kCertColumns) +
        " FROM certificates c LEFT JOIN revocations r ON r.certificate_id = c.id "
        "WHERE c.org_id = $1 AND c.serial_hex = $2 ORDER BY c.id";
    DEVID_ASSIGN_OR_RETURN(
        Rows rows, Query(kSql, Params().Int(org_id).Text(serial_hex), "reading certificates"));
    return ReadAll<CertificateRecord>(rows, ReadCertificate);
  }

  Result<RevocationStatus> FindRevocationStatus(int64_t org_id, int64_t ca_id,
                                                const std::string& serial_hex) override {
    DEVID_ASSIGN_OR_RETURN(
        Rows rows,
        Query("SELECT r.reason, r.revoked_at FROM certificates c "
              "LEFT JOIN revocations r ON r.certificate_id = c.id "
              "WHERE c.serial_hex = $1 AND c.ca_id = $2 AND c.org_id = $3",
              Params().Text(serial_hex).Int(ca_id).Int(org_id), "reading a certificate's status"));
    RevocationStatus out;
    if (rows.empty()) return out;
    out.known = true;
    if (!rows.IsNull(0, 0)) {
      out.revocation = Revocation{static_cast<int>(rows.Int(0, 0)), rows.Int(0, 1)};
    }
    return out;
  }

  Result<std::vector<CertificateRecord>> ListCertificates(int64_t org_id,
                                                          const CertificateFilter& f) override {
    std::string sql = "SELECT " + std::string(kCertColumns) +
                      " FROM certificates c LEFT JOIN revocations r ON r.certificate_id = c.id "
                      "WHERE c.org_id = $1";
    Params p;
    p.Int(org_id);
    auto next = [&p] { return "$" + std::to_string(p.size() + 1); };
    if (f.ca_id) {
      sql += " AND c.ca_id = " + next();
      p.Int(*f.ca_id);
    }
    if (f.expires_before) {
      sql += " AND c.not_after < " + next();
      p.Int(*f.expires_before);
    }
    if (f.expires_after) {
      sql += " AND c.not_after >= " + next();
      p.Int(*f.expires_after);
    }
    if (f.template_name) {
      sql += " AND c.template = " + next();
      p.Text(*f.template_name);
    }
    if (f.subject_contains) {
      // strpos: a literal substring, unlike LIKE whose % and _ are wildcards.
      sql += " AND strpos(c.subject, " + next() + ") > 0";
      p.Text(*f.subject_contains);
    }
    if (f.serial_hex) {
      sql += " AND c.serial_hex = " + next();
      p.Text(*f.serial_hex);
    }
    if (f.common_name) {
      // And rows recorded without a name (StoredCommonName), checked below.
      sql += " AND (c.common_name = " + next() + " OR c.common_name IS NULL)";
      p.Text(*f.common_name);
    }
    if (f.after_id > 0) {
      sql += " AND c.id > " + next();
      p.Int(f.after_id);
    }
    switch (f.status) {
      case CertificateStatus::kAny:
        break;
      case CertificateStatus::kValid:
        sql += " AND r.certificate_id IS NULL AND c.not_after >= " + next();
        p.Int(f.now.value_or(NowUnix()));
        break;
      case CertificateStatus::kRevoked:
        sql += " AND r.certificate_id IS NOT NULL";
        break;
      case CertificateStatus::kExpired:
        sql += " AND r.certificate_id IS NULL AND c.not_after < " + next();
        p.Int(f.now.value_or(NowUnix()));
        break;
    }
    sql += " ORDER BY c.id LIMIT " + next();
    p.Int(static_cast<int64_t>(f.limit));
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query(sql, p, "reading certificates"));
    std::vector<CertificateRecord> out = ReadAll<CertificateRecord>(rows, ReadCertificate);
    if (f.common_name) KeepNamed(out, *f.common_name);
    return out;
  }

  Status Revoke(int64_t org_id, int64_t certificate_id, const Revocation& revocation) override {
    return InTransaction([&] { return RevokeLocked(org_id, certificate_id, revocation); });
  }

  Result<CrlContent> NextCrl(int64_t org_id, int64_t ca_id) override {
    // The UPDATE locks the CA's row until commit, so a later number's read
    // starts after this transaction commits and sees at least what it saw.
    return InTransaction([&]() -> Result<CrlContent> {
      CrlContent out;
      DEVID_ASSIGN_OR_RETURN(Rows n,
                             Query("UPDATE cas SET next_crl_number = next_crl_number + 1 "
                                   "WHERE org_id = $1 AND id = $2 "
                                   "RETURNING next_crl_number - 1",
                                   Params().Int(org_id).Int(ca_id), "advancing CRL number"));
      if (n.empty()) return MakeError(ErrorCode::kNotFound, "CA not found");
      out.number = static_cast<uint64_t>(n.Int(0, 0));
      DEVID_ASSIGN_OR_RETURN(
          Rows s, Query("SELECT c.serial_hex, r.reason, r.revoked_at FROM revocations r "
                        "JOIN certificates c ON c.id = r.certificate_id "
                        "WHERE r.org_id = $1 AND r.ca_id = $2 ORDER BY r.revoked_at, c.id",
                        Params().Int(org_id).Int(ca_id), "listing revocations"));
      for (int i = 0; i < s.size(); ++i) {
        out.revoked.push_back({s.Text(i, 0), static_cast<int>(s.Int(i, 1)), s.Int(i, 2)});
      }
      return out;
    });
  }

  Result<int64_t> CountRevocations(int64_t org_id, int64_t ca_id) override {
    DEVID_ASSIGN_OR_RETURN(
        Rows rows, Query("SELECT count(*) FROM revocations WHERE org_id = $1 AND ca_id = $2",
                         Params().Int(org_id).Int(ca_id), "counting revocations"));
    return rows.Int(0, 0);
  }

  Result<std::vector<Organization>> ListOrganizations() override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT id, name, created_at FROM organizations "
                                            "ORDER BY id",
                                            Params(), "listing organizations"));
    return ReadAll<Organization>(rows, [](const Rows& s, int i) {
      return Organization{s.Int(i, 0), s.Text(i, 1), s.Int(i, 2)};
    });
  }

  Status SetCaDisabled(int64_t org_id, int64_t ca_id, bool disabled) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows,
                           Query("UPDATE cas SET disabled = $3 WHERE org_id = $1 AND id = $2 "
                                 "RETURNING id",
                                 Params().Int(org_id).Int(ca_id).Bool(disabled), "updating CA"));
    if (rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "CA not found");
    }
    return {};
  }

  Result<UserRecord> CreateUser(const NewUser& user) override {
    int64_t now = NowUnix();
    auto rows = Query(
        "INSERT INTO users (username, password_hash, org_id, role, disabled, created_at) "
        "VALUES ($1, $2, $3, $4, 0, $5) RETURNING " +
            std::string(kUserColumns),
        Params()
            .Text(user.username)
            .Text(user.password_hash)
            .Int(user.org_id)
            .Text(user.role)
            .Int(now),
        "creating user");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kAlreadyExists, "user '" + user.username + "' already exists");
      }
      return rows.error();
    }
    return ReadUser(*rows, 0);
  }

  Result<UserRecord> FindUserForLogin(const std::string& username) override {
    DEVID_ASSIGN_OR_RETURN(
        Rows rows, Query("SELECT " + std::string(kUserColumns) + " FROM users WHERE username = $1",
                         Params().Text(username), "reading user"));
    if (rows.empty()) return MakeError(ErrorCode::kNotFound, "no such user");
    return ReadUser(rows, 0);
  }

  Result<std::vector<UserRecord>> ListUsers(std::optional<int64_t> org_id) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows,
                           Query("SELECT " + std::string(kUserColumns) +
                                     " FROM users WHERE org_id IS NOT DISTINCT FROM $1 ORDER BY id",
                                 Params().Int(org_id), "listing users"));
    return ReadAll<UserRecord>(rows, ReadUser);
  }

  Status SetUserDisabled(std::optional<int64_t> org_id, int64_t user_id, bool disabled) override {
    DEVID_ASSIGN_OR_RETURN(
        Rows rows, Query("UPDATE users SET disabled = $3 "
                         "WHERE id = $2 AND org_id IS NOT DISTINCT FROM $1 RETURNING id",
                         Params().Int(org_id).Int(user_id).Bool(disabled), "updating user"));
    if (rows.empty()) return MakeError(ErrorCode::kNotFound, "user not found");
    return {};
  }

  Result<TokenRecord> CreateToken(const NewToken& token) override {
    auto rows = Query(
        "INSERT INTO tokens (secret_hash, kind, user_id, org_id, role, name, created_at, "
        "expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING " +
            std::string(kTokenColumns),
        Params()
            .Blob(token.secret_hash)
            .Text(token.kind)
            .Int(token.user_id)
            .Int(token.org_id)
            .Text(token.role)
            .Text(token.name)
            .Int(NowUnix())
            .Int(token.expires_at),
        "creating token");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kAlreadyExists, "token rejected by the store's constraints");
      }
      return rows.error();
    }
    return ReadToken(*rows, 0);
  }

  Result<TokenRecord> FindToken(ByteView secret_hash) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT " + std::string(kTokenColumns) +
                                                " FROM tokens WHERE secret_hash = $1",
                                            Params().Blob(secret_hash), "reading token"));
    if (rows.empty()) return MakeError(ErrorCode::kNotFound, "no such token");
    return ReadToken(rows, 0);
  }

  // API tokens only: sessions are not listed.
  Result<std::vector<TokenRecord>> ListTokens(int64_t org_id) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT " + std::string(kTokenColumns) +
                                                " FROM tokens WHERE org_id = $1 AND kind = 'api' "
                                                "ORDER BY id",
                                            Params().Int(org_id), "listing tokens"));
    return ReadAll<TokenRecord>(rows, ReadToken);
  }

  Status RevokeToken(std::optional<int64_t> org_id, int64_t token_id, int64_t at) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows,
                           Query("UPDATE tokens SET revoked_at = $3 WHERE id = $2 AND "
                                 "revoked_at IS NULL AND org_id IS NOT DISTINCT FROM $1 "
                                 "RETURNING id",
                                 Params().Int(org_id).Int(token_id).Int(at), "revoking token"));
    if (rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "token not found or already revoked");
    }
    return {};
  }

  Result<TemplateRecord> CreateTemplate(int64_t org_id, const std::string& name,
                                        const std::string& json) override {
    int64_t now = NowUnix();
    auto rows = Query(
        "INSERT INTO templates (org_id, name, body, created_at, updated_at) "
        "VALUES ($1, $2, $3, $4, $4) RETURNING " +
            std::string(kTemplateColumns),
        Params().Int(org_id).Text(name).Text(json).Int(now), "creating template");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kAlreadyExists, "template '" + name + "' already exists");
      }
      return rows.error();
    }
    return ReadTemplate(*rows, 0);
  }

  Result<TemplateRecord> UpdateTemplate(int64_t org_id, const std::string& name,
                                        const std::string& json) override {
    DEVID_ASSIGN_OR_RETURN(
        Rows rows,
        Query("UPDATE templates SET body = $3, updated_at = $4 "
              "WHERE org_id = $1 AND name = $2 RETURNING " +
                  std::string(kTemplateColumns),
              Params().Int(org_id).Text(name).Text(json).Int(NowUnix()), "updating template"));
    if (rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "template '" + name + "' does not exist");
    }
    return ReadTemplate(rows, 0);
  }

  Status DeleteTemplate(int64_t org_id, const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(
        Rows rows, Query("DELETE FROM templates WHERE org_id = $1 AND name = $2 RETURNING id",
                         Params().Int(org_id).Text(name), "deleting template"));
    if (rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "template '" + name + "' does not exist");
    }
    return {};
  }

  Result<TemplateRecord> GetTemplate(int64_t org_id, const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT " + std::string(kTemplateColumns) +
                                                " FROM templates WHERE org_id = $1 AND name = $2",
                                            Params().Int(org_id).Text(name), "reading template"));
    if (rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "template '" + name + "' does not exist");
    }
    return ReadTemplate(rows, 0);
  }

  Result<std::vector<TemplateRecord>> ListTemplates(int64_t org_id) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT " + std::string(kTemplateColumns) +
                                                " FROM templates WHERE org_id = $1 ORDER BY name",
                                            Params().Int(org_id), "listing templates"));
    return ReadAll<TemplateRecord>(rows, ReadTemplate);
  }

  Result<DeviceRecord> CreateDevice(int64_t org_id, const std::string& identifier) override {
    auto rows = Query(
        "INSERT INTO devices (org_id, identifier, status, created_at) "
        "VALUES ($1, $2, 'active', $3) RETURNING " +
            std::string(kDeviceColumns),
        Params().Int(org_id).Text(identifier).Int(NowUnix()), "creating device");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kAlreadyExists, "device '" + identifier + "' already exists");
      }
      return rows.error();
    }
    return ReadDevice(*rows, 0);
  }

  Result<DeviceRecord> GetDevice(int64_t org_id, const std::string& identifier) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows,
                           Query("SELECT " + std::string(kDeviceColumns) +
                                     " FROM devices WHERE org_id = $1 AND identifier = $2",
                                 Params().Int(org_id).Text(identifier), "reading device"));
    if (rows.empty()) {
      return MakeError(ErrorCode::kNotFound, "device '" + identifier + "' does not exist");
    }
    return ReadDevice(rows, 0);
  }

  Result<std::vector<DeviceRecord>> ListDevices(int64_t org_id) override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT " + std::string(kDeviceColumns) +
                                                " FROM devices WHERE org_id = $1 ORDER BY id",
                                            Params().Int(org_id), "listing devices"));
    return ReadAll<DeviceRecord>(rows, ReadDevice);
  }

  Status SetDeviceStatus(int64_t org_id, const std::string& identifier,
                         const std::string& status) override {
    auto rows = Query(
        "UPDATE devices SET status = $3 WHERE org_id = $1 AND identifier = $2 "
        "RETURNING id",
        Params().Int(org_id).Text(identifier).Text(status), "updating device");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kInvalidInput, "a device status is 'active' or 'disabled'");
      }
      return rows.error();
    }
    if (rows->empty()) {
      return MakeError(ErrorCode::kNotFound, "device '" + identifier + "' does not exist");
    }
    return {};
  }

  Result<DeviceRecord> TouchDevice(int64_t org_id, const std::string& identifier,
                                   int64_t at) override {
    // One statement: two connections seeing a new device at once create it once.
    DEVID_ASSIGN_OR_RETURN(
        Rows rows, Query("INSERT INTO devices (org_id, identifier, status, first_seen, last_seen, "
                         "created_at) VALUES ($1, $2, 'active', $3, $3, $3) "
                         "ON CONFLICT (org_id, identifier) DO UPDATE SET "
                         "first_seen = COALESCE(devices.first_seen, EXCLUDED.first_seen), "
                         "last_seen = EXCLUDED.last_seen RETURNING " +
                             std::string(kDeviceColumns),
                         Params().Int(org_id).Text(identifier).Int(at), "recording device"));
    return ReadDevice(rows, 0);
  }

  Result<AuditRecord> AppendAudit(
      AuditRecord record, const std::function<std::string(const AuditRecord&)>& link) override {
    return InTransaction([&]() -> Result<AuditRecord> {
      // The head's row lock orders writers across connections and processes:
      // the next one reads the head this one wrote.
      DEVID_ASSIGN_OR_RETURN(
          Rows head, Query("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE", Params(),
                           "reading audit head"));
      if (head.empty()) return MakeError(ErrorCode::kStorage, "the audit head is missing");
      AuditRecord r = record;
      r.seq = head.Int(0, 0) + 1;
      r.prev_hash = head.Text(0, 1);
      r.hash = link(r);
      DEVID_TRY(Query("INSERT INTO audit (" + std::string(kAuditColumns) +
                          ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                      Params()
                          .Int(r.seq)
                          .Int(r.at)
                          .Int(r.org_id)
                          .Text(r.actor)
                          .Text(r.action)
                          .Text(r.target)
                          .Text(r.outcome)
                          .Text(r.detail)
                          .Text(r.prev_hash)
                          .Text(r.hash),
                      "recording audit event"));
      DEVID_TRY(Query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
                      Params().Int(r.seq).Text(r.hash), "advancing audit head"));
      return r;
    });
  }

  Result<std::vector<AuditRecord>> ListAudit(std::optional<int64_t> org_id, int64_t after_seq,
                                             size_t limit) override {
    std::string sql = "SELECT " + std::string(kAuditColumns) + " FROM audit WHERE seq > $1";
    Params p;
    p.Int(after_seq).Int(static_cast<int64_t>(limit));
    if (org_id) {
      sql += " AND org_id = $3";
      p.Int(*org_id);
    }
    sql += " ORDER BY seq LIMIT $2";
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query(sql, p, "reading audit"));
    return ReadAll<AuditRecord>(rows, ReadAudit);
  }

  Result<AuditHead> GetAuditHead() override {
    DEVID_ASSIGN_OR_RETURN(Rows rows, Query("SELECT seq, hash FROM audit_head WHERE id = 1",
                                            Params(), "reading audit head"));
    if (rows.empty()) return MakeError(ErrorCode::kStorage, "the audit head is missing");
    return AuditHead{rows.Int(0, 0), rows.Text(0, 1)};
  }

 private:
  // One statement, prepared on first use and kept for this connection.
  Result<Rows> Query(const std::string& sql, const Params& params, std::string_view what) {
    ReconnectIfLost();
    sqlstate_.clear();
    auto it = prepared_.find(sql);
    if (it == prepared_.end()) {
      std::string name = "s" + std::to_string(prepared_.size());
      ResultPtr r(PQprepare(conn_.get(), name.c_str(), sql.c_str(), params.size(), params.types()));
      if (PQresultStatus(r.get()) != PGRES_COMMAND_OK) return Failure(r.get(), what);
      it = prepared_.emplace(sql, std::move(name)).first;
    }
    std::vector<const char*> values = params.values();
    ResultPtr r(PQexecPrepared(conn_.get(), it->second.c_str(), params.size(), values.data(),
                               params.lengths(), params.formats(), /*resultFormat=*/1));
    ExecStatusType status = PQresultStatus(r.get());
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) return Failure(r.get(), what);
    return Rows(std::move(r));
  }

  // Statements without parameters, possibly several (a migration step).
  Status Exec(const std::string& sql, std::string_view what) {
    ReconnectIfLost();
    sqlstate_.clear();
    ResultPtr r(PQexec(conn_.get(), sql.c_str()));
    ExecStatusType status = PQresultStatus(r.get());
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) return Failure(r.get(), what);
    return {};
  }

  Error Failure(const PGresult* r, std::string_view what) {
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    sqlstate_ = state != nullptr ? state : "";
    std::string message = r != nullptr ? Trimmed(PQresultErrorMessage(r)) : "";
    if (message.empty()) message = Trimmed(PQerrorMessage(conn_.get()));
    return MakeError(ErrorCode::kStorage, std::string(what) + ": " + message);
  }

  // Where SQLite reports SQLITE_CONSTRAINT: any integrity constraint (class 23).
  bool IsConstraint() const { return sqlstate_.starts_with("23"); }
  bool IsRetriable() const { return sqlstate_ == "40001" || sqlstate_ == "40P01"; }

  // Runs `body` inside BEGIN ... COMMIT; rolls back when it fails, and runs it
  // again when the server chose this transaction as a deadlock or
  // serialization victim.
  template <typename Body>
  auto InTransaction(Body&& body) -> decltype(body()) {
    // Inside Atomically(): part of the caller's transaction (which retries).
    if (in_transaction_) return body();
    for (int attempt = 1;; ++attempt) {
      DEVID_TRY(Exec("BEGIN", "starting transaction"));
      in_transaction_ = true;
      auto result = body();
      if (result.ok()) {
        auto commit = Exec("COMMIT", "committing");
        in_transaction_ = false;
        if (commit.ok()) return result;
        if (!IsRetriable() || attempt == kTransactionAttempts) return commit.error();
        continue;
      }
      bool retry = IsRetriable() && attempt < kTransactionAttempts;
      (void)Exec("ROLLBACK", "rolling back");
      in_transaction_ = false;
      if (!retry) return result;
    }
  }

  // A connection lost between calls (a server restart) is opened again. Not
  // inside a transaction: its statements would then run outside it.
  void ReconnectIfLost() {
    if (in_transaction_ || PQstatus(conn_.get()) != CONNECTION_BAD) return;
    PQreset(conn_.get());
    prepared_.clear();
  }

  Status Migrate() {
    const auto& migrations = SchemaMigrations();
    for (;;) {
      // The advisory lock (released at commit) makes concurrent openers wait:
      // the first migrates, the others find the work done.
      auto step = InTransaction([&]() -> Result<bool> {
        DEVID_TRY(Query("SELECT pg_advisory_xact_lock($1)", Params().Int(kMigrationLockKey),
                        "locking the schema"));
        // PostgreSQL has no user_version: the version is a row of its own. Looked
        // up first, so that a role without CREATE can open a migrated database.
        DEVID_ASSIGN_OR_RETURN(Rows exists,
                               Query("SELECT to_regclass('schema_version') IS NOT NULL", Params(),
                                     "reading schema version"));
        if (exists.Int(0, 0) == 0) {
          DEVID_TRY(
              Exec("CREATE TABLE schema_version (id BIGINT PRIMARY KEY CHECK (id = 1), "
                   "version BIGINT NOT NULL); "
                   "INSERT INTO schema_version (id, version) VALUES (1, 0)",
                   "creating the schema version"));
        }
        DEVID_ASSIGN_OR_RETURN(Rows v, Query("SELECT version FROM schema_version WHERE id = 1",
                                             Params(), "reading schema version"));
        version_ = static_cast<int>(v.Int(0, 0));
        if (version_ > static_cast<int>(migrations.size())) {
          return MakeError(ErrorCode::kStorage,
                           "the database schema is version " + std::to_string(version_) +
                               ", newer than this devid (" + std::to_string(migrations.size()) +
                               "); upgrade devid");
        }
        if (version_ == static_cast<int>(migrations.size())) return false;
        auto applied =
            Exec(MigrationSql(static_cast<size_t>(version_), Dialect::kPostgres), "migrating");
        if (applied.ok() && static_cast<size_t>(version_) == kCommonNameMigration) {
          applied = BackfillCommonNames();
        }
        if (!applied.ok()) {
          return applied.error().Context("migrating schema to version " +
                                         std::to_string(version_ + 1));
        }
        DEVID_TRY(Query("UPDATE schema_version SET version = $1 WHERE id = 1",
                        Params().Int(version_ + 1), "recording schema version"));
        return true;
      });
      if (!step.ok()) return step.error();
      if (!*step) return {};
      ++version_;
    }
  }

  // The rows that predate certificates.common_name, a page at a time: memory
  // stays bounded, and each page is one UPDATE rather than a round trip a row.
  Status BackfillCommonNames() {
    for (int64_t after = 0;;) {
      DEVID_ASSIGN_OR_RETURN(
          Rows page,
          Query("SELECT id, subject FROM certificates WHERE id > $1 ORDER BY id LIMIT 1000",
                Params().Int(after), "reading certificate subjects"));
      if (page.empty()) return {};
      std::vector<int64_t> ids;
      std::vector<std::string> names;
      for (int i = 0; i < page.size(); ++i) {
        after = page.Int(i, 0);
        ids.push_back(after);
        names.push_back(StoredCommonName(page.Text(i, 1)));
      }
      if (ids.empty()) continue;
      DEVID_TRY(
          Query("UPDATE certificates c SET common_name = v.cn "
                "FROM unnest($1::BIGINT[], $2::TEXT[]) AS v (id, cn) WHERE c.id = v.id",
                Params().IntArray(ids).TextArray(names), "recording certificates' CNs"));
    }
  }

  Result<CaRecord> CreateCaLocked(int64_t org_id, const NewCa& ca, NewCertificate certificate) {
    auto rows = Query(
        "INSERT INTO cas (org_id, name, kind, parent_id, certificate_der, key_pem, "
        "key_encrypted, crl_url, ocsp_url, created_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        Params()
            .Int(org_id)
            .Text(ca.name)
            .Text(ca.kind == CaKind::kRoot ? "root" : "ica")
            .Int(ca.parent_id)
            .Blob(ca.certificate_der)
            .Text(ca.key_pem)
            .Bool(ca.key_encrypted)
            .Text(ca.crl_url)
            .Text(ca.ocsp_url)
            .Int(NowUnix()),
        "creating CA");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "CA '" + ca.name + "' already exists in this organization");
      }
      return rows.error();
    }
    int64_t id = rows->Int(0, 0);
    if (certificate.ca_id == 0) certificate.ca_id = id;
    DEVID_TRY(InsertCertificateRow(org_id, certificate));
    return GetCaById(org_id, id);
  }

  Status RevokeLocked(int64_t org_id, int64_t certificate_id, const Revocation& revocation) {
    auto rows = Query(
        "INSERT INTO revocations (certificate_id, org_id, ca_id, reason, revoked_at) "
        "SELECT id, org_id, ca_id, $3, $4 FROM certificates WHERE id = $2 AND org_id = $1 "
        "RETURNING certificate_id",
        Params()
            .Int(org_id)
            .Int(certificate_id)
            .Int(static_cast<int64_t>(revocation.reason))
            .Int(revocation.revoked_at),
        "recording revocation");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kAlreadyExists, "the certificate is already revoked");
      }
      return rows.error();
    }
    if (rows->size() != 1) return MakeError(ErrorCode::kNotFound, "certificate not found");
    // A CA whose own certificate is revoked must not issue any more.
    DEVID_TRY(
        Query("UPDATE cas SET disabled = 1 WHERE org_id = $1 AND certificate_der = "
              "(SELECT der FROM certificates WHERE id = $2 AND org_id = $1)",
              Params().Int(org_id).Int(certificate_id), "disabling a revoked CA"));
    return {};
  }

  Result<int64_t> InsertCertificateRow(int64_t org_id, const NewCertificate& c) {
    last_created_at_ = NowUnix();
    auto rows = Query(
        "INSERT INTO certificates (org_id, ca_id, serial_hex, subject, template, "
        "not_before, not_after, der, created_at, common_name) "
        "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 "
        "WHERE EXISTS (SELECT 1 FROM cas WHERE id = $2 AND org_id = $1) RETURNING id",
        Params()
            .Int(org_id)
            .Int(c.ca_id)
            .Text(c.serial_hex)
            .Text(c.subject)
            .Text(c.template_name)
            .Int(c.not_before)
            .Int(c.not_after)
            .Blob(c.der)
            .Int(last_created_at_)
            .Text(StoredCommonName(c.subject)),
        "recording certificate");
    if (!rows.ok()) {
      if (IsConstraint()) {
        return MakeError(ErrorCode::kAlreadyExists,
                         "serial " + c.serial_hex + " is already used by this CA");
      }
      return rows.error();
    }
    if (rows->size() != 1) {
      return MakeError(ErrorCode::kNotFound, "the issuing CA does not exist in this organization");
    }
    return rows->Int(0, 0);
  }

  ConnPtr conn_;
  int version_ = 0;
  int64_t last_created_at_ = 0;
  bool in_transaction_ = false;
  std::string sqlstate_;                         // of the last failed statement
  std::map<std::string, std::string> prepared_;  // SQL text -> statement name
};

}  // namespace

Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url) {
  // connect_timeout first: a value in the URL, expanded after it, wins.
  const char* const keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
  const char* const values[] = {"10", "devid", url.c_str(), nullptr};
  ConnPtr conn(PQconnectdbParams(keywords, values, /*expand_dbname=*/1));
  if (conn == nullptr)
    return MakeError(ErrorCode::kStorage, "connecting to PostgreSQL: out of memory");
  if (PQstatus(conn.get()) != CONNECTION_OK) {
    // PQerrorMessage names host and port, never the password a URL may hold.
    return MakeError(ErrorCode::kStorage,
                     "connecting to PostgreSQL: " + Trimmed(PQerrorMessage(conn.get())));
  }
  auto store = std::make_unique<PostgresStore>(std::move(conn));
  auto init = store->Init();
  if (!init.ok()) return init.error().Context("opening the PostgreSQL database");
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace devid::store
