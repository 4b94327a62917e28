// Fuzz target: X.509 certificates and PEM chains (imported CAs, peers).
#include "crypto/certificate.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  devid::ByteView in(data, size);
  auto cert = devid::crypto::Certificate::Parse(in);
  if (cert.ok()) {
    (void)cert->SerialHex();
    (void)cert->subject();
    (void)cert->issuer();
    (void)cert->SubjectAltNames();
    (void)cert->key_algorithm();
    (void)cert->FingerprintSha256();
    (void)cert->is_ca();
  }
  (void)devid::crypto::Certificate::ParsePemChain(in);
  return 0;
}
