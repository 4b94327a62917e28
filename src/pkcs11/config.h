// Which chips the PKCS#11 module offers, one slot each: the environment
// variable DEVID_PKCS11_CHIPS ("image=PATH,socket=PATH,…"), or the file that
// DEVID_PKCS11_CONFIG names (one "image=PATH" or "socket=PATH" a line; blank
// lines and lines starting with '#' are ignored).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace devid::pkcs11 {

// Parses a list of chip locators separated by `separator` (',' or '\n').
Result<std::vector<std::string>> ParseChipList(std::string_view text, char separator);

// The chips named by the environment; an error names what is wrong.
Result<std::vector<std::string>> ChipsFromEnvironment();

}  // namespace devid::pkcs11
