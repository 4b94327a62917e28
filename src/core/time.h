// Wall-clock time as Unix seconds, and its ISO 8601 text form.
#pragma once

#include <cstdint>
#include <string>

namespace devid {

int64_t NowUnix();
// "2026-11-26T23:59:59Z".
std::string FormatUtc(int64_t unix_seconds);

constexpr int64_t kSecondsPerDay = 86400;

}  // namespace devid
