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

// The index of the migration that adds certificates.common_name. SQL cannot read
// escaped subjects, so right after running it, in the same transaction, each
// backend sets common_name = SubjectCommonName(subject) on the rows it finds.
inline constexpr size_t kCommonNameMigration = 2;

enum class Dialect { kSqlite, kPostgres };

// SchemaMigrations()[index] in `dialect`. For PostgreSQL, outside literals and
// comments: `INTEGER PRIMARY KEY` becomes an identity column (unless it also
// REFERENCES another table: then it is a plain key), `INTEGER` BIGINT, `BLOB`
// BYTEA. The released texts stay as they are; only this translation is new.
std::string MigrationSql(size_t index, Dialect dialect);

}  // namespace devid::store
