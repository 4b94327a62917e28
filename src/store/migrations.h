// Schema migrations, shared by every SQL backend: migration N takes the
// schema from version N-1 to N. Append only; never edit a released step.
#pragma once

#include <string_view>
#include <vector>

namespace devid::store {

const std::vector<std::string_view>& SchemaMigrations();

}  // namespace devid::store
