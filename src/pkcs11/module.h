// The PKCS#11 module's function list, for libdevid-pkcs11.so's
// C_GetFunctionList and for tests that drive the module in-process.
#pragma once

#include <p11-kit/pkcs11.h>

namespace devid::pkcs11 {

CK_FUNCTION_LIST* FunctionList();

}  // namespace devid::pkcs11
