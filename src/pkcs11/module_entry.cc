// The entry point of libdevid-pkcs11.so, the one symbol it exports.
#include "pkcs11/module.h"

extern "C" __attribute__((visibility("default"))) CK_RV C_GetFunctionList(
    CK_FUNCTION_LIST_PTR_PTR out) {
  if (out == nullptr) return CKR_ARGUMENTS_BAD;
  *out = devid::pkcs11::FunctionList();
  return CKR_OK;
}
