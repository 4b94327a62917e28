#include "store/migrations.h"

#include <cctype>
#include <optional>
#include <string>

namespace devid::store {

const std::vector<std::string_view>& SchemaMigrations() {
  static const std::vector<std::string_view> kMigrations = {
      // 1: organizations, CAs, certificates, revocations, CRL numbers.
      R"sql(
CREATE TABLE organizations (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE cas (
  id INTEGER PRIMARY KEY,
  org_id INTEGER NOT NULL REFERENCES organizations(id),
  name TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('root', 'ica')),
  parent_id INTEGER REFERENCES cas(id),
  certificate_der BLOB NOT NULL,
  key_pem TEXT NOT NULL,
  key_encrypted INTEGER NOT NULL,
  crl_url TEXT NOT NULL DEFAULT '',
  ocsp_url TEXT NOT NULL DEFAULT '',
  disabled INTEGER NOT NULL DEFAULT 0,
  next_crl_number INTEGER NOT NULL DEFAULT 1,
  created_at INTEGER NOT NULL,
  UNIQUE (org_id, name)
);
CREATE TABLE certificates (
  id INTEGER PRIMARY KEY,
  org_id INTEGER NOT NULL REFERENCES organizations(id),
  ca_id INTEGER NOT NULL REFERENCES cas(id),
  serial_hex TEXT NOT NULL,
  subject TEXT NOT NULL,
  template TEXT NOT NULL,
  not_before INTEGER NOT NULL,
  not_after INTEGER NOT NULL,
  der BLOB NOT NULL,
  created_at INTEGER NOT NULL,
  -- Serial first: it also serves lookups by serial (random, so selective).
  UNIQUE (serial_hex, ca_id)
);
CREATE INDEX certificates_org_not_after ON certificates (org_id, not_after);
CREATE TABLE revocations (
  certificate_id INTEGER PRIMARY KEY REFERENCES certificates(id),
  org_id INTEGER NOT NULL REFERENCES organizations(id),
  ca_id INTEGER NOT NULL REFERENCES cas(id),
  reason INTEGER NOT NULL,
  revoked_at INTEGER NOT NULL
);
CREATE INDEX revocations_ca ON revocations (org_id, ca_id);
)sql",
      // 2: users, tokens, templates, devices, the audit chain (the CMS).
      R"sql(
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  org_id INTEGER REFERENCES organizations(id),
  role TEXT NOT NULL CHECK (role IN ('system-admin', 'org-admin', 'operator', 'auditor',
                                     'enrollment')),
  disabled INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  CHECK ((role = 'system-admin') = (org_id IS NULL))
);
CREATE INDEX users_org ON users (org_id);
CREATE TABLE tokens (
  id INTEGER PRIMARY KEY,
  secret_hash BLOB NOT NULL UNIQUE,
  kind TEXT NOT NULL CHECK (kind IN ('session', 'api')),
  user_id INTEGER REFERENCES users(id),
  org_id INTEGER REFERENCES organizations(id),
  role TEXT NOT NULL,
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER
);
CREATE INDEX tokens_org ON tokens (org_id);
CREATE TABLE templates (
  id INTEGER PRIMARY KEY,
  org_id INTEGER NOT NULL REFERENCES organizations(id),
  name TEXT NOT NULL,
  body TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (org_id, name)
);
CREATE TABLE devices (
  id INTEGER PRIMARY KEY,
  org_id INTEGER NOT NULL REFERENCES organizations(id),
  identifier TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
  first_seen INTEGER,
  last_seen INTEGER,
  created_at INTEGER NOT NULL,
  UNIQUE (org_id, identifier)
);
CREATE TABLE audit (
  seq INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,
  org_id INTEGER,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  outcome TEXT NOT NULL,
  detail TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL
);
CREATE INDEX audit_org ON audit (org_id, seq);
CREATE TABLE audit_head (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');
CREATE INDEX certificates_org_template ON certificates (org_id, template);
)sql",
      // 3: the subject's CN as a column of its own, so that a device's certificates
      // are found by index and by the whole name. The existing rows get their value
      // from BackfillCommonNames (see kCommonNameMigration).
      R"sql(
ALTER TABLE certificates ADD COLUMN common_name TEXT;
CREATE INDEX certificates_org_common_name ON certificates (org_id, common_name);
)sql",
  };
  return kMigrations;
}

std::string StoredCommonName(std::string_view subject) {
  return SubjectCommonName(subject).value_or("");
}

std::optional<std::string> SubjectCommonName(std::string_view subject) {
  // The grammar of crypto::DistinguishedName::Parse: a backslash escapes the next
  // character, an unescaped ',' ends an attribute, the first unescaped '=' ends
  // its type, unescaped spaces around type and value do not count. Parse itself
  // is not used: the store does not depend on crypto/, and Parse also refuses
  // what it could not encode again (unknown attribute types, empty values),
  // while a CN next to such an attribute is still the device's name.
  std::string type;
  std::string value;
  bool in_value = false;
  bool escaped = false;
  size_t type_end = 0;   // type.size() without unescaped trailing spaces
  size_t value_end = 0;  // likewise for value
  auto finish = [&]() -> std::optional<std::string> {
    // The spellings Parse reads as CN; ToString writes "CN".
    std::string_view t(type.data(), type_end);
    if (!in_value || value_end == 0 || (t != "CN" && t != "commonName" && t != "2.5.4.3")) {
      return std::nullopt;
    }
    return value.substr(0, value_end);
  };
  for (char c : subject) {
    std::string& field = in_value ? value : type;
    size_t& end = in_value ? value_end : type_end;
    if (escaped) {
      field.push_back(c);
      end = field.size();
      escaped = false;
    } else if (c == '\\') {
      escaped = true;
    } else if (c == ',') {
      if (auto cn = finish()) return cn;
      type.clear();
      value.clear();
      in_value = false;
      type_end = value_end = 0;
    } else if (c == '=' && !in_value) {
      in_value = true;
    } else if (c != ' ' || !field.empty()) {
      field.push_back(c);
      if (c != ' ') end = field.size();
    }
  }
  return finish();
}

namespace {

bool IsWordChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }

// The word after `pos` and any white space before it; moves `pos` past it.
std::string_view NextWord(std::string_view sql, size_t& pos) {
  while (pos < sql.size() && std::isspace(static_cast<unsigned char>(sql[pos])) != 0) ++pos;
  size_t start = pos;
  while (pos < sql.size() && IsWordChar(sql[pos])) ++pos;
  return sql.substr(start, pos - start);
}

std::string ToPostgres(std::string_view sql) {
  std::string out;
  out.reserve(sql.size() + 256);
  size_t i = 0;
  while (i < sql.size()) {
    char c = sql[i];
    if (c == '\'') {  // a literal, copied as is ('' inside is two literals in a row)
      size_t end = sql.find('\'', i + 1);
      end = end == std::string_view::npos ? sql.size() : end + 1;
      out.append(sql.substr(i, end - i));
      i = end;
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {  // a comment
      size_t end = sql.find('\n', i);
      end = end == std::string_view::npos ? sql.size() : end;
      out.append(sql.substr(i, end - i));
      i = end;
    } else if (IsWordChar(c)) {
      size_t end = i;
      while (end < sql.size() && IsWordChar(sql[end])) ++end;
      std::string_view word = sql.substr(i, end - i);
      if (word == "INTEGER") {
        // SQLite's rowid alias: the id assigned on insert. A key that references
        // another table's row (revocations.certificate_id) is given, not assigned.
        size_t p = end;
        if (NextWord(sql, p) == "PRIMARY" && NextWord(sql, p) == "KEY") {
          size_t key_end = p;
          if (NextWord(sql, p) != "REFERENCES") {
            out += "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY";
            i = key_end;
            continue;
          }
        }
        out += "BIGINT";
      } else if (word == "BLOB") {
        out += "BYTEA";
      } else {
        out.append(word);
      }
      i = end;
    } else {
      out += c;
      ++i;
    }
  }
  return out;
}

}  // namespace

std::string MigrationSql(size_t index, Dialect dialect) {
  std::string_view sql = SchemaMigrations().at(index);
  return dialect == Dialect::kSqlite ? std::string(sql) : ToPostgres(sql);
}

}  // namespace devid::store
