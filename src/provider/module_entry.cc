// The entry point of libdevid-provider.so, the one symbol it exports.
#include "provider/internal.h"

extern "C" __attribute__((visibility("default"))) int OSSL_provider_init(
    const OSSL_CORE_HANDLE* handle, const OSSL_DISPATCH* in, const OSSL_DISPATCH** out,
    void** provctx) {
  return devid::provider::Init(handle, in, out, provctx);
}
