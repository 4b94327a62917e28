// Schema migrations, shared by every SQL backend: migration N takes the
// schema from version N-1 to N. Append only; never edit a released step.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace devid::store {

// The migrations are written in SQLite's dialect: `INTEGER PRIMARY KEY` is the
// auto-assigned id, `INTEGER` holds 64-bit numbers and booleans, `BLOB` bytes.
const std::vector<std::string_view>& SchemaMigrations();

enum class Dialect { kSqlite, kPostgres };

// SchemaMigrations()[index] in `dialect`. For PostgreSQL, outside literals and
// comments: `INTEGER PRIMARY KEY` becomes an identity column (unless it also
// REFERENCES another table: then it is a plain key), `INTEGER` BIGINT, `BLOB`
// BYTEA. The released texts stay as they are; only this translation is new.
std::string MigrationSql(size_t index, Dialect dialect);

}  // namespace devid::store
