// Schema migrations, shared by every SQL backend: migration N takes the
// schema from version N-1 to N. Append only; never edit a released step.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace devid::store {

// The migrations are written in SQLite's dialect: `INTEGER PRIMARY KEY` is the
// auto-assigned id, `INTEGER` holds 64-bit numbers and booleans, `BLOB` bytes.
const std::vector<std::string_view>& SchemaMigrations();

// The value of the first CN attribute of a subject as the store records it
// (crypto::DistinguishedName::ToString: "CN=dev\,1, O=Acme" is CN "dev,1"), or
// nullopt when it has none. A subject may repeat CN; its first names the device.
std::optional<std::string> SubjectCommonName(std::string_view subject);
// What certificates.common_name holds: the first CN, "" when there is none.
// NULL is left for rows that a devid older than the column records while it
// still runs on a migrated database (a rolling upgrade): a filter by name
// returns those too and keeps the ones whose subject names the device
// (KeepNamed), so that no certificate escapes the enrolment check.
std::string StoredCommonName(std::string_view subject);
// Drops the records whose subject's first CN is not `name`.
template <typename Records>
void KeepNamed(Records& records, const std::string& name) {
  std::erase_if(records, [&](const auto& r) { return SubjectCommonName(r.subject) != name; });
}

// The index of the migration that adds certificates.common_name. SQL cannot read
// escaped subjects, so right after running it, in the same transaction, each
// backend sets common_name = StoredCommonName(subject) on the rows it finds.
inline constexpr size_t kCommonNameMigration = 2;

enum class Dialect { kSqlite, kPostgres };

// SchemaMigrations()[index] in `dialect`. For PostgreSQL, outside literals and
// comments: `INTEGER PRIMARY KEY` becomes an identity column (unless it also
// REFERENCES another table: then it is a plain key), `INTEGER` BIGINT, `BLOB`
// BYTEA. The released texts stay as they are; only this translation is new.
std::string MigrationSql(size_t index, Dialect dialect);

}  // namespace devid::store
