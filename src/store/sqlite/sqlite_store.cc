#include "store/sqlite/sqlite_store.h"

#include <sqlite3.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/time.h"
#include "store/migrations.h"
#include "store/postgres/postgres_store.h"

namespace devid::store {

namespace {

Error DbError(sqlite3* db, const std::string& what) {
  return MakeError(ErrorCode::kStorage, what + ": " + sqlite3_errmsg(db));
}

// One prepared statement; reset (not finalized) between uses when cached.
class Statement {
 public:
  Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  Statement(Statement&& o) noexcept : db_(o.db_), stmt_(std::exchange(o.stmt_, nullptr)) {}
  Statement& operator=(Statement&& o) noexcept {
    if (this != &o) {
      sqlite3_finalize(stmt_);
      db_ = o.db_;
      stmt_ = std::exchange(o.stmt_, nullptr);
    }
    return *this;
  }
  ~Statement() { sqlite3_finalize(stmt_); }

  static Result<Statement> Prepare(sqlite3* db, std::string_view sql) {
    Statement s;
    s.db_ = db;
    if (sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                           &s.stmt_, nullptr) != SQLITE_OK) {
      return DbError(db, "preparing statement");
    }
    return s;
  }

  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& Bind(int i, const Bytes& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }

  // SQLITE_ROW, SQLITE_DONE, or an error code.
  int Step() { return sqlite3_step(stmt_); }
  void Reset() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p == nullptr ? std::string()
                        : std::string(reinterpret_cast<const char*>(p),
                                      static_cast<size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  Bytes Blob(int col) const {
    const auto* p = static_cast<const uint8_t*>(sqlite3_column_blob(stmt_, col));
    return p == nullptr ? Bytes() : Bytes(p, p + sqlite3_column_bytes(stmt_, col));
  }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

constexpr std::string_view kCaColumns =
    "id, org_id, name, kind, parent_id, certificate_der, key_pem, key_encrypted, crl_url, "
    "ocsp_url, "
    "disabled, created_at";

CaRecord ReadCa(const Statement& s) {
  CaRecord r;
  r.id = s.Int(0);
  r.org_id = s.Int(1);
  r.name = s.Text(2);
  r.kind = s.Text(3) == "root" ? CaKind::kRoot : CaKind::kIssuing;
  if (!s.IsNull(4)) r.parent_id = s.Int(4);
  r.certificate_der = s.Blob(5);
  r.key_pem = s.Text(6);
  r.key_encrypted = s.Int(7) != 0;
  r.crl_url = s.Text(8);
  r.ocsp_url = s.Text(9);
  r.disabled = s.Int(10) != 0;
  r.created_at = s.Int(11);
  return r;
}

constexpr std::string_view kCertColumns =
    "c.id, c.org_id, c.ca_id, c.serial_hex, c.subject, c.template, c.not_before, c.not_after, "
    "c.der, "
    "c.created_at, r.reason, r.revoked_at";

CertificateRecord ReadCertificate(const Statement& s) {
  CertificateRecord r;
  r.id = s.Int(0);
  r.org_id = s.Int(1);
  r.ca_id = s.Int(2);
  r.serial_hex = s.Text(3);
  r.subject = s.Text(4);
  r.template_name = s.Text(5);
  r.not_before = s.Int(6);
  r.not_after = s.Int(7);
  r.der = s.Blob(8);
  r.created_at = s.Int(9);
  if (!s.IsNull(10)) r.revocation = Revocation{static_cast<int>(s.Int(10)), s.Int(11)};
  return r;
}

constexpr std::string_view kUserColumns =
    "id, username, password_hash, org_id, role, disabled, created_at";

UserRecord ReadUser(const Statement& s) {
  UserRecord r;
  r.id = s.Int(0);
  r.username = s.Text(1);
  r.password_hash = s.Text(2);
  if (!s.IsNull(3)) r.org_id = s.Int(3);
  r.role = s.Text(4);
  r.disabled = s.Int(5) != 0;
  r.created_at = s.Int(6);
  return r;
}

constexpr std::string_view kTokenColumns =
    "id, kind, user_id, org_id, role, name, created_at, expires_at, revoked_at";

TokenRecord ReadToken(const Statement& s) {
  TokenRecord r;
  r.id = s.Int(0);
  r.kind = s.Text(1);
  if (!s.IsNull(2)) r.user_id = s.Int(2);
  if (!s.IsNull(3)) r.org_id = s.Int(3);
  r.role = s.Text(4);
  r.name = s.Text(5);
  r.created_at = s.Int(6);
  if (!s.IsNull(7)) r.expires_at = s.Int(7);
  if (!s.IsNull(8)) r.revoked_at = s.Int(8);
  return r;
}

constexpr std::string_view kTemplateColumns = "id, org_id, name, body, created_at, updated_at";

TemplateRecord ReadTemplate(const Statement& s) {
  return TemplateRecord{s.Int(0), s.Int(1), s.Text(2), s.Text(3), s.Int(4), s.Int(5)};
}

constexpr std::string_view kDeviceColumns =
    "id, org_id, identifier, status, first_seen, last_seen, created_at";

DeviceRecord ReadDevice(const Statement& s) {
  DeviceRecord r;
  r.id = s.Int(0);
  r.org_id = s.Int(1);
  r.identifier = s.Text(2);
  r.status = s.Text(3);
  if (!s.IsNull(4)) r.first_seen = s.Int(4);
  if (!s.IsNull(5)) r.last_seen = s.Int(5);
  r.created_at = s.Int(6);
  return r;
}

AuditRecord ReadAudit(const Statement& s) {
  AuditRecord r;
  r.seq = s.Int(0);
  r.at = s.Int(1);
  if (!s.IsNull(2)) r.org_id = s.Int(2);
  r.actor = s.Text(3);
  r.action = s.Text(4);
  r.target = s.Text(5);
  r.outcome = s.Text(6);
  r.detail = s.Text(7);
  r.prev_hash = s.Text(8);
  r.hash = s.Text(9);
  return r;
}

class SqliteStore final : public Store {
 public:
  explicit SqliteStore(sqlite3* db) : db_(db) {}
  ~SqliteStore() override {
    insert_certificate_ = Statement();
    cached_.clear();
    sqlite3_close_v2(db_);
  }

  Status Init(Durability durability) {
    sqlite3_busy_timeout(db_, 10000);
    DEVID_TRY(Exec("PRAGMA journal_mode=WAL"));
    DEVID_TRY(Exec("PRAGMA foreign_keys=ON"));
    DEVID_TRY(Exec(durability == Durability::kFull ? "PRAGMA synchronous=FULL"
                                                   : "PRAGMA synchronous=NORMAL"));
    DEVID_TRY(Migrate());
    DEVID_ASSIGN_OR_RETURN(
        insert_certificate_,
        Statement::Prepare(
            db_,
            "INSERT INTO certificates (org_id, ca_id, serial_hex, subject, template, "
            "not_before, not_after, der, created_at, common_name) "
            "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 "
            "WHERE EXISTS (SELECT 1 FROM cas WHERE id = ?2 AND org_id = ?1)"));
    return {};
  }

  int schema_version() override { return version_; }

  Status Atomically(const std::function<Status()>& body) override {
    return InTransaction([&] { return body(); });
  }

  Result<Organization> CreateOrganization(const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, "INSERT INTO organizations (name, created_at) VALUES (?1, ?2)"));
    int64_t now = NowUnix();
    s.Bind(1, name).Bind(2, now);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kAlreadyExists, "organization '" + name + "' already exists");
    }
    if (rc != SQLITE_DONE) return DbError(db_, "creating organization");
    return Organization{sqlite3_last_insert_rowid(db_), name, now};
  }

  Result<Organization> GetOrganization(const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, "SELECT id, name, created_at FROM organizations WHERE name = ?1"));
    s.Bind(1, name);
    int rc = s.Step();
    if (rc == SQLITE_DONE) {
      return MakeError(ErrorCode::kNotFound, "organization '" + name + "' does not exist");
    }
    if (rc != SQLITE_ROW) return DbError(db_, "reading organization");
    return Organization{s.Int(0), s.Text(1), s.Int(2)};
  }

  Result<CaRecord> CreateCa(int64_t org_id, const NewCa& ca, NewCertificate certificate) override {
    return InTransaction([&] { return CreateCaLocked(org_id, ca, std::move(certificate)); });
  }

  Result<CaRecord> CreateRootCa(const std::string& org_name, const NewCa& ca,
                                NewCertificate certificate) override {
    return InTransaction([&]() -> Result<CaRecord> {
      auto org = GetOrganization(org_name);
      if (!org.ok() && org.error().code == ErrorCode::kNotFound) org = CreateOrganization(org_name);
      if (!org.ok()) return org.error();
      return CreateCaLocked(org->id, ca, std::move(certificate));
    });
  }

  Result<CaRecord> GetCa(int64_t org_id, const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s, Statement::Prepare(db_, "SELECT " + std::string(kCaColumns) +
                                                 " FROM cas WHERE org_id = ?1 AND name = ?2"));
    s.Bind(1, org_id).Bind(2, name);
    int rc = s.Step();
    if (rc == SQLITE_DONE)
      return MakeError(ErrorCode::kNotFound, "CA '" + name + "' does not exist");
    if (rc != SQLITE_ROW) return DbError(db_, "reading CA");
    return ReadCa(s);
  }

  Result<CaRecord> GetCaById(int64_t org_id, int64_t ca_id) override {
    DEVID_ASSIGN_OR_RETURN(Statement s,
                           Statement::Prepare(db_, "SELECT " + std::string(kCaColumns) +
                                                       " FROM cas WHERE org_id = ?1 AND id = ?2"));
    s.Bind(1, org_id).Bind(2, ca_id);
    int rc = s.Step();
    if (rc == SQLITE_DONE)
      return MakeError(ErrorCode::kNotFound, "CA #" + std::to_string(ca_id) + " does not exist");
    if (rc != SQLITE_ROW) return DbError(db_, "reading CA");
    return ReadCa(s);
  }

  Result<std::vector<CaRecord>> ListCas(int64_t org_id) override {
    DEVID_ASSIGN_OR_RETURN(Statement s,
                           Statement::Prepare(db_, "SELECT " + std::string(kCaColumns) +
                                                       " FROM cas WHERE org_id = ?1 ORDER BY id"));
    s.Bind(1, org_id);
    return CollectRows<CaRecord>(s, ReadCa, "listing CAs");
  }

  Result<CertificateRecord> InsertCertificate(int64_t org_id, const NewCertificate& cert) override {
    DEVID_TRY(InsertCertificateRow(org_id, cert));
    CertificateRecord r;
    r.id = sqlite3_last_insert_rowid(db_);
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
    // Prepared once: OCSP asks this for every request. The unary + keeps
    // SQLite off the (org_id, ...) indexes, which would scan the whole
    // organization: the serial index finds the row directly.
    static const std::string kSql =
        "SELECT " + std::string(kCertColumns) +
        " FROM certificates c LEFT JOIN revocations r ON r.certificate_id = c.id "
        "WHERE +c.org_id = ?1 AND c.serial_hex = ?2 ORDER BY c.id";
    DEVID_ASSIGN_OR_RETURN(Statement * s, Cached(kSql));
    s->Bind(1, org_id).Bind(2, serial_hex);
    auto out = Collect(*s);
    s->Reset();
    return out;
  }

  Result<RevocationStatus> FindRevocationStatus(int64_t org_id, int64_t ca_id,
                                                const std::string& serial_hex) override {
    // Prepared once; the UNIQUE (serial_hex, ca_id) index finds the one row.
    static const std::string kSql =
        "SELECT r.reason, r.revoked_at FROM certificates c "
        "LEFT JOIN revocations r ON r.certificate_id = c.id "
        "WHERE c.serial_hex = ?1 AND c.ca_id = ?2 AND +c.org_id = ?3";
    DEVID_ASSIGN_OR_RETURN(Statement * s, Cached(kSql));
    s->Bind(1, serial_hex).Bind(2, ca_id).Bind(3, org_id);
    RevocationStatus out;
    int rc = s->Step();
    if (rc == SQLITE_ROW) {
      out.known = true;
      if (!s->IsNull(0)) out.revocation = Revocation{static_cast<int>(s->Int(0)), s->Int(1)};
    } else if (rc != SQLITE_DONE) {
      auto error = DbError(db_, "reading a certificate's status");
      s->Reset();
      return error;
    }
    s->Reset();
    return out;
  }

  Result<std::vector<CertificateRecord>> ListCertificates(int64_t org_id,
                                                          const CertificateFilter& f) override {
    std::string sql = "SELECT " + std::string(kCertColumns) + " FROM certificates c";
    // A name selects one device's few rows (and any recorded without a name,
    // see StoredCommonName), found by the name index and read by id. Left to
    // itself, without ANALYZE statistics, SQLite would rather scan the
    // organization by (org_id, not_after) for a valid-status filter.
    if (f.common_name) sql += " NOT INDEXED";
    sql += " LEFT JOIN revocations r ON r.certificate_id = c.id WHERE c.org_id = ?1";
    if (f.ca_id) sql += " AND c.ca_id = ?2";
    if (f.expires_before) sql += " AND c.not_after < ?3";
    if (f.expires_after) sql += " AND c.not_after >= ?6";
    if (f.template_name) sql += " AND c.template = ?7";
    if (f.subject_contains) sql += " AND instr(c.subject, ?8) > 0";
    if (f.serial_hex) sql += " AND c.serial_hex = ?9";
    if (f.common_name) {
      sql +=
          " AND c.id IN (SELECT id FROM certificates INDEXED BY certificates_org_common_name"
          " WHERE org_id = ?1 AND common_name = ?11 UNION ALL SELECT id FROM certificates"
          " INDEXED BY certificates_org_common_name WHERE org_id = ?1 AND common_name IS NULL)";
    }
    if (f.after_id > 0) sql += " AND c.id > ?10";
    switch (f.status) {
      case CertificateStatus::kAny:
        break;
      case CertificateStatus::kValid:
        sql += " AND r.certificate_id IS NULL AND c.not_after >= ?4";
        break;
      case CertificateStatus::kRevoked:
        sql += " AND r.certificate_id IS NOT NULL";
        break;
      case CertificateStatus::kExpired:
        sql += " AND r.certificate_id IS NULL AND c.not_after < ?4";
        break;
    }
    sql += " ORDER BY c.id LIMIT ?5";
    DEVID_ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_, sql));
    s.Bind(1, org_id);
    if (f.ca_id) s.Bind(2, *f.ca_id);
    if (f.expires_before) s.Bind(3, *f.expires_before);
    s.Bind(4, f.now.value_or(NowUnix()));
    s.Bind(5, static_cast<int64_t>(f.limit));
    if (f.expires_after) s.Bind(6, *f.expires_after);
    if (f.template_name) s.Bind(7, *f.template_name);
    if (f.subject_contains) s.Bind(8, *f.subject_contains);
    if (f.serial_hex) s.Bind(9, *f.serial_hex);
    if (f.common_name) s.Bind(11, *f.common_name);
    if (f.after_id > 0) s.Bind(10, f.after_id);
    DEVID_ASSIGN_OR_RETURN(std::vector<CertificateRecord> out, Collect(s));
    if (f.common_name) KeepNamed(out, *f.common_name);
    return out;
  }

  Status Revoke(int64_t org_id, int64_t certificate_id, const Revocation& revocation) override {
    return InTransaction([&] { return RevokeLocked(org_id, certificate_id, revocation); });
  }

  Result<CrlContent> NextCrl(int64_t org_id, int64_t ca_id) override {
    return InTransaction([&]() -> Result<CrlContent> {
      CrlContent out;
      DEVID_ASSIGN_OR_RETURN(
          Statement n,
          Statement::Prepare(db_,
                             "UPDATE cas SET next_crl_number = next_crl_number + 1 "
                             "WHERE org_id = ?1 AND id = ?2 RETURNING next_crl_number - 1"));
      n.Bind(1, org_id).Bind(2, ca_id);
      int rc = n.Step();
      if (rc == SQLITE_DONE) return MakeError(ErrorCode::kNotFound, "CA not found");
      if (rc != SQLITE_ROW) return DbError(db_, "advancing CRL number");
      out.number = static_cast<uint64_t>(n.Int(0));
      if (n.Step() != SQLITE_DONE) return DbError(db_, "advancing CRL number");
      DEVID_ASSIGN_OR_RETURN(
          Statement s,
          Statement::Prepare(db_,
                             "SELECT c.serial_hex, r.reason, r.revoked_at FROM revocations r "
                             "JOIN certificates c ON c.id = r.certificate_id "
                             "WHERE r.org_id = ?1 AND r.ca_id = ?2 ORDER BY r.revoked_at, c.id"));
      s.Bind(1, org_id).Bind(2, ca_id);
      while ((rc = s.Step()) == SQLITE_ROW) {
        out.revoked.push_back({s.Text(0), static_cast<int>(s.Int(1)), s.Int(2)});
      }
      if (rc != SQLITE_DONE) return DbError(db_, "listing revocations");
      return out;
    });
  }

  Result<int64_t> CountRevocations(int64_t org_id, int64_t ca_id) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s, Statement::Prepare(
                         db_, "SELECT count(*) FROM revocations WHERE org_id = ?1 AND ca_id = ?2"));
    s.Bind(1, org_id).Bind(2, ca_id);
    if (s.Step() != SQLITE_ROW) return DbError(db_, "counting revocations");
    return s.Int(0);
  }

  Result<std::vector<Organization>> ListOrganizations() override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, "SELECT id, name, created_at FROM organizations ORDER BY id"));
    return CollectRows<Organization>(
        s,
        [](const Statement& row) -> Organization {
          return {row.Int(0), row.Text(1), row.Int(2)};
        },
        "listing organizations");
  }

  Status SetCaDisabled(int64_t org_id, int64_t ca_id, bool disabled) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, "UPDATE cas SET disabled = ?3 WHERE org_id = ?1 AND id = ?2"));
    s.Bind(1, org_id).Bind(2, ca_id).Bind(3, static_cast<int64_t>(disabled ? 1 : 0));
    return ExpectOneChange(s, "CA not found", "updating CA");
  }

  Result<UserRecord> CreateUser(const NewUser& u) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_,
                           "INSERT INTO users (username, password_hash, org_id, role, created_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?5)"));
    int64_t now = NowUnix();
    s.Bind(1, u.username).Bind(2, u.password_hash).Bind(4, u.role).Bind(5, now);
    BindOptional(s, 3, u.org_id);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kAlreadyExists, "user '" + u.username + "' already exists");
    }
    if (rc != SQLITE_DONE) return DbError(db_, "creating user");
    return UserRecord{
        sqlite3_last_insert_rowid(db_), u.username, u.password_hash, u.org_id, u.role, false, now};
  }

  Result<UserRecord> FindUserForLogin(const std::string& username) override {
    DEVID_ASSIGN_OR_RETURN(Statement s,
                           Statement::Prepare(db_, "SELECT " + std::string(kUserColumns) +
                                                       " FROM users WHERE username = ?1"));
    s.Bind(1, username);
    int rc = s.Step();
    if (rc == SQLITE_DONE) return MakeError(ErrorCode::kNotFound, "no such user");
    if (rc != SQLITE_ROW) return DbError(db_, "reading user");
    return ReadUser(s);
  }

  Result<std::vector<UserRecord>> ListUsers(std::optional<int64_t> org_id) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, "SELECT " + std::string(kUserColumns) + " FROM users WHERE " +
                                    (org_id ? "org_id = ?1" : "org_id IS NULL") + " ORDER BY id"));
    if (org_id) s.Bind(1, *org_id);
    return CollectRows<UserRecord>(s, ReadUser, "listing users");
  }

  Status SetUserDisabled(std::optional<int64_t> org_id, int64_t user_id, bool disabled) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, std::string("UPDATE users SET disabled = ?3 WHERE id = ?2 AND ") +
                                    (org_id ? "org_id = ?1" : "org_id IS NULL")));
    if (org_id) s.Bind(1, *org_id);
    s.Bind(2, user_id).Bind(3, static_cast<int64_t>(disabled ? 1 : 0));
    return ExpectOneChange(s, "user not found", "updating user");
  }

  Result<TokenRecord> CreateToken(const NewToken& t) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_,
                           "INSERT INTO tokens (secret_hash, kind, user_id, org_id, role, name, "
                           "created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
    int64_t now = NowUnix();
    s.Bind(1, t.secret_hash).Bind(2, t.kind).Bind(5, t.role).Bind(6, t.name).Bind(7, now);
    BindOptional(s, 3, t.user_id);
    BindOptional(s, 4, t.org_id);
    BindOptional(s, 8, t.expires_at);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kAlreadyExists, "token rejected by the store's constraints");
    }
    if (rc != SQLITE_DONE) return DbError(db_, "creating token");
    return TokenRecord{sqlite3_last_insert_rowid(db_),
                       t.kind,
                       t.user_id,
                       t.org_id,
                       t.role,
                       t.name,
                       now,
                       t.expires_at,
                       std::nullopt};
  }

  Result<TokenRecord> FindToken(ByteView secret_hash) override {
    static const std::string kSql =
        "SELECT " + std::string(kTokenColumns) + " FROM tokens WHERE secret_hash = ?1";
    DEVID_ASSIGN_OR_RETURN(Statement * s, Cached(kSql));
    s->Bind(1, Bytes(secret_hash.begin(), secret_hash.end()));
    int rc = s->Step();
    Result<TokenRecord> out = MakeError(ErrorCode::kNotFound, "no such token");
    if (rc == SQLITE_ROW) out = ReadToken(*s);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) out = DbError(db_, "reading token");
    s->Reset();
    return out;
  }

  Result<std::vector<TokenRecord>> ListTokens(int64_t org_id) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s, Statement::Prepare(db_, "SELECT " + std::string(kTokenColumns) +
                                                 " FROM tokens WHERE org_id = ?1 AND kind = 'api' "
                                                 "ORDER BY id"));
    s.Bind(1, org_id);
    return CollectRows<TokenRecord>(s, ReadToken, "listing tokens");
  }

  Status RevokeToken(std::optional<int64_t> org_id, int64_t token_id, int64_t at) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, std::string("UPDATE tokens SET revoked_at = ?3 WHERE id = ?2 AND "
                                            "revoked_at IS NULL AND ") +
                                    (org_id ? "org_id = ?1" : "org_id IS NULL")));
    if (org_id) s.Bind(1, *org_id);
    s.Bind(2, token_id).Bind(3, at);
    return ExpectOneChange(s, "token not found or already revoked", "revoking token");
  }

  Result<TemplateRecord> CreateTemplate(int64_t org_id, const std::string& name,
                                        const std::string& json) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_,
                           "INSERT INTO templates (org_id, name, body, created_at, updated_at) "
                           "VALUES (?1, ?2, ?3, ?4, ?4)"));
    int64_t now = NowUnix();
    s.Bind(1, org_id).Bind(2, name).Bind(3, json).Bind(4, now);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kAlreadyExists, "template '" + name + "' already exists");
    }
    if (rc != SQLITE_DONE) return DbError(db_, "creating template");
    return TemplateRecord{sqlite3_last_insert_rowid(db_), org_id, name, json, now, now};
  }

  Result<TemplateRecord> UpdateTemplate(int64_t org_id, const std::string& name,
                                        const std::string& json) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(
            db_,
            "UPDATE templates SET body = ?3, updated_at = ?4 WHERE org_id = ?1 AND name = ?2"));
    s.Bind(1, org_id).Bind(2, name).Bind(3, json).Bind(4, NowUnix());
    DEVID_TRY(ExpectOneChange(s, "template '" + name + "' does not exist", "updating template"));
    return GetTemplate(org_id, name);
  }

  Status DeleteTemplate(int64_t org_id, const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, "DELETE FROM templates WHERE org_id = ?1 AND name = ?2"));
    s.Bind(1, org_id).Bind(2, name);
    return ExpectOneChange(s, "template '" + name + "' does not exist", "deleting template");
  }

  Result<TemplateRecord> GetTemplate(int64_t org_id, const std::string& name) override {
    DEVID_ASSIGN_OR_RETURN(Statement s,
                           Statement::Prepare(db_, "SELECT " + std::string(kTemplateColumns) +
                                                       " FROM templates WHERE org_id = ?1 AND "
                                                       "name = ?2"));
    s.Bind(1, org_id).Bind(2, name);
    int rc = s.Step();
    if (rc == SQLITE_DONE) {
      return MakeError(ErrorCode::kNotFound, "template '" + name + "' does not exist");
    }
    if (rc != SQLITE_ROW) return DbError(db_, "reading template");
    return ReadTemplate(s);
  }

  Result<std::vector<TemplateRecord>> ListTemplates(int64_t org_id) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, "SELECT " + std::string(kTemplateColumns) +
                                    " FROM templates WHERE org_id = ?1 ORDER BY name"));
    s.Bind(1, org_id);
    return CollectRows<TemplateRecord>(s, ReadTemplate, "listing templates");
  }

  Result<DeviceRecord> CreateDevice(int64_t org_id, const std::string& identifier) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_,
                           "INSERT INTO devices (org_id, identifier, status, created_at) "
                           "VALUES (?1, ?2, 'active', ?3)"));
    int64_t now = NowUnix();
    s.Bind(1, org_id).Bind(2, identifier).Bind(3, now);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kAlreadyExists, "device '" + identifier + "' already exists");
    }
    if (rc != SQLITE_DONE) return DbError(db_, "creating device");
    return DeviceRecord{sqlite3_last_insert_rowid(db_),
                        org_id,
                        identifier,
                        "active",
                        std::nullopt,
                        std::nullopt,
                        now};
  }

  Result<DeviceRecord> GetDevice(int64_t org_id, const std::string& identifier) override {
    DEVID_ASSIGN_OR_RETURN(Statement s,
                           Statement::Prepare(db_, "SELECT " + std::string(kDeviceColumns) +
                                                       " FROM devices WHERE org_id = ?1 AND "
                                                       "identifier = ?2"));
    s.Bind(1, org_id).Bind(2, identifier);
    int rc = s.Step();
    if (rc == SQLITE_DONE) {
      return MakeError(ErrorCode::kNotFound, "device '" + identifier + "' does not exist");
    }
    if (rc != SQLITE_ROW) return DbError(db_, "reading device");
    return ReadDevice(s);
  }

  Result<std::vector<DeviceRecord>> ListDevices(int64_t org_id) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s, Statement::Prepare(db_, "SELECT " + std::string(kDeviceColumns) +
                                                 " FROM devices WHERE org_id = ?1 ORDER BY id"));
    s.Bind(1, org_id);
    return CollectRows<DeviceRecord>(s, ReadDevice, "listing devices");
  }

  Status SetDeviceStatus(int64_t org_id, const std::string& identifier,
                         const std::string& status) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_,
                           "UPDATE devices SET status = ?3 WHERE org_id = ?1 AND identifier = ?2"));
    s.Bind(1, org_id).Bind(2, identifier).Bind(3, status);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kInvalidInput, "a device status is 'active' or 'disabled'");
    }
    if (rc != SQLITE_DONE) return DbError(db_, "updating device");
    if (sqlite3_changes(db_) != 1) {
      return MakeError(ErrorCode::kNotFound, "device '" + identifier + "' does not exist");
    }
    return {};
  }

  Result<DeviceRecord> TouchDevice(int64_t org_id, const std::string& identifier,
                                   int64_t at) override {
    return InTransaction([&]() -> Result<DeviceRecord> {
      DEVID_ASSIGN_OR_RETURN(
          Statement s,
          Statement::Prepare(
              db_,
              "INSERT INTO devices (org_id, identifier, status, first_seen, last_seen, created_at) "
              "VALUES (?1, ?2, 'active', ?3, ?3, ?3) ON CONFLICT (org_id, identifier) DO UPDATE "
              "SET last_seen = ?3, first_seen = coalesce(devices.first_seen, ?3)"));
      s.Bind(1, org_id).Bind(2, identifier).Bind(3, at);
      if (s.Step() != SQLITE_DONE) return DbError(db_, "recording device connection");
      return GetDevice(org_id, identifier);
    });
  }

  Result<AuditRecord> AppendAudit(
      AuditRecord record, const std::function<std::string(const AuditRecord&)>& link) override {
    return InTransaction([&]() -> Result<AuditRecord> {
      DEVID_ASSIGN_OR_RETURN(AuditHead head, GetAuditHead());
      record.seq = head.seq + 1;
      record.prev_hash = head.hash;
      record.hash = link(record);
      DEVID_ASSIGN_OR_RETURN(
          Statement s,
          Statement::Prepare(db_,
                             "INSERT INTO audit (seq, at, org_id, actor, action, target, outcome, "
                             "detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
                             "?9, ?10)"));
      s.Bind(1, record.seq).Bind(2, record.at).Bind(4, record.actor).Bind(5, record.action);
      s.Bind(6, record.target).Bind(7, record.outcome).Bind(8, record.detail);
      s.Bind(9, record.prev_hash).Bind(10, record.hash);
      BindOptional(s, 3, record.org_id);
      if (s.Step() != SQLITE_DONE) return DbError(db_, "appending audit record");
      DEVID_ASSIGN_OR_RETURN(
          Statement h,
          Statement::Prepare(db_, "UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1"));
      h.Bind(1, record.seq).Bind(2, record.hash);
      DEVID_TRY(ExpectOneChange(h, "the audit head is missing", "advancing audit head"));
      return record;
    });
  }

  Result<std::vector<AuditRecord>> ListAudit(std::optional<int64_t> org_id, int64_t after_seq,
                                             size_t limit) override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_,
                           "SELECT seq, at, org_id, actor, action, target, outcome, detail, "
                           "prev_hash, hash FROM audit WHERE seq > ?2" +
                               std::string(org_id ? " AND org_id = ?1" : "") +
                               " ORDER BY seq LIMIT ?3"));
    if (org_id) s.Bind(1, *org_id);
    s.Bind(2, after_seq).Bind(3, static_cast<int64_t>(limit));
    return CollectRows<AuditRecord>(s, ReadAudit, "reading audit records");
  }

  Result<AuditHead> GetAuditHead() override {
    DEVID_ASSIGN_OR_RETURN(
        Statement s, Statement::Prepare(db_, "SELECT seq, hash FROM audit_head WHERE id = 1"));
    if (s.Step() != SQLITE_ROW) return DbError(db_, "reading the audit head");
    return AuditHead{s.Int(0), s.Text(1)};
  }

 private:
  Status Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      std::string msg = err != nullptr ? err : sqlite3_errmsg(db_);
      sqlite3_free(err);
      return MakeError(ErrorCode::kStorage, "SQLite: " + msg);
    }
    return {};
  }

  // Runs `body` inside BEGIN IMMEDIATE ... COMMIT; rolls back when it fails.
  template <typename Body>
  auto InTransaction(Body&& body) -> decltype(body()) {
    // Inside Atomically(): part of the caller's transaction.
    if (in_transaction_) return body();
    DEVID_TRY(Exec("BEGIN IMMEDIATE"));
    in_transaction_ = true;
    auto result = body();
    in_transaction_ = false;
    if (!result.ok()) {
      (void)Exec("ROLLBACK");
      return result;
    }
    DEVID_TRY(Commit());
    return result;
  }

  Status Commit() {
    auto s = Exec("COMMIT");
    if (!s.ok()) (void)Exec("ROLLBACK");
    return s;
  }

  Status Migrate() {
    DEVID_ASSIGN_OR_RETURN(Statement v, Statement::Prepare(db_, "PRAGMA user_version"));
    if (v.Step() != SQLITE_ROW) return DbError(db_, "reading schema version");
    version_ = static_cast<int>(v.Int(0));
    const auto& migrations = SchemaMigrations();
    if (version_ > static_cast<int>(migrations.size())) {
      return MakeError(ErrorCode::kStorage,
                       "the database schema is version " + std::to_string(version_) +
                           ", newer than this devid (" + std::to_string(migrations.size()) +
                           "); upgrade devid");
    }
    while (version_ < static_cast<int>(migrations.size())) {
      DEVID_TRY(Exec("BEGIN IMMEDIATE"));
      // Re-read under the write lock: another process may have migrated meanwhile.
      Statement again;
      DEVID_ASSIGN_OR_RETURN(again, Statement::Prepare(db_, "PRAGMA user_version"));
      if (again.Step() != SQLITE_ROW) return DbError(db_, "reading schema version");
      int current = static_cast<int>(again.Int(0));
      again = Statement();
      if (current != version_) {
        DEVID_TRY(Exec("ROLLBACK"));
        version_ = current;
        continue;
      }
      auto step = Exec(std::string(migrations[static_cast<size_t>(version_)]));
      if (step.ok() && static_cast<size_t>(version_) == kCommonNameMigration) {
        step = BackfillCommonNames();
      }
      if (step.ok()) step = Exec("PRAGMA user_version = " + std::to_string(version_ + 1));
      if (!step.ok()) {
        (void)Exec("ROLLBACK");
        return step.error().Context("migrating schema to version " + std::to_string(version_ + 1));
      }
      DEVID_TRY(Commit());
      ++version_;
    }
    return {};
  }

  // The rows that predate certificates.common_name, a page at a time so that
  // memory stays bounded however many there are.
  Status BackfillCommonNames() {
    DEVID_ASSIGN_OR_RETURN(
        Statement read,
        Statement::Prepare(
            db_, "SELECT id, subject FROM certificates WHERE id > ?1 ORDER BY id LIMIT 1000"));
    DEVID_ASSIGN_OR_RETURN(
        Statement write,
        Statement::Prepare(db_, "UPDATE certificates SET common_name = ?2 WHERE id = ?1"));
    std::vector<std::pair<int64_t, std::string>> page;
    for (int64_t after = 0;; after = page.back().first) {
      page.clear();
      read.Reset();
      read.Bind(1, after);
      int rc;
      while ((rc = read.Step()) == SQLITE_ROW) page.emplace_back(read.Int(0), read.Text(1));
      if (rc != SQLITE_DONE) return DbError(db_, "reading certificate subjects");
      if (page.empty()) return {};
      for (const auto& [id, subject] : page) {
        write.Reset();
        write.Bind(1, id).Bind(2, StoredCommonName(subject));
        if (write.Step() != SQLITE_DONE) return DbError(db_, "recording a certificate's CN");
      }
    }
  }

  Result<CaRecord> CreateCaLocked(int64_t org_id, const NewCa& ca, NewCertificate certificate) {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(
            db_,
            "INSERT INTO cas (org_id, name, kind, parent_id, certificate_der, key_pem, "
            "key_encrypted, "
            "crl_url, ocsp_url, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"));
    int64_t now = NowUnix();
    s.Bind(1, org_id)
        .Bind(2, ca.name)
        .Bind(3, std::string(ca.kind == CaKind::kRoot ? "root" : "ica"));
    if (ca.parent_id) {
      s.Bind(4, *ca.parent_id);
    } else {
      s.BindNull(4);
    }
    s.Bind(5, ca.certificate_der)
        .Bind(6, ca.key_pem)
        .Bind(7, static_cast<int64_t>(ca.key_encrypted ? 1 : 0));
    s.Bind(8, ca.crl_url).Bind(9, ca.ocsp_url).Bind(10, now);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "CA '" + ca.name + "' already exists in this organization");
    }
    if (rc != SQLITE_DONE) return DbError(db_, "creating CA");
    int64_t id = sqlite3_last_insert_rowid(db_);
    if (certificate.ca_id == 0) certificate.ca_id = id;
    DEVID_TRY(InsertCertificateRow(org_id, certificate));
    return GetCaById(org_id, id);
  }

  Status RevokeLocked(int64_t org_id, int64_t certificate_id, const Revocation& revocation) {
    DEVID_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(
            db_,
            "INSERT INTO revocations (certificate_id, org_id, ca_id, reason, revoked_at) "
            "SELECT id, org_id, ca_id, ?3, ?4 FROM certificates WHERE id = ?2 AND org_id = ?1"));
    s.Bind(1, org_id)
        .Bind(2, certificate_id)
        .Bind(3, static_cast<int64_t>(revocation.reason))
        .Bind(4, revocation.revoked_at);
    int rc = s.Step();
    if (rc == SQLITE_CONSTRAINT)
      return MakeError(ErrorCode::kAlreadyExists, "the certificate is already revoked");
    if (rc != SQLITE_DONE) return DbError(db_, "recording revocation");
    if (sqlite3_changes(db_) != 1) return MakeError(ErrorCode::kNotFound, "certificate not found");
    // A CA whose own certificate is revoked must not issue any more.
    DEVID_ASSIGN_OR_RETURN(
        Statement d,
        Statement::Prepare(db_,
                           "UPDATE cas SET disabled = 1 WHERE org_id = ?1 AND certificate_der = "
                           "(SELECT der FROM certificates WHERE id = ?2 AND org_id = ?1)"));
    d.Bind(1, org_id).Bind(2, certificate_id);
    if (d.Step() != SQLITE_DONE) return DbError(db_, "disabling a revoked CA");
    return {};
  }

  Status InsertCertificateRow(int64_t org_id, const NewCertificate& c) {
    Statement& s = insert_certificate_;
    last_created_at_ = NowUnix();
    s.Bind(1, org_id)
        .Bind(2, c.ca_id)
        .Bind(3, c.serial_hex)
        .Bind(4, c.subject)
        .Bind(5, c.template_name);
    s.Bind(6, c.not_before).Bind(7, c.not_after).Bind(8, c.der).Bind(9, last_created_at_);
    s.Bind(10, StoredCommonName(c.subject));
    int rc = s.Step();
    int changes = sqlite3_changes(db_);
    s.Reset();
    if (rc == SQLITE_CONSTRAINT) {
      return MakeError(ErrorCode::kAlreadyExists,
                       "serial " + c.serial_hex + " is already used by this CA");
    }
    if (rc != SQLITE_DONE) return DbError(db_, "recording certificate");
    if (changes != 1)
      return MakeError(ErrorCode::kNotFound, "the issuing CA does not exist in this organization");
    return {};
  }

  static void BindOptional(Statement& s, int i, const std::optional<int64_t>& v) {
    if (v) {
      s.Bind(i, *v);
    } else {
      s.BindNull(i);
    }
  }

  // Every row of a query, each read by `read`.
  template <typename T, typename Read>
  Result<std::vector<T>> CollectRows(Statement& s, Read&& read, const char* what) {
    std::vector<T> out;
    int rc;
    while ((rc = s.Step()) == SQLITE_ROW) out.push_back(read(s));
    if (rc != SQLITE_DONE) return DbError(db_, what);
    return out;
  }

  // Steps an UPDATE or DELETE that must touch exactly one row.
  Status ExpectOneChange(Statement& s, const std::string& not_found, const std::string& what) {
    if (s.Step() != SQLITE_DONE) return DbError(db_, what);
    if (sqlite3_changes(db_) != 1) return MakeError(ErrorCode::kNotFound, not_found);
    return {};
  }

  // A statement prepared once on this connection, reset for each use.
  Result<Statement*> Cached(const std::string& sql) {
    auto it = cached_.find(sql);
    if (it == cached_.end()) {
      DEVID_ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_, sql));
      it = cached_.emplace(sql, std::move(s)).first;
    }
    it->second.Reset();
    return &it->second;
  }

  Result<std::vector<CertificateRecord>> Collect(Statement& s) {
    return CollectRows<CertificateRecord>(s, ReadCertificate, "reading certificates");
  }

  sqlite3* db_;
  bool in_transaction_ = false;
  int version_ = 0;
  int64_t last_created_at_ = 0;
  Statement insert_certificate_;
  std::map<std::string, Statement> cached_;
};

}  // namespace

Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, Durability durability) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return MakeError(ErrorCode::kStorage, "opening database " + path + ": " + msg);
  }
  auto store = std::make_unique<SqliteStore>(db);
  auto init = store->Init(durability);
  if (!init.ok()) return init.error().Context("opening database " + path);
  return std::unique_ptr<Store>(std::move(store));
}

Result<std::unique_ptr<Store>> OpenStore(const std::string& url, Durability durability) {
  std::string_view u(url);
  if (u.starts_with("sqlite:")) return OpenSqliteStore(std::string(u.substr(7)), durability);
  // PostgreSQL commits are always durable: `durability` does not apply.
  if (u.starts_with("postgresql:") || u.starts_with("postgres:")) return OpenPostgresStore(url);
  return OpenSqliteStore(url, durability);
}

}  // namespace devid::store
