// Fuzz target: certs-only PKCS#7 (EST cacerts and enrolment answers, read by
// the CMS client and the agent).
#include "crypto/pkcs7.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto certs = devid::crypto::ParseCertsOnlyPkcs7(devid::ByteView(data, size));
  if (!certs.ok()) return 0;
  for (const auto& c : *certs) {
    (void)c.SerialHex();
    (void)c.subject();
  }
  return 0;
}
