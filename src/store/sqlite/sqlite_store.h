#pragma once

#include <memory>
#include <string>

#include "store/store.h"

namespace devid::store {

// SQLite backend: WAL, foreign keys, versioned migrations (PRAGMA user_version).
// One connection; a SqliteStore is used by one thread at a time.
Result<std::unique_ptr<Store>> OpenSqliteStore(const std::string& path, Durability durability);

}  // namespace devid::store
