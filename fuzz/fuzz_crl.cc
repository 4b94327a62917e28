// Fuzz target: CRLs.
#include "crypto/crl.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto crl = devid::crypto::Crl::Parse(devid::ByteView(data, size));
  if (!crl.ok()) return 0;
  (void)crl->NumberHex();
  (void)crl->revoked_count();
  (void)crl->next_update();
  return 0;
}
