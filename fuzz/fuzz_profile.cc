// Fuzz target: certificate templates (JSON written by operators, later sent to the API).
#include "ca/profile.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto p = devid::ca::CertificateProfile::FromJson(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (p.ok()) {
    auto again = devid::ca::CertificateProfile::FromJson(p->ToJson());
    if (!again.ok()) __builtin_trap();  // a valid template must survive its own round trip
  }
  return 0;
}
