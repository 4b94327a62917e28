// Fuzz target: OCSP requests as a relying party sends them to devid serve.
#include "crypto/ocsp.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto request = devid::crypto::OcspRequest::Parse(devid::ByteView(data, size));
  if (request.ok()) {
    if (request->size() == 0 || request->size() > 32) __builtin_trap();
    for (size_t i = 0; i < request->size(); ++i) (void)request->SerialHex(i);
  }
  return 0;
}
