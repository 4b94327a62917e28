#pragma once

#include <memory>
#include <string>

#include "store/store.h"

namespace devid::store {

// PostgreSQL backend (libpq): the schema of migrations.cc translated to
// PostgreSQL's dialect, versioned in a `schema_version` table and migrated
// under an advisory lock, so that several processes starting at once migrate
// once. Commits are always durable (the server's own settings apply).
// One connection; a PostgresStore is used by one thread at a time, and any
// number of them (in any number of processes) may share one database.
// `url`: postgresql://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS] or postgres://...
Result<std::unique_ptr<Store>> OpenPostgresStore(const std::string& url);

}  // namespace devid::store
