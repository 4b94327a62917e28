// Fuzz target: distinguished names and subject alternative names given as text.
#include "crypto/name.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto dn = devid::crypto::DistinguishedName::Parse(text);
  if (dn.ok()) {
    auto again = devid::crypto::DistinguishedName::Parse(dn->ToString());
    if (!again.ok() || again->attributes() != dn->attributes()) __builtin_trap();  // round trip
  }
  (void)devid::crypto::GeneralName::Parse(text);
  return 0;
}
