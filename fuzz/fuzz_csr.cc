// Fuzz target: PKCS#10 requests (the bytes a device or an operator sends).
#include "crypto/csr.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto csr = devid::crypto::CertificateRequest::Parse(devid::ByteView(data, size));
  if (!csr.ok()) return 0;
  (void)csr->VerifyProofOfPossession();
  (void)csr->key_algorithm();
  (void)csr->subject();
  (void)csr->RequestedSubjectAltNames();
  (void)csr->public_key().ToDer();
  return 0;
}
