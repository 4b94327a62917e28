// docs/openapi.yaml, compiled in: served at /api/v1/openapi.yaml.
#pragma once

#include <string_view>

namespace devid::cms {

std::string_view OpenApiYaml();

}  // namespace devid::cms
