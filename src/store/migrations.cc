#include "store/migrations.h"

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
  };
  return kMigrations;
}

}  // namespace devid::store
